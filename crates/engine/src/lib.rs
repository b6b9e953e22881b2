//! nlpd's compute engine: model directories, tokenization, encoder architectures, task heads and
//! GGUF generation. No async, no HTTP: the runtime and server crates build on this.

pub mod aggregate;
pub mod config;
pub mod encoder;
pub mod error;
mod files;
pub mod generate;
pub mod heads;
pub mod model;
pub mod modeldir;
pub mod pooled;
pub mod profile;
pub mod prompts;
pub mod tokenize;
pub mod train;

pub use aggregate::{Entity, TokenLabel};
pub use config::{EncoderConfig, Family, HeadKind};
/// Dot product of two f32 slices with independent vector accumulators (the fast encoder's kernel).
pub use encoder::fast::kernels::dot;
pub use encoder::Kernel;
pub use error::{EngineError, Result};
pub use model::{
    entities_of, l2_normalize, planned_kernel, Aggregation, BackendKind, Classification,
    EmbedOptions, EncoderModel, EncoderOp, EntityOutput, LoadOptions, OpOutput, Quantize,
    TokenPredictions,
};
pub use tokenize::{Encoded, TextInput, TextTokenizer};
