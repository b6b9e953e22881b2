//! Classification metrics: confusion matrix, accuracy, per-class precision / recall / F1 and
//! macro-F1.
//!
//! Macro-F1 averages the F1 of every label that occurs in the truth or in the predictions
//! (scikit-learn's `f1_score(average="macro")` without `labels`): a label absent from both (say
//! `neutral` on a two-class test set the model never calls neutral) does not count, a label the
//! model predicts but the data lacks counts with F1 = 0. A ratio with a zero denominator is 0.
//! [`Confusion::macro_f1_of_truth`] averages over the labels the data holds only (the
//! cross-domain figure: a `neutral` prediction on two-class data is an error of the true label,
//! not a third label with F1 = 0).

use serde::Serialize;

/// Counts by (true label, predicted label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confusion {
    k: usize,
    counts: Vec<u64>,
}

/// Precision, recall and F1 of one label.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Rows whose true label this is.
    pub support: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Confusion {
    pub fn new(k: usize) -> Self {
        Confusion {
            k,
            counts: vec![0; k * k],
        }
    }

    /// From (truth, prediction) pairs; labels must be below `k`.
    pub fn from_pairs(k: usize, pairs: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut c = Confusion::new(k);
        for (t, p) in pairs {
            c.add(t, p);
        }
        c
    }

    /// Counts one row (out-of-range labels are ignored).
    pub fn add(&mut self, truth: usize, predicted: usize) {
        if truth < self.k && predicted < self.k {
            self.counts[truth * self.k + predicted] += 1;
        }
    }

    pub fn labels(&self) -> usize {
        self.k
    }

    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.k + predicted]
    }

    /// Rows: true label; columns: predicted label.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts
            .chunks(self.k.max(1))
            .map(<[u64]>::to_vec)
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn truth_count(&self, l: usize) -> u64 {
        (0..self.k).map(|p| self.get(l, p)).sum()
    }

    fn predicted_count(&self, l: usize) -> u64 {
        (0..self.k).map(|t| self.get(t, l)).sum()
    }

    pub fn accuracy(&self) -> f64 {
        ratio((0..self.k).map(|l| self.get(l, l)).sum(), self.total())
    }

    pub fn class_scores(&self, l: usize) -> ClassScores {
        let tp = self.get(l, l);
        let precision = ratio(tp, self.predicted_count(l));
        let recall = ratio(tp, self.truth_count(l));
        let f1 = ratio(2 * tp, self.truth_count(l) + self.predicted_count(l));
        ClassScores {
            precision,
            recall,
            f1,
            support: self.truth_count(l),
        }
    }

    /// Mean F1 over the labels present in the truth or the predictions (0 when there are none).
    pub fn macro_f1(&self) -> f64 {
        let present: Vec<usize> = (0..self.k)
            .filter(|&l| self.truth_count(l) + self.predicted_count(l) > 0)
            .collect();
        if present.is_empty() {
            return 0.0;
        }
        present
            .iter()
            .map(|&l| self.class_scores(l).f1)
            .sum::<f64>()
            / present.len() as f64
    }

    /// Mean F1 over the labels that occur in the truth (0 when there are none); predictions of
    /// other labels still count as errors of the true label.
    pub fn macro_f1_of_truth(&self) -> f64 {
        let present: Vec<usize> = (0..self.k).filter(|&l| self.truth_count(l) > 0).collect();
        if present.is_empty() {
            return 0.0;
        }
        present
            .iter()
            .map(|&l| self.class_scores(l).f1)
            .sum::<f64>()
            / present.len() as f64
    }
}

/// Index of the largest value (the first on ties; 0 for an empty slice).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn scores_a_known_matrix() {
        // truth \ pred: [[3, 1, 0], [1, 2, 1], [0, 0, 2]]
        let pairs = [
            (0, 0),
            (0, 0),
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (1, 1),
            (1, 2),
            (2, 2),
            (2, 2),
        ];
        let c = Confusion::from_pairs(3, pairs);
        assert_eq!(c.rows(), vec![vec![3, 1, 0], vec![1, 2, 1], vec![0, 0, 2]]);
        assert_eq!(c.total(), 10);
        assert!(close(c.accuracy(), 0.7));
        let s0 = c.class_scores(0);
        assert!(close(s0.precision, 0.75) && close(s0.recall, 0.75) && close(s0.f1, 0.75));
        let s1 = c.class_scores(1);
        assert!(close(s1.precision, 2.0 / 3.0) && close(s1.recall, 0.5));
        assert!(close(s1.f1, 4.0 / 7.0));
        let s2 = c.class_scores(2);
        assert!(close(s2.precision, 2.0 / 3.0) && close(s2.recall, 1.0) && close(s2.f1, 0.8));
        assert_eq!(s2.support, 2);
        assert!(close(c.macro_f1(), (0.75 + 4.0 / 7.0 + 0.8) / 3.0));
    }

    #[test]
    fn macro_f1_skips_labels_absent_from_truth_and_predictions() {
        // Two-class data scored by a three-class model that never predicts label 1.
        let c = Confusion::from_pairs(3, [(0, 0), (0, 2), (2, 2), (2, 2)]);
        assert!(close(c.macro_f1(), (2.0 / 3.0 + 0.8) / 2.0));
        // Predicting the absent label counts it, with F1 = 0.
        let d = Confusion::from_pairs(3, [(0, 0), (0, 1), (2, 2), (2, 2)]);
        assert!(close(d.macro_f1(), (2.0 / 3.0 + 0.0 + 1.0) / 3.0));
        // Over the truth's labels only, the wrong `1` is an error of label 0 and nothing more.
        assert!(close(d.macro_f1_of_truth(), (2.0 / 3.0 + 1.0) / 2.0));
    }

    #[test]
    fn empty_and_degenerate_cases_are_zero_not_nan() {
        let c = Confusion::new(2);
        assert_eq!(c.accuracy(), 0.0);
        assert_eq!(c.macro_f1(), 0.0);
        assert_eq!(c.class_scores(1).f1, 0.0);
        let all_one = Confusion::from_pairs(2, [(0, 1), (1, 1)]);
        assert_eq!(all_one.class_scores(0).precision, 0.0);
        assert!(close(all_one.accuracy(), 0.5));
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
        assert_eq!(argmax(&[0.5, 0.5]), 0);
        assert_eq!(argmax(&[]), 0);
    }
}
