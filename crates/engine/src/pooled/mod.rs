//! Classification heads that sit on a separate encoder directory: the model directories
//! `nlpd train` writes (`config.json` with `model_type` `nlpd-pooled-classifier` and a reference
//! to the encoder, `model.safetensors` with the head only). The engine loads one as a sequence
//! classifier: the encoder's forward pass, the pooling the head was trained on, optional L2
//! normalization, the head, softmax over `id2label`.

mod config;
mod head;

pub use config::{pooling_name, HeadConfig, HeadType, ARCHITECTURE, MODEL_TYPE};
pub use head::{Dense, PooledHead};

use std::path::PathBuf;

/// Where a head directory's parts are, once its encoder reference is resolved.
#[derive(Debug, Clone)]
pub struct HeadDir {
    pub config: HeadConfig,
    /// The head's `model.safetensors`.
    pub weights: PathBuf,
    /// The encoder directory the head sits on.
    pub encoder: PathBuf,
}
