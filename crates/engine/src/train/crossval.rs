//! Cross-domain validation: hold out one source at a time, train on the others, score on it.
//!
//! A head that fits its training sources can look good on held-out *rows* of those sources and
//! still fail on text from elsewhere. Here every source of the data (a tweet corpus, a review
//! site, ...) is in turn the test set of a head trained, with the same options and the same
//! early stopping on a stratified validation split, on the other sources only: no row of the
//! scored source is seen in training or validation. The mean over the held-out sources is the
//! figure to select options by.
//!
//! Per source: accuracy, macro-F1 over the labels the source holds (a `neutral` prediction on
//! two-class reviews is an error of the true label, see [`Confusion::macro_f1_of_truth`]) and
//! every label's recall (a head that never says `neutral` shows as neutral recall 0 on the
//! sources that hold it). Folds run on up to `threads` threads; each is deterministic, so the
//! results do not depend on the thread count.

use super::error::{Result, TrainError};
use super::eval::{evaluate, Embedded, Evaluation};
use super::fit::{fit_with_sources, FitOptions};
use super::metrics::Confusion;
use super::split::stratified;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// One held-out source's outcome.
#[derive(Debug, Clone)]
pub struct Fold {
    pub source: String,
    /// Rows the head was fitted on (the other sources minus their validation rows).
    pub train_rows: usize,
    pub best_epoch: usize,
    /// The head's results on every row of the held-out source.
    pub eval: Evaluation,
}

/// A label's recall on the sources that hold it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelRecall {
    pub label: String,
    pub recall: f64,
    pub support: u64,
}

/// One held-out source as `train.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldReport {
    pub source: String,
    pub rows: u64,
    pub train_rows: usize,
    pub best_epoch: usize,
    pub accuracy: f64,
    /// Mean F1 over the labels this source holds.
    pub macro_f1: f64,
    /// Recall of each label this source holds.
    pub recall: Vec<LabelRecall>,
    /// Rows: true label; columns: predicted label (label-id order).
    pub confusion: Vec<Vec<u64>>,
}

/// All folds and their means (each source counts once, whatever its size).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrossDomainReport {
    pub sources: Vec<FoldReport>,
    pub mean_accuracy: f64,
    pub mean_macro_f1: f64,
    /// Per label: the mean of its recall over the sources that hold it (absent when none does).
    pub mean_recall: Vec<LabelRecall>,
}

fn recalls(c: &Confusion, labels: &[String]) -> Vec<LabelRecall> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l, c.class_scores(i)))
        .filter(|(_, s)| s.support > 0)
        .map(|(l, s)| LabelRecall {
            label: l.clone(),
            recall: s.recall,
            support: s.support,
        })
        .collect()
}

impl Fold {
    pub fn report(&self, labels: &[String]) -> FoldReport {
        let c = &self.eval.confusion;
        FoldReport {
            source: self.source.clone(),
            rows: c.total(),
            train_rows: self.train_rows,
            best_epoch: self.best_epoch,
            accuracy: c.accuracy(),
            macro_f1: c.macro_f1_of_truth(),
            recall: recalls(c, labels),
            confusion: c.rows(),
        }
    }
}

/// The report of `folds` with the means over sources.
pub fn summarize(folds: &[Fold], labels: &[String]) -> CrossDomainReport {
    let sources: Vec<FoldReport> = folds.iter().map(|f| f.report(labels)).collect();
    let mean = |v: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        if n == 0 {
            0.0
        } else {
            sum / n as f64
        }
    };
    let mean_recall = labels
        .iter()
        .filter_map(|l| {
            let held: Vec<&LabelRecall> = sources
                .iter()
                .flat_map(|s| s.recall.iter().filter(|r| &r.label == l))
                .collect();
            (!held.is_empty()).then(|| LabelRecall {
                label: l.clone(),
                recall: mean(&mut held.iter().map(|r| r.recall)),
                support: held.iter().map(|r| r.support).sum(),
            })
        })
        .collect();
    CrossDomainReport {
        mean_accuracy: mean(&mut sources.iter().map(|s| s.accuracy)),
        mean_macro_f1: mean(&mut sources.iter().map(|s| s.macro_f1)),
        mean_recall,
        sources,
    }
}

/// The distinct source names in order, and each row's index among them (what
/// [`super::fit::fit_with_sources`] takes).
pub fn source_ids(sources: &[String]) -> (Vec<&String>, Vec<usize>) {
    let names: Vec<&String> = sources
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ids = sources
        .iter()
        .map(|s| names.binary_search(&s).unwrap_or(0))
        .collect();
    (names, ids)
}

/// Holds out each source in turn (in name order): fits a head with `opts` on the rows of the
/// other sources (early stopping on a stratified `val_split` of them, seeded with `opts.seed`)
/// and scores it on all rows of the held-out one. `sources[i]` names the source of row `i`.
/// `on_fold` sees each fold as it ends (in any order); the result is in name order.
pub fn hold_one_source_out(
    all: &Embedded,
    sources: &[String],
    n_labels: usize,
    opts: &FitOptions,
    val_split: f64,
    threads: usize,
    on_fold: &(dyn Fn(&Fold) + Sync),
) -> Result<Vec<Fold>> {
    let bad = |message: String| TrainError::InvalidOption {
        option: "cross-domain",
        message,
    };
    if sources.len() != all.len() {
        return Err(bad(format!(
            "{} rows but {} source names",
            all.len(),
            sources.len()
        )));
    }
    let (names, ids) = source_ids(sources);
    if names.len() < 2 {
        return Err(bad(format!(
            "holding out one source at a time needs at least two sources, found {}",
            names.len()
        )));
    }
    opts.validate()?;
    let run = |held: &String| -> Result<Fold> {
        let (test_idx, train_idx): (Vec<usize>, Vec<usize>) =
            (0..all.len()).partition(|&i| &sources[i] == held);
        let rest = all.select(&train_idx);
        let split = stratified(&rest.labels, n_labels, val_split, opts.seed);
        let (train, val) = (rest.select(&split.train), rest.select(&split.val));
        let train_ids: Vec<usize> = split.train.iter().map(|&i| ids[train_idx[i]]).collect();
        let fitted = fit_with_sources(&train, Some(&train_ids), &val, n_labels, opts, &mut |_| {})?;
        Ok(Fold {
            source: held.clone(),
            train_rows: train.len(),
            best_epoch: fitted.best_epoch,
            eval: evaluate(&fitted.head, &all.select(&test_idx)),
        })
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Fold>>>> =
        Mutex::new((0..names.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, names.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(held) = names.get(i) else { break };
                let fold = run(held);
                if let Ok(f) = &fold {
                    on_fold(f);
                }
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(fold);
                }
            });
        }
    });
    results
        .into_inner()
        .map_err(|_| bad("a fold's thread panicked".into()))?
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(bad("a fold did not finish".into()))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pooled::HeadType;
    use crate::train::rng::Rng;

    /// Three sources of 2-d points: the label is the sign pattern of (x, y); source `c` is
    /// shifted (another "domain") and holds labels 0 and 2 only.
    fn domains() -> (Embedded, Vec<String>) {
        let mut rng = Rng::new(9);
        let (mut x, mut labels, mut sources) = (Vec::new(), Vec::new(), Vec::new());
        for (src, shift, only_poles) in [("a", 0.0, false), ("b", 0.1, false), ("c", 0.3, true)] {
            for i in 0..90 {
                let l = if only_poles { (i % 2) * 2 } else { i % 3 };
                let centre = [-1.0, 0.0, 1.0][l];
                x.push((centre + shift + rng.symmetric(0.25)) as f32);
                x.push((centre - shift + rng.symmetric(0.25)) as f32);
                labels.push(l);
                sources.push(src.to_string());
            }
        }
        (Embedded { x, dim: 2, labels }, sources)
    }

    fn opts() -> FitOptions {
        FitOptions {
            head: HeadType::Linear,
            lr: 0.05,
            batch_size: 16,
            max_epochs: 30,
            ..FitOptions::default()
        }
    }

    #[test]
    fn each_source_is_scored_by_a_head_that_never_saw_it() -> Result<()> {
        let (data, sources) = domains();
        let labels: Vec<String> = ["neg", "neu", "pos"].map(String::from).to_vec();
        let seen = Mutex::new(Vec::new());
        let folds = hold_one_source_out(&data, &sources, 3, &opts(), 0.2, 2, &|f| {
            if let Ok(mut s) = seen.lock() {
                s.push(f.source.clone());
            }
        })?;
        assert_eq!(
            folds.iter().map(|f| f.source.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(seen.lock().map(|s| s.len()).unwrap_or(0), 3);
        for f in &folds {
            // 180 rows of the other two sources, 20% of each label held out for validation.
            assert_eq!(f.eval.confusion.total(), 90);
            assert_eq!(f.train_rows, 144);
        }
        let report = summarize(&folds, &labels);
        assert!(report.mean_accuracy > 0.8, "{report:?}");
        let c = &report.sources[2];
        assert_eq!(c.recall.len(), 2, "source c holds two labels");
        assert!((c.macro_f1 - folds[2].eval.confusion.macro_f1_of_truth()).abs() < 1e-12);
        // Neutral recall is the mean over a and b only.
        let neutral = &report.mean_recall[1];
        assert_eq!((neutral.label.as_str(), neutral.support), ("neu", 60));
        let expected =
            (report.sources[0].recall[1].recall + report.sources[1].recall[1].recall) / 2.0;
        assert!((neutral.recall - expected).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn source_ids_index_the_sorted_names() {
        let rows: Vec<String> = ["b", "a", "b", "c"].map(String::from).to_vec();
        let (names, ids) = source_ids(&rows);
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(ids, [1, 0, 1, 2]);
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() -> Result<()> {
        let (data, sources) = domains();
        let one = hold_one_source_out(&data, &sources, 3, &opts(), 0.2, 1, &|_| {})?;
        let three = hold_one_source_out(&data, &sources, 3, &opts(), 0.2, 3, &|_| {})?;
        for (a, b) in one.iter().zip(&three) {
            assert_eq!(a.eval, b.eval);
            assert_eq!(a.best_epoch, b.best_epoch);
        }
        Ok(())
    }

    #[test]
    fn one_source_or_mismatched_names_are_refused() {
        let (data, sources) = domains();
        let same = vec!["x".to_string(); data.len()];
        let e = hold_one_source_out(&data, &same, 3, &opts(), 0.2, 1, &|_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("at least two sources"), "{e}");
        let e = hold_one_source_out(&data, &sources[1..], 3, &opts(), 0.2, 1, &|_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("source names"), "{e}");
    }
}
