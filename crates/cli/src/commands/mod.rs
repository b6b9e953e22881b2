pub mod classify;
pub mod embed;
pub mod entities;
pub mod explain;
pub mod models;
pub mod serve;

use anyhow::{Context, Result};
use nlpd_engine::EncoderModel;
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

pub fn load_encoder(path: &Path) -> Result<EncoderModel> {
    EncoderModel::load(path).with_context(|| format!("cannot load model {}", path.display()))
}

/// Lines processed per engine call. The engine sorts each chunk by length before batching, so a
/// large chunk means little padding on mixed-length input; output still streams chunk by chunk.
pub const CHUNK_LINES: usize = 1024;
