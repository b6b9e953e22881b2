//! The validation split: stratified by label, seeded, independent of the thread count.

use super::rng::Rng;

/// Indices of the training and validation rows (each ascending, i.e. in file order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

/// Holds out `fraction` of each label's rows (rounded, at least one row when the label has two
/// or more and `fraction` > 0, never all of them), chosen by a shuffle seeded with `seed` and the
/// label id. The same labels, fraction and seed always give the same split.
pub fn stratified(labels: &[usize], n_labels: usize, fraction: f64, seed: u64) -> Split {
    let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); n_labels];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(rows) = by_label.get_mut(l) {
            rows.push(i);
        }
    }
    let mut val = Vec::new();
    for (label, mut rows) in by_label.into_iter().enumerate() {
        let n = rows.len();
        if n < 2 || fraction <= 0.0 {
            continue;
        }
        let take = ((fraction * n as f64).round() as usize).clamp(1, n - 1);
        Rng::derive(seed, 0x5EED_0000 + label as u64).shuffle(&mut rows);
        val.extend_from_slice(&rows[..take]);
    }
    val.sort_unstable();
    let mut is_val = vec![false; labels.len()];
    for &i in &val {
        is_val[i] = true;
    }
    let train = (0..labels.len()).filter(|&i| !is_val[i]).collect();
    Split { train, val }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<usize> {
        // 60 of label 0, 30 of label 1, 10 of label 2, interleaved.
        (0..100)
            .map(|i| match i % 10 {
                0..=5 => 0,
                6..=8 => 1,
                _ => 2,
            })
            .collect()
    }

    #[test]
    fn partitions_every_row_once() {
        let s = stratified(&labels(), 3, 0.2, 42);
        assert_eq!(s.train.len() + s.val.len(), 100);
        let mut all: Vec<usize> = s.train.iter().chain(&s.val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert!(s.train.windows(2).all(|w| w[0] < w[1]));
        assert!(s.val.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn keeps_label_proportions() {
        let l = labels();
        let s = stratified(&l, 3, 0.2, 42);
        let count = |rows: &[usize], label| rows.iter().filter(|&&i| l[i] == label).count();
        assert_eq!(
            [count(&s.val, 0), count(&s.val, 1), count(&s.val, 2)],
            [12, 6, 2]
        );
    }

    #[test]
    fn is_seeded() {
        let l = labels();
        assert_eq!(stratified(&l, 3, 0.2, 1), stratified(&l, 3, 0.2, 1));
        assert_ne!(stratified(&l, 3, 0.2, 1), stratified(&l, 3, 0.2, 2));
    }

    #[test]
    fn small_labels_keep_a_training_row() {
        let s = stratified(&[0, 0, 1, 1, 1, 1, 2], 3, 0.9, 5);
        // label 0: 2 rows -> 1 val; label 1: 4 rows -> 3 val; label 2: 1 row -> stays in train
        assert_eq!(s.val.len(), 4);
        assert!(s.train.contains(&6));
        assert_eq!(
            stratified(&[0, 1, 0, 1], 2, 0.0, 5).val,
            Vec::<usize>::new()
        );
    }
}
