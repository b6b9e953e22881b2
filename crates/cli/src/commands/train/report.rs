//! The metrics `nlpd train` prints: accuracy, macro-F1, per-label scores, confusion matrix.

use nlpd_engine::train::MetricsReport;
use std::fmt::Write;

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
}
