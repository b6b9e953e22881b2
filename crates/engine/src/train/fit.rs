//! Fitting a head on embeddings: seeded initialisation and shuffles, class-weighted
//! cross-entropy, AdamW on mini-batches, early stopping on the validation macro-F1.

use super::error::{Result, TrainError};
use super::eval::{evaluate, Embedded, Evaluation};
use super::net::{AdamW, Net};
use super::rng::Rng;
use crate::pooled::{HeadType, PooledHead};
use serde::Serialize;

/// Hyper-parameters of [`fit`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitOptions {
    pub head: HeadType,
    /// Width of the MLP's hidden layer (MLP only).
    pub mlp_hidden: usize,
    /// Most passes over the training rows.
    pub max_epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    /// AdamW's decoupled weight decay (weights only).
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation macro-F1.
    pub patience: usize,
    /// Weight each label by `rows / (labels · rows of that label)` in the loss.
    pub balanced: bool,
    /// Label smoothing ε in [0, 1): the target puts 1 − ε + ε/k on the true label and ε/k on
    /// each other one (0: one-hot).
    pub label_smoothing: f64,
    /// Weight each source (see [`fit_with_sources`]) by `rows / (sources · rows of that
    /// source)`, so that every source counts as much as any other whatever its size. A row's
    /// weight is its source's times its label's (class weights from the raw label counts: taken
    /// on the source-weighted counts instead, a label that only one source holds, like
    /// `neutral`, got a weight so large that the head called most tweets neutral).
    pub balance_sources: bool,
    pub seed: u64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            head: HeadType::Linear,
            mlp_hidden: 256,
            max_epochs: 100,
            lr: 1e-3,
            batch_size: 64,
            weight_decay: 1e-4,
            patience: 5,
            balanced: true,
            label_smoothing: 0.0,
            balance_sources: false,
            seed: 42,
        }
    }
}

impl FitOptions {
    pub fn validate(&self) -> Result<()> {
        let bad = |option: &'static str, message: &str| {
            Err(TrainError::InvalidOption {
                option,
                message: message.to_string(),
            })
        };
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight-decay", "must be zero or positive");
        }
        if !(self.label_smoothing.is_finite() && (0.0..1.0).contains(&self.label_smoothing)) {
            return bad("label-smoothing", "must be at least 0 and below 1");
        }
        if self.batch_size == 0 {
            return bad("batch-size", "must be at least 1");
        }
        if self.max_epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        if self.patience == 0 {
            return bad("patience", "must be at least 1");
        }
        if self.head == HeadType::Mlp && self.mlp_hidden == 0 {
            return bad("hidden", "must be at least 1");
        }
        Ok(())
    }
}

/// One epoch as it is logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    /// Class-weighted mean cross-entropy (against the smoothed target) over the epoch's batches.
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
}

/// A trained head and how it got there.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The head of the best epoch.
    pub head: PooledHead,
    pub best_epoch: usize,
    /// Its validation results.
    pub val: Evaluation,
    pub history: Vec<EpochLog>,
    pub class_weights: Vec<f64>,
    /// Stopped by patience before `max_epochs`.
    pub stopped_early: bool,
}

/// Loss weight per label: balanced (`n / (k · n_label)`, 0 for a label without rows) or all 1.
pub fn class_weights(labels: &[usize], k: usize, balanced: bool) -> Vec<f64> {
    if !balanced {
        return vec![1.0; k];
    }
    let mut counts = vec![0usize; k];
    for &l in labels {
        if let Some(c) = counts.get_mut(l) {
            *c += 1;
        }
    }
    let n = labels.len() as f64;
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                n / (k as f64 * c as f64)
            }
        })
        .collect()
}

/// Weight per row that makes every source weigh the same: `n / (sources · rows of its source)`.
pub fn source_weights(sources: &[usize]) -> Vec<f64> {
    let mut counts = std::collections::BTreeMap::<usize, usize>::new();
    for &s in sources {
        *counts.entry(s).or_default() += 1;
    }
    let (n, k) = (sources.len() as f64, counts.len() as f64);
    sources.iter().map(|s| n / (k * counts[s] as f64)).collect()
}

/// Trains a head on `train`, choosing the epoch by the macro-F1 on `val`. `on_epoch` sees each
/// epoch's log as it ends. Deterministic: the same data, labels and options give the same head
/// bit for bit.
pub fn fit(
    train: &Embedded,
    val: &Embedded,
    n_labels: usize,
    opts: &FitOptions,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<Fitted> {
    fit_with_sources(train, None, val, n_labels, opts, on_epoch)
}

/// [`fit`] where `sources[i]` (an id) names the source of training row `i`, which
/// [`FitOptions::balance_sources`] needs.
pub fn fit_with_sources(
    train: &Embedded,
    sources: Option<&[usize]>,
    val: &Embedded,
    n_labels: usize,
    opts: &FitOptions,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<Fitted> {
    opts.validate()?;
    let bad = |message: String| TrainError::InvalidOption {
        option: "val-split",
        message,
    };
    if train.is_empty() || val.is_empty() {
        return Err(bad(format!(
            "training needs rows on both sides of the validation split (train {}, validation {})",
            train.len(),
            val.len()
        )));
    }
    if train.dim == 0 || train.dim != val.dim {
        return Err(bad(format!(
            "embedding widths differ (train {}, validation {})",
            train.dim, val.dim
        )));
    }
    if let Some(&l) = train
        .labels
        .iter()
        .chain(&val.labels)
        .find(|&&l| l >= n_labels)
    {
        return Err(bad(format!("label id {l} is not below {n_labels}")));
    }
    let dims: Vec<usize> = match opts.head {
        HeadType::Linear => vec![train.dim, n_labels],
        HeadType::Mlp => vec![train.dim, opts.mlp_hidden, n_labels],
    };
    let row_weights = match (opts.balance_sources, sources) {
        (false, _) => vec![1.0; train.len()],
        (true, Some(s)) if s.len() == train.len() => source_weights(s),
        (true, Some(s)) => {
            return Err(TrainError::InvalidOption {
                option: "source-weight",
                message: format!("{} training rows but {} source ids", train.len(), s.len()),
            })
        }
        (true, None) => {
            return Err(TrainError::InvalidOption {
                option: "source-weight",
                message: "balancing sources needs each row's source (--source-field)".into(),
            })
        }
    };
    let weights = class_weights(&train.labels, n_labels, opts.balanced);
    let row_weight = |i: usize| row_weights[i] * weights[train.labels[i]];
    let mut net = Net::new(&dims, &mut Rng::derive(opts.seed, 1));
    let mut order_rng = Rng::derive(opts.seed, 2);
    let mut adam = AdamW::new(&net);
    let mut grad = net.zeros_like();
    let mut ws = net.work();
    let mut order: Vec<usize> = (0..train.len()).collect();

    let mut best: Option<(usize, PooledHead, Evaluation)> = None;
    let mut history = Vec::new();
    let mut stopped_early = false;
    for epoch in 1..=opts.max_epochs {
        order.sort_unstable();
        order_rng.shuffle(&mut order);
        let (mut loss_sum, mut weight_sum) = (0f64, 0f64);
        for batch in order.chunks(opts.batch_size) {
            let total: f64 = batch.iter().map(|&i| row_weight(i)).sum();
            if total <= 0.0 {
                continue;
            }
            grad.zero();
            for &i in batch {
                let w = row_weight(i);
                let l = net.accumulate(
                    train.row(i),
                    train.labels[i],
                    opts.label_smoothing,
                    w / total,
                    &mut grad,
                    &mut ws,
                );
                loss_sum += w * l;
            }
            weight_sum += total;
            adam.step(&mut net, &grad, opts.lr, opts.weight_decay);
        }
        let head = net.to_head();
        let ev = evaluate(&head, val);
        let log = EpochLog {
            epoch,
            train_loss: loss_sum / weight_sum.max(f64::MIN_POSITIVE),
            val_loss: ev.loss,
            val_accuracy: ev.accuracy(),
            val_macro_f1: ev.macro_f1(),
        };
        on_epoch(&log);
        history.push(log);
        let improved = best
            .as_ref()
            .is_none_or(|(_, _, b)| ev.macro_f1() > b.macro_f1());
        if improved {
            best = Some((epoch, head, ev));
        } else if best
            .as_ref()
            .is_some_and(|(e, _, _)| epoch - e >= opts.patience)
        {
            stopped_early = epoch < opts.max_epochs;
            break;
        }
    }
    let (best_epoch, head, val_eval) =
        best.ok_or_else(|| bad("no epoch was trained".to_string()))?;
    Ok(Fitted {
        head,
        best_epoch,
        val: val_eval,
        history,
        class_weights: weights,
        stopped_early,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three separable clusters in 4-d with a little seeded noise.
    fn blobs(n: usize, seed: u64) -> Embedded {
        let mut rng = Rng::new(seed);
        let mut x = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let l = i % 3;
            for d in 0..4 {
                let centre = if d == l { 1.0 } else { 0.0 };
                x.push((centre + rng.symmetric(0.3)) as f32);
            }
            labels.push(l);
        }
        Embedded { x, dim: 4, labels }
    }

    #[test]
    fn learns_separable_data_with_both_heads() -> Result<()> {
        for head in [HeadType::Linear, HeadType::Mlp] {
            let opts = FitOptions {
                head,
                mlp_hidden: 8,
                lr: 0.05,
                batch_size: 16,
                max_epochs: 40,
                ..FitOptions::default()
            };
            let fitted = fit(&blobs(150, 1), &blobs(60, 2), 3, &opts, &mut |_| {})?;
            assert_eq!(fitted.head.head_type(), head);
            assert!(
                fitted.val.accuracy() > 0.95,
                "{head:?}: {}",
                fitted.val.accuracy()
            );
            assert!(fitted.history.len() >= fitted.best_epoch);
        }
        Ok(())
    }

    #[test]
    fn is_bit_for_bit_deterministic() -> Result<()> {
        let opts = FitOptions {
            head: HeadType::Mlp,
            mlp_hidden: 8,
            max_epochs: 5,
            ..FitOptions::default()
        };
        let a = fit(&blobs(90, 1), &blobs(30, 2), 3, &opts, &mut |_| {})?;
        let b = fit(&blobs(90, 1), &blobs(30, 2), 3, &opts, &mut |_| {})?;
        assert_eq!(a.head, b.head);
        assert_eq!(a.history, b.history);
        let c = fit(
            &blobs(90, 1),
            &blobs(30, 2),
            3,
            &FitOptions { seed: 7, ..opts },
            &mut |_| {},
        )?;
        assert_ne!(a.head, c.head);
        Ok(())
    }

    #[test]
    fn balanced_weights_invert_frequencies() {
        let w = class_weights(&[0, 0, 0, 1], 3, true);
        assert_eq!(w, vec![4.0 / 9.0, 4.0 / 3.0, 0.0]);
        assert_eq!(class_weights(&[0, 1], 2, false), vec![1.0, 1.0]);
    }

    #[test]
    fn source_weights_make_each_source_weigh_the_same() {
        let w = source_weights(&[0, 0, 0, 1]);
        assert_eq!(w, vec![4.0 / 6.0, 4.0 / 6.0, 4.0 / 6.0, 2.0]);
        assert_eq!(w.iter().sum::<f64>(), 4.0);
    }

    #[test]
    fn balancing_sources_needs_them_and_changes_the_head() -> Result<()> {
        let opts = FitOptions {
            balance_sources: true,
            max_epochs: 3,
            ..FitOptions::default()
        };
        let (t, v) = (blobs(90, 1), blobs(30, 2));
        let e = fit(&t, &v, 3, &opts, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("--source-field"), "{e}");
        let sources: Vec<usize> = (0..90).map(|i| usize::from(i >= 80)).collect();
        let a = fit_with_sources(&t, Some(&sources), &v, 3, &opts, &mut |_| {})?;
        let plain = FitOptions {
            balance_sources: false,
            ..opts.clone()
        };
        let b = fit_with_sources(&t, Some(&sources), &v, 3, &plain, &mut |_| {})?;
        assert_ne!(a.head, b.head);
        // Unbalanced, the sources are ignored: the same head as without them.
        assert_eq!(b.head, fit(&t, &v, 3, &plain, &mut |_| {})?.head);
        Ok(())
    }

    #[test]
    fn bad_options_and_shapes_are_refused() {
        let t = blobs(9, 1);
        let opts = FitOptions {
            lr: 0.0,
            ..FitOptions::default()
        };
        let e = fit(&t, &t, 3, &opts, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("`lr`"), "{e}");
        let e = fit(
            &t,
            &Embedded::default(),
            3,
            &FitOptions::default(),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("both sides"), "{e}");
        let e = fit(&t, &t, 2, &FitOptions::default(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("label id 2"), "{e}");
    }
}
