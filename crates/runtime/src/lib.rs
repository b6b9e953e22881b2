//! nlpd's orchestration layer. Today: resolving model names of the pack and building task
//! prompts; the registry, dynamic batcher, caches and store land with the server issues.

pub mod pack;
pub mod prompts;

pub use pack::{resolve_model, PackModel, PACK};
