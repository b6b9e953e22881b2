//! nlpd's orchestration layer: the model registry (lazy load, warmup, memory budget), the dynamic
//! batcher of each encoder, the generation workers, statistics and metrics, model pack names and
//! task prompts, the two-level result cache, the prediction store (SQLite or PostgreSQL) and
//! cache warming from it, and the evidence corpus of the verification pipeline. No HTTP here:
//! the server crate maps all of it to routes.

pub mod cache;
pub mod config;
pub mod encoder_worker;
pub mod error;
pub mod evidence;
pub mod gen_worker;
pub mod metrics;
pub mod pack;
pub mod prompts;
pub mod registry;
pub mod shared_head;
pub mod spec;
pub mod stats;
pub mod store;
pub mod timing;

pub use cache::{Cache, CacheConfig};
pub use config::BatchConfig;
pub use encoder_worker::{EncoderHandle, Lane};
pub use error::{Result, RuntimeError};
pub use gen_worker::{GenEvent, GenInput, GeneratorHandle};
pub use pack::{resolve_model, PackModel, PACK};
pub use registry::{Loaded, ModelStatus, Registry};
pub use shared_head::SharedHead;
pub use spec::{ModelKind, ModelSpec};
pub use stats::Stats;
pub use store::{Store, StoreConfig};
pub use timing::RequestTiming;
