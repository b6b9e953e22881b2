//! The metrics `nlpd train` prints: accuracy, macro-F1, per-label scores, confusion matrix.

use nlpd_engine::train::{CrossDomainReport, MetricsReport};
use std::fmt::Write;

/// The cross-domain table: one row per held-out source, then the means over sources.
pub fn render_cross_domain(r: &CrossDomainReport, labels: &[String]) -> String {
    let mut s = String::new();
    let w = r
        .sources
        .iter()
        .map(|f| f.source.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let lw = labels.iter().map(String::len).max().unwrap_or(5).max(6);
    let _ = writeln!(
        s,
        "cross-domain validation (each source scored by a head trained on the other sources only):"
    );
    let _ = write!(
        s,
        "  {:<w$}  {:>7}  {:>8}  {:>8}  recall:",
        "source", "rows", "accuracy", "macro-F1"
    );
    for l in labels {
        let _ = write!(s, " {l:>lw$}");
    }
    s.push('\n');
    let recall_cells = |s: &mut String, recall: &[nlpd_engine::train::crossval::LabelRecall]| {
        for l in labels {
            match recall.iter().find(|x| &x.label == l) {
                Some(x) => {
                    let _ = write!(s, " {:>lw$.4}", x.recall);
                }
                None => {
                    let _ = write!(s, " {:>lw$}", "-");
                }
            }
        }
        s.push('\n');
    };
    for f in &r.sources {
        let _ = write!(
            s,
            "  {:<w$}  {:>7}  {:>8.4}  {:>8.4}         ",
            f.source, f.rows, f.accuracy, f.macro_f1
        );
        recall_cells(&mut s, &f.recall);
    }
    let _ = write!(
        s,
        "  {:<w$}  {:>7}  {:>8.4}  {:>8.4}         ",
        "mean", "", r.mean_accuracy, r.mean_macro_f1
    );
    recall_cells(&mut s, &r.mean_recall);
    let _ = writeln!(
        s,
        "  (macro-F1 over the labels each source holds; a label a source lacks counts as an error \
         when predicted there)"
    );
    s
}

/// A readable block for one data set.
pub fn render(title: &str, m: &MetricsReport, labels: &[String]) -> String {
    let mut s = String::new();
    let w = labels.iter().map(String::len).max().unwrap_or(5).max(8);
    let _ = writeln!(
        s,
        "{title} ({} rows): accuracy {:.4}  macro-F1 {:.4}  loss {:.4}",
        m.rows, m.accuracy, m.macro_f1, m.loss
    );
    if let Some(p) = &m.present_labels {
        let _ = writeln!(
            s,
            "  predicting only the labels this data holds ({}): accuracy {:.4}  macro-F1 {:.4}",
            p.labels.join(", "),
            p.accuracy,
            p.macro_f1
        );
    }
    let _ = writeln!(s, "  {:<w$}  precision  recall      f1  support", "label");
    for p in &m.per_label {
        let _ = writeln!(
            s,
            "  {:<w$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
            p.label, p.scores.precision, p.scores.recall, p.scores.f1, p.scores.support
        );
    }
    let _ = writeln!(s, "  confusion (rows: true label, columns: predicted)");
    let _ = write!(s, "  {:<w$}", "");
    for l in labels {
        let _ = write!(s, "  {l:>w$}");
    }
    s.push('\n');
    for (l, row) in labels.iter().zip(&m.confusion) {
        let _ = write!(s, "  {l:<w$}");
        for c in row {
            let _ = write!(s, "  {c:>w$}");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlpd_engine::train::{Confusion, Evaluation};

    #[test]
    fn renders_scores_and_the_matrix() {
        let labels = vec!["negative".to_string(), "positive".to_string()];
        let ev = Evaluation {
            confusion: Confusion::from_pairs(2, [(0, 0), (0, 1), (1, 1)]),
            loss: 0.5,
            present_only: None,
        };
        let text = render("test", &ev.report(&labels), &labels);
        assert!(
            text.contains("test (3 rows): accuracy 0.6667  macro-F1 0.6667"),
            "{text}"
        );
        assert!(text.contains("  negative         1         1"), "{text}");
        assert!(text.contains("  positive         0         1"), "{text}");
    }

    #[test]
    fn renders_the_cross_domain_table_with_dashes_for_absent_labels() {
        use nlpd_engine::train::{summarize, Fold};
        let labels: Vec<String> = ["negative", "neutral", "positive"]
            .map(String::from)
            .to_vec();
        let fold = |source: &str, pairs: &[(usize, usize)]| Fold {
            source: source.into(),
            train_rows: 10,
            best_epoch: 1,
            eval: Evaluation {
                confusion: Confusion::from_pairs(3, pairs.iter().copied()),
                loss: 0.0,
                present_only: None,
            },
        };
        let r = summarize(
            &[
                fold("reviews", &[(0, 0), (2, 1)]),
                fold("tweets", &[(0, 0), (1, 1), (2, 2)]),
            ],
            &labels,
        );
        let text = render_cross_domain(&r, &labels);
        assert!(
            text.contains(
                "  reviews        2    0.5000    0.5000            1.0000        -   0.0000"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  mean                0.7500    0.7500            1.0000   1.0000   0.5000"
            ),
            "{text}"
        );
    }
}
