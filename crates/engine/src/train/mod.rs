//! Training classification heads on a frozen encoder (`nlpd train`): labelled JSONL in, a head
//! directory out that the engine loads as a sequence classifier (see [`crate::pooled`]).
//!
//! The steps, each in its own module: [`data`] reads the examples (errors name file and line),
//! [`embed`] embeds them with the encoder's pooling, [`split`] holds out a stratified validation
//! set, [`fit`] trains a linear or MLP head in f64 with AdamW, class weights and early stopping,
//! [`eval`] and [`metrics`] score it with the f32 forward pass the server runs, and
//! [`crossval`] holds out one source at a time to measure how the options fare on text from
//! elsewhere.
//!
//! Reproducibility: the generator ([`rng`]) is a fixed algorithm, the split and the shuffles are
//! seeded, and every sum of the training runs in a fixed order on one thread, so the same
//! embeddings and seed give the same head bit for bit.

pub mod crossval;
pub mod data;
pub mod embed;
mod error;
pub mod eval;
pub mod fit;
pub mod metrics;
mod net;
pub mod rng;
pub mod split;

pub use crossval::{
    hold_one_source_out, source_ids, summarize, CrossDomainReport, Fold, FoldReport,
};
pub use data::{read_eval, read_training, Examples, Fields};
pub use embed::{check_encoder, embed_texts, EMBED_CHUNK};
pub use error::{Result, TrainError};
pub use eval::{evaluate, Embedded, Evaluation, MetricsReport, PresentLabels};
pub use fit::{fit, fit_with_sources, source_weights, EpochLog, FitOptions, Fitted};
pub use metrics::Confusion;
pub use split::{stratified, Split};
