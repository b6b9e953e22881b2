//! A trained head that runs on another model's embeddings, so one encoder pass serves both.
//!
//! `nlpd train` writes heads that sit on a named encoder: mean (or CLS, max) pooling, L2
//! normalization, then a small linear or MLP head. When the embedding model a request also asks
//! for *is* that encoder, with the same pooling, its unit-length embedding is exactly the vector
//! the head reads, so `/v1/analyze` computes the embedding once and applies the head to it
//! (microseconds) instead of running the encoder a second time inside the classifier's model.

use crate::spec::{ModelKind, ModelSpec};
use nlpd_engine::heads::softmax;
use nlpd_engine::modeldir::EncoderDir;
use nlpd_engine::pooled::PooledHead;
use std::path::Path;

/// A classifier's head, checked to be applicable to an embedding model's outputs.
#[derive(Debug)]
pub struct SharedHead {
    pub head: PooledHead,
    /// The classifier's labels, in output order.
    pub labels: Vec<String>,
}

impl SharedHead {
    /// Class probabilities for one embedding of the embedding model (normalized, full length):
    /// the same arithmetic as the classifier's own forward pass after its encoder.
    pub fn scores(&self, embedding: &[f32]) -> Vec<f32> {
        softmax(&self.head.logits(embedding))
    }

    /// `Some` when `classifier` is a trained head whose encoder is `embedder`'s directory, with
    /// the same pooling, and that L2-normalizes before the head (as the embedding output is);
    /// `None` otherwise (or when a directory cannot be read: the normal path then reports it).
    pub fn probe(classifier: &ModelSpec, embedder: &ModelSpec) -> Option<SharedHead> {
        if classifier.kind != ModelKind::Encoder || embedder.kind != ModelKind::Encoder {
            return None;
        }
        let cdir = EncoderDir::open(&classifier.path).ok()?;
        let hd = cdir.head.as_ref()?;
        if !hd.config.normalize {
            return None;
        }
        let edir = EncoderDir::open(&embedder.path).ok()?;
        if edir.head.is_some()
            || !same_dir(&hd.encoder, &edir.root)
            || edir.pooling != cdir.pooling
            || edir.max_len != cdir.max_len
        {
            return None;
        }
        let head = PooledHead::load(&hd.weights, &hd.config).ok()?;
        (head.input_size() == edir.config.hidden_size).then(|| SharedHead {
            head,
            labels: cdir.config.id2label.clone(),
        })
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
