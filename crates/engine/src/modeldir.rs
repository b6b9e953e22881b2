//! A model directory in Hugging Face / sentence-transformers layout, read from a local path.

use crate::config::EncoderConfig;
use crate::error::{EngineError, Result};
use crate::files::read_json_opt;
use crate::heads::Pooling;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct StModule {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize, Default)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct TokenizerConfig {
    model_max_length: Option<f64>,
}

/// Everything nlpd reads from an encoder's directory, before loading weights.
#[derive(Debug, Clone)]
pub struct EncoderDir {
    pub root: PathBuf,
    pub config: EncoderConfig,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
    /// Pooling from `1_Pooling/config.json` (mean when absent).
    pub pooling: Pooling,
    /// A trailing sentence-transformers `Normalize` module: outputs are always unit length.
    pub normalized: bool,
    /// Token limit: `sentence_bert_config.json` wins, else the tokenizer's and the positions'.
    pub max_len: usize,
}

impl EncoderDir {
    pub fn open(root: &Path) -> Result<Self> {
        if !root.exists() {
            return Err(EngineError::ModelNotFound {
                path: root.to_path_buf(),
            });
        }
        if !root.is_dir() {
            return Err(EngineError::invalid_model(
                root,
                "an encoder model must be a directory",
            ));
        }
        let config_path = root.join("config.json");
        if !config_path.is_file() {
            return Err(EngineError::invalid_model(
                root,
                "config.json is missing (not a Hugging Face model directory?)",
            ));
        }
        let config = EncoderConfig::from_file(&config_path)?;
        let weights = root.join("model.safetensors");
        if !weights.is_file() {
            return Err(EngineError::invalid_model(
                root,
                "model.safetensors is missing (only safetensors weights are supported)",
            ));
        }

        let modules: Vec<StModule> = read_json_opt(&root.join("modules.json"))?.unwrap_or_default();
        let normalized = modules
            .last()
            .is_some_and(|m| m.kind.ends_with("models.Normalize"));
        let pooling_dir = modules
            .iter()
            .find(|m| m.kind.ends_with("models.Pooling"))
            .map(|m| root.join(&m.path))
            .unwrap_or_else(|| root.join("1_Pooling"));
        let pooling = match read_json_opt::<PoolingConfig>(&pooling_dir.join("config.json"))? {
            Some(p) if p.pooling_mode_cls_token => Pooling::Cls,
            Some(p) if p.pooling_mode_lasttoken => Pooling::LastToken,
            Some(p) if p.pooling_mode_max_tokens && !p.pooling_mode_mean_tokens => Pooling::Max,
            _ => Pooling::Mean,
        };

        let mut max_len = config.max_positions();
        let st: Option<SentenceBertConfig> =
            read_json_opt(&root.join("sentence_bert_config.json"))?;
        if let Some(limit) = st.and_then(|s| s.max_seq_length) {
            max_len = max_len.min(limit);
        } else if let Some(tc) =
            read_json_opt::<TokenizerConfig>(&root.join("tokenizer_config.json"))?
        {
            if let Some(m) = tc.model_max_length.filter(|m| *m >= 1.0 && *m < 1e9) {
                max_len = max_len.min(m as usize);
            }
        }
        if max_len < 2 {
            return Err(EngineError::invalid_model(
                root,
                format!("token limit {max_len} is too small"),
            ));
        }
        Ok(EncoderDir {
            root: root.to_path_buf(),
            config,
            weights,
            tokenizer: root.join("tokenizer.json"),
            pooling,
            normalized,
            max_len,
        })
    }
}
