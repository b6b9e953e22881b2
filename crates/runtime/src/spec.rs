//! A configured model: where it lives, what kind it is and which task it serves, as inspected
//! from its files before anything is loaded.

use nlpd_engine::generate::find_gguf;
use nlpd_engine::HeadKind;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Tasks a model can be configured for.
pub const TASKS: &[&str] = &["embed", "classify", "entities", "generate", "nli", "rerank"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Encoder,
    Generator,
}

/// A configured model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub path: PathBuf,
    pub kind: ModelKind,
    pub task: String,
    pub architecture: String,
    /// Weight bytes (the weights file's size), used for the memory budget.
    pub bytes: u64,
    /// The weights file (its metadata makes the model's cache revision): a trained head's own
    /// weights for a head directory.
    pub weights: PathBuf,
    /// Embedding prompts (`config_sentence_transformers.json`), with the default one, which
    /// `nlpd serve --default-prompt` can set.
    pub prompts: nlpd_engine::prompts::Prompts,
}

impl ModelSpec {
    /// Inspects `path` (a model directory or a GGUF file) and infers kind and task; `task` forces it.
    pub fn inspect(
        name: &str,
        path: &Path,
        task: Option<&str>,
    ) -> std::result::Result<Self, String> {
        if let Some(t) = task {
            if !TASKS.contains(&t) {
                return Err(format!(
                    "unknown task `{t}` for model `{name}` (tasks: {})",
                    TASKS.join(", ")
                ));
            }
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        if path.is_dir() && path.join("config.json").is_file() {
            let dir = nlpd_engine::modeldir::EncoderDir::open(path).map_err(|e| e.to_string())?;
            let inferred = match dir.config.head {
                HeadKind::Base => "embed",
                HeadKind::SequenceClassification => {
                    let labels = &dir.config.id2label;
                    if labels.len() == 1 {
                        "rerank"
                    } else if nlpd_engine::generate::nli_label_positions(labels).is_ok() {
                        "nli"
                    } else {
                        "classify"
                    }
                }
                HeadKind::TokenClassification => "entities",
            };
            if task == Some("generate") {
                return Err(format!("model `{name}` is an encoder and cannot generate"));
            }
            return Ok(ModelSpec {
                name: name.to_string(),
                path: path.to_path_buf(),
                kind: ModelKind::Encoder,
                task: task.unwrap_or(inferred).to_string(),
                architecture: if dir.config.architecture.is_empty() {
                    dir.config.family.name().to_string()
                } else {
                    dir.config.architecture.clone()
                },
                bytes: dir.weight_bytes(),
                weights: dir.revision_file().to_path_buf(),
                prompts: dir.prompts.clone(),
            });
        }
        let gguf = find_gguf(path).map_err(|e| e.to_string())?;
        if let Some(t) = task {
            if !["generate", "nli"].contains(&t) {
                return Err(format!(
                    "model `{name}` is a generative model: task `{t}` is not possible"
                ));
            }
        }
        Ok(ModelSpec {
            name: name.to_string(),
            path: path.to_path_buf(),
            kind: ModelKind::Generator,
            task: task.unwrap_or("generate").to_string(),
            architecture: "gguf".to_string(),
            bytes: size(&gguf),
            weights: gguf,
            prompts: Default::default(),
        })
    }
}
