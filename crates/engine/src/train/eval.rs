//! Embedded examples and how a head scores on them.

use super::metrics::{argmax, ClassScores, Confusion};
use crate::pooled::PooledHead;
use serde::Serialize;

/// Examples as embeddings: `x` is `[len × dim]` row-major, `labels[i]` the label id of row `i`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embedded {
    pub x: Vec<f32>,
    pub dim: usize,
    pub labels: Vec<usize>,
}

impl Embedded {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Embedded {
        let mut x = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            x.extend_from_slice(self.row(i));
        }
        Embedded {
            x,
            dim: self.dim,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

/// A head's results on one data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub confusion: Confusion,
    /// Mean cross-entropy (natural log) of the true labels.
    pub loss: f64,
    /// When the data holds only some of the head's labels (two-class data for a three-class
    /// head): the confusion matrix of the argmax over those labels only. `None` when all occur.
    pub present_only: Option<Confusion>,
}

impl Evaluation {
    pub fn accuracy(&self) -> f64 {
        self.confusion.accuracy()
    }

    pub fn macro_f1(&self) -> f64 {
        self.confusion.macro_f1()
    }

    /// The metrics as `train.json` records them.
    pub fn report(&self, labels: &[String]) -> MetricsReport {
        MetricsReport {
            rows: self.confusion.total(),
            accuracy: self.accuracy(),
            macro_f1: self.macro_f1(),
            loss: self.loss,
            present_labels: self.present_only.as_ref().map(|c| PresentLabels {
                labels: labels
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| c.class_scores(*i).support > 0)
                    .map(|(_, l)| l.clone())
                    .collect(),
                accuracy: c.accuracy(),
                macro_f1: c.macro_f1(),
            }),
            per_label: labels
                .iter()
                .enumerate()
                .map(|(i, l)| LabelScores {
                    label: l.clone(),
                    scores: self.confusion.class_scores(i),
                })
                .collect(),
            confusion: self.confusion.rows(),
        }
    }
}

/// Serializable metrics of one data set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsReport {
    pub rows: u64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub loss: f64,
    /// Scores of the argmax restricted to the labels the data holds (when it lacks some).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub present_labels: Option<PresentLabels>,
    pub per_label: Vec<LabelScores>,
    /// Rows: true label; columns: predicted label (label-id order).
    pub confusion: Vec<Vec<u64>>,
}

/// Accuracy and macro-F1 when predictions may only be labels the data holds (for example the
/// two-class accuracy of a negative / neutral / positive head on negative / positive data).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresentLabels {
    pub labels: Vec<String>,
    pub accuracy: f64,
    pub macro_f1: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScores {
    pub label: String,
    #[serde(flatten)]
    pub scores: ClassScores,
}

/// Scores `head` on `data` with the same f32 forward pass the server runs.
pub fn evaluate(head: &PooledHead, data: &Embedded) -> Evaluation {
    let k = head.num_labels();
    let mut present = vec![false; k];
    for &l in &data.labels {
        if let Some(p) = present.get_mut(l) {
            *p = true;
        }
    }
    let partial = present.iter().any(|p| !p);
    let mut confusion = Confusion::new(k);
    let mut restricted = Confusion::new(k);
    let mut loss = 0f64;
    for i in 0..data.len() {
        let logits = head.logits(data.row(i));
        let truth = data.labels[i];
        confusion.add(truth, argmax(&logits));
        loss += cross_entropy(&logits, truth);
        if partial {
            let masked: Vec<f32> = logits
                .iter()
                .zip(&present)
                .map(|(&l, &p)| if p { l } else { f32::NEG_INFINITY })
                .collect();
            restricted.add(truth, argmax(&masked));
        }
    }
    let n = data.len().max(1) as f64;
    Evaluation {
        confusion,
        loss: loss / n,
        present_only: partial.then_some(restricted),
    }
}

/// `-ln softmax(logits)[truth]`, computed stably in f64.
pub fn cross_entropy(logits: &[f32], truth: usize) -> f64 {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &l| m.max(l as f64));
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let at = logits.get(truth).map_or(max, |&l| l as f64);
    sum.ln() + max - at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pooled::Dense;

    fn identity_head() -> PooledHead {
        PooledHead {
            dense: None,
            classifier: Dense {
                w: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                b: vec![0.0; 3],
                n_in: 3,
                n_out: 3,
            },
        }
    }

    #[test]
    fn evaluates_with_argmax_and_restricts_to_present_labels() {
        let data = Embedded {
            // row 0: label 0 right; row 1: label 2, predicted 1 (label 1 absent: restricted right)
            x: vec![2.0, 0.0, 1.0, 0.0, 3.0, 1.0],
            dim: 3,
            labels: vec![0, 2],
        };
        let ev = evaluate(&identity_head(), &data);
        assert_eq!(
            ev.confusion.rows(),
            vec![vec![1, 0, 0], vec![0; 3], vec![0, 1, 0]]
        );
        assert_eq!(ev.accuracy(), 0.5);
        let only = ev.present_only.clone().unwrap_or_else(|| Confusion::new(3));
        assert_eq!(only.rows(), vec![vec![1, 0, 0], vec![0; 3], vec![0, 0, 1]]);
        let expected =
            (cross_entropy(&[2.0, 0.0, 1.0], 0) + cross_entropy(&[0.0, 3.0, 1.0], 2)) / 2.0;
        assert!((ev.loss - expected).abs() < 1e-12);
        let r = ev.report(&["a".into(), "b".into(), "c".into()]);
        assert_eq!(r.rows, 2);
        assert_eq!(r.per_label[2].label, "c");
        assert_eq!(r.per_label[2].scores.support, 1);
        let present = r
            .present_labels
            .unwrap_or_else(|| panic!("two of three labels"));
        assert_eq!(present.labels, vec!["a", "c"]);
        assert_eq!((present.accuracy, present.macro_f1), (1.0, 1.0));
    }

    #[test]
    fn cross_entropy_is_stable() {
        assert!((cross_entropy(&[0.0, 0.0], 1) - 2f64.ln()).abs() < 1e-12);
        assert!(cross_entropy(&[1000.0, -1000.0], 0) < 1e-12);
        assert!((cross_entropy(&[1000.0, -1000.0], 1) - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn select_picks_rows_in_order() {
        let e = Embedded {
            x: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            dim: 2,
            labels: vec![0, 1, 2],
        };
        let s = e.select(&[2, 0]);
        assert_eq!(s.x, vec![4.0, 5.0, 0.0, 1.0]);
        assert_eq!(s.labels, vec![2, 0]);
    }
}
