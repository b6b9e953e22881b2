pub mod bench;
pub mod classify;
pub mod embed;
pub mod entities;
pub mod explain;
pub mod models;
pub mod profile;
pub mod serve;
pub mod train;
pub mod tune;
pub mod verify;

use anyhow::{Context, Result};
use nlpd_engine::{BackendKind, EncoderModel, LoadOptions, Quantize};
use std::path::{Path, PathBuf};

/// Resolves `--model` (a path or a pack name; the task's pack default when absent).
pub fn model_path(model: Option<&str>, task: &str, models_dir: &Path) -> Result<PathBuf> {
    let name = match model {
        Some(m) => m.to_string(),
        None => nlpd_runtime::pack::default_for(task)
            .map(|m| m.dir.to_string())
            .with_context(|| format!("`nlpd {task}` has no default model: pass --model DIR"))?,
    };
    Ok(nlpd_runtime::resolve_model(&name, models_dir)?)
}

/// How encoders run: implementation and precision (shared by `serve` and the one-shot commands).
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Encoder implementation: `auto` (the fast CPU encoder for BERT, RoBERTa and DistilBERT,
    /// candle for DeBERTa and GPUs), `fast` (refuse models it cannot run) or `candle` (the
    /// reference graph, for comparison).
    #[arg(
        long,
        env = "NLPD_BACKEND",
        default_value = "auto",
        value_enum,
        ignore_case = true
    )]
    pub backend: BackendKind,
    /// Encoder precision: `none` (f32), `int8` (int8 weights per channel and activations per
    /// token, AMX-INT8 tiles or AVX-512 VNNI where the CPU has them; about 2x faster, cosine >=
    /// 0.99 to f32) or `bf16` (bf16 weights and GEMM inputs, f32 sums, LayerNorm/softmax/GELU/
    /// attention in f32; cosine >= 0.999 to f32; AMX-BF16 tiles or AVX512-BF16 where the CPU has
    /// them, else AVX2+FMA widening bf16 to f32, which is correct but no faster than f32). int8 and bf16 run on the fast encoder only;
    /// `nlpd models info` shows the kernel this CPU would run.
    #[arg(
        long,
        env = "NLPD_QUANTIZE",
        default_value = "none",
        value_enum,
        ignore_case = true
    )]
    pub quantize: Quantize,
}

impl EngineArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            backend: self.backend,
            quantize: self.quantize,
        }
    }
}

pub fn load_encoder(path: &Path, engine: &EngineArgs) -> Result<EncoderModel> {
    EncoderModel::load_opts(path, &engine.load_options())
        .with_context(|| format!("cannot load model {}", path.display()))
}

/// Lines processed per engine call. The engine sorts each chunk by length before batching, so a
/// large chunk means little padding on mixed-length input; output still streams chunk by chunk.
pub const CHUNK_LINES: usize = 1024;
