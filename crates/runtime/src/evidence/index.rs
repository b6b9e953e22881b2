//! The vector index over the evidence passages: exact cosine search.
//!
//! Vectors are L2-normalized when added, so cosine is a dot product; they sit in one contiguous
//! row-major matrix that a search scans once (the dot products vectorize; 100k passages of 384
//! dimensions take about 10 ms on one core). The top `k` are kept in a small heap. An approximate
//! index would replace the scan once corpora grow past what one scan per claim allows.

use nlpd_engine::dot;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// What the index knows of a passage besides its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct PassageRef {
    pub document_id: Arc<str>,
    pub position: i32,
    pub text: Arc<str>,
    pub start_char: i32,
    pub end_char: i32,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub passage: PassageRef,
    /// Cosine similarity to the query.
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    #[error("a vector of {got} dimensions cannot join an index of {want}")]
    Dimensions { want: usize, got: usize },
    #[error("a vector with no length (all zeros, or not finite) cannot be indexed")]
    Degenerate,
}

/// Exact cosine index.
#[derive(Debug, Default)]
pub struct VectorIndex {
    /// 0 until the first vector sets it.
    dim: usize,
    refs: Vec<PassageRef>,
    /// `refs.len() × dim`, row-major, each row unit length.
    vecs: Vec<f32>,
}

/// The vector scaled to unit length.
pub fn normalized(v: &[f32]) -> Result<Vec<f32>, IndexError> {
    let norm = dot(v, v).sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return Err(IndexError::Degenerate);
    }
    Ok(v.iter().map(|x| x / norm).collect())
}

/// A heap entry ordered by score, lowest on top (the heap keeps the best k).
struct Scored(f32, usize);

impl PartialEq for Scored {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the worst kept score on top; on equal
        // scores the later passage is worse, so results are stable in insertion order.
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

impl VectorIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Dimensions of the vectors (0 while empty and never filled).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Adds a passage (its vector is normalized here).
    pub fn add(&mut self, passage: PassageRef, vector: &[f32]) -> Result<(), IndexError> {
        if self.refs.is_empty() {
            self.dim = vector.len();
        } else if vector.len() != self.dim {
            return Err(IndexError::Dimensions {
                want: self.dim,
                got: vector.len(),
            });
        }
        let v = normalized(vector)?;
        self.vecs.extend_from_slice(&v);
        self.refs.push(passage);
        Ok(())
    }

    /// Removes every passage of a document; returns how many.
    pub fn remove_document(&mut self, document_id: &str) -> usize {
        let dim = self.dim;
        let before = self.refs.len();
        let mut keep = 0;
        for i in 0..self.refs.len() {
            if &*self.refs[i].document_id != document_id {
                if keep != i {
                    self.refs.swap(keep, i);
                    self.vecs.copy_within(i * dim..(i + 1) * dim, keep * dim);
                }
                keep += 1;
            }
        }
        self.refs.truncate(keep);
        self.vecs.truncate(keep * dim);
        before - keep
    }

    /// The `k` passages most similar to `query` with a cosine of at least `min_score`, best
    /// first (ties in insertion order). A query of other dimensions is an error.
    pub fn search(&self, query: &[f32], k: usize, min_score: f32) -> Result<Vec<Hit>, IndexError> {
        if self.refs.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        if query.len() != self.dim {
            return Err(IndexError::Dimensions {
                want: self.dim,
                got: query.len(),
            });
        }
        let q = normalized(query)?;
        let mut heap = BinaryHeap::with_capacity(k + 1);
        for (i, row) in self.vecs.chunks_exact(self.dim).enumerate() {
            let s = dot(&q, row);
            if s < min_score || s.is_nan() {
                continue;
            }
            if heap.len() < k {
                heap.push(Scored(s, i));
            } else if heap.peek().is_some_and(|w| Scored(s, i) < *w) {
                heap.pop();
                heap.push(Scored(s, i));
            }
        }
        // Ascending by the reversed order = best first.
        Ok(heap
            .into_sorted_vec()
            .into_iter()
            .map(|Scored(score, i)| Hit {
                passage: self.refs[i].clone(),
                score,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(doc: &str, pos: i32) -> PassageRef {
        PassageRef {
            document_id: doc.into(),
            position: pos,
            text: format!("{doc}#{pos}").into(),
            start_char: 0,
            end_char: 1,
        }
    }

    fn brute(index: &VectorIndex, q: &[f32], k: usize, min: f32) -> Vec<(String, f32)> {
        let qn = normalized(q).unwrap();
        let mut all: Vec<(usize, f32)> = index
            .vecs
            .chunks_exact(index.dim)
            .map(|r| r.iter().zip(&qn).map(|(a, b)| a * b).sum::<f32>())
            .enumerate()
            .filter(|(_, s)| *s >= min)
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all.into_iter()
            .map(|(i, s)| (index.refs[i].text.to_string(), s))
            .collect()
    }

    /// A deterministic pseudo-random vector.
    fn vector(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..dim)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn search_equals_a_full_sort() {
        let mut idx = VectorIndex::new();
        for d in 0..20 {
            for pos in 0..10 {
                idx.add(p(&format!("d{d}"), pos), &vector(d * 10 + pos as u64, 37))
                    .unwrap();
            }
        }
        for seed in 1000..1010 {
            let q = vector(seed, 37);
            for (k, min) in [(1, -1.0), (5, -1.0), (10, 0.1), (500, 0.0)] {
                let got: Vec<(String, f32)> = idx
                    .search(&q, k, min)
                    .unwrap()
                    .into_iter()
                    .map(|h| (h.passage.text.to_string(), h.score))
                    .collect();
                let want = brute(&idx, &q, k, min);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.0, w.0);
                    assert!((g.1 - w.1).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn the_same_vector_scores_one_and_comes_first() {
        let mut idx = VectorIndex::new();
        idx.add(p("a", 0), &[1.0, 0.0, 0.0]).unwrap();
        idx.add(p("b", 0), &[0.0, 2.0, 0.0]).unwrap();
        idx.add(p("c", 0), &[1.0, 1.0, 0.0]).unwrap();
        let hits = idx.search(&[0.0, 5.0, 0.0], 2, -1.0).unwrap();
        assert_eq!(&*hits[0].passage.document_id, "b");
        assert!((hits[0].score - 1.0).abs() < 1e-6);
        assert_eq!(&*hits[1].passage.document_id, "c");
        assert!((hits[1].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        // min_score drops the rest.
        assert_eq!(idx.search(&[0.0, 5.0, 0.0], 10, 0.5).unwrap().len(), 2);
    }

    #[test]
    fn removing_a_document_keeps_the_others_searchable() {
        let mut idx = VectorIndex::new();
        for (d, v) in [
            ("a", [1.0, 0.0]),
            ("b", [0.0, 1.0]),
            ("a", [0.7, 0.7]),
            ("c", [-1.0, 0.0]),
        ] {
            idx.add(p(d, 0), &v).unwrap();
        }
        assert_eq!(idx.remove_document("a"), 2);
        assert_eq!(idx.remove_document("a"), 0);
        assert_eq!(idx.len(), 2);
        let hits = idx.search(&[0.0, 1.0], 5, -1.0).unwrap();
        assert_eq!(
            hits.iter()
                .map(|h| &*h.passage.document_id)
                .collect::<Vec<_>>(),
            vec!["b", "c"]
        );
        assert!((hits[0].score - 1.0).abs() < 1e-6);
    }

    #[test]
    fn bad_vectors_are_errors_not_panics() {
        let mut idx = VectorIndex::new();
        assert_eq!(idx.search(&[1.0], 3, 0.0).unwrap(), vec![]);
        idx.add(p("a", 0), &[1.0, 0.0]).unwrap();
        assert_eq!(
            idx.add(p("b", 0), &[1.0, 0.0, 0.0]),
            Err(IndexError::Dimensions { want: 2, got: 3 })
        );
        assert_eq!(idx.add(p("b", 0), &[0.0, 0.0]), Err(IndexError::Degenerate));
        assert!(idx.search(&[1.0, 0.0, 1.0], 3, 0.0).is_err());
        assert_eq!(
            idx.search(&[f32::NAN, 0.0], 3, 0.0),
            Err(IndexError::Degenerate)
        );
        assert_eq!(idx.len(), 1);
    }
}
