//! A model directory in Hugging Face / sentence-transformers layout, read from a local path.

use crate::config::{EncoderConfig, HeadKind};
use crate::error::{EngineError, Result};
use crate::files::{read_json, read_json_opt};
use crate::heads::Pooling;
use crate::pooled::{HeadConfig, HeadDir, ARCHITECTURE};
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
    /// Prompts from `config_sentence_transformers.json` (none when absent).
    pub prompts: crate::prompts::Prompts,
    /// A head directory written by `nlpd train`: the head's config and weights, and the encoder
    /// directory it sits on (`config`, `weights`, `tokenizer` above are that encoder's, with the
    /// head's labels and pooling).
    pub head: Option<HeadDir>,
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
        let raw: serde_json::Value = read_json(&config_path)?;
        if HeadConfig::is_head(&raw) {
            return Self::open_head(root, raw, &config_path);
        }
        let config = EncoderConfig::from_value(raw, &config_path)?;
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
            prompts: crate::prompts::Prompts::read(root)?,
            head: None,
        })
    }

    /// A head directory: the referenced encoder's directory with the head's labels and pooling.
    fn open_head(root: &Path, raw: serde_json::Value, config_path: &Path) -> Result<Self> {
        let hc = HeadConfig::from_value(raw, config_path)?;
        let encoder = hc.encoder_path(root);
        if !encoder.is_dir() {
            return Err(EngineError::invalid_model(
                root,
                format!(
                    "config.json names the encoder `{}`, but {} is not a directory \
                     (install that encoder, e.g. `make models`, or correct `encoder`)",
                    hc.encoder,
                    encoder.display()
                ),
            ));
        }
        let mut dir = EncoderDir::open(&encoder).map_err(|e| {
            EngineError::invalid_model(root, format!("encoder `{}`: {e}", hc.encoder))
        })?;
        if dir.head.is_some() {
            return Err(EngineError::invalid_model(
                root,
                format!(
                    "encoder `{}` is itself a trained head, not an encoder",
                    hc.encoder
                ),
            ));
        }
        if dir.config.hidden_size != hc.input_size {
            return Err(EngineError::invalid_model(
                root,
                format!(
                    "dimension mismatch: the head takes {}-d embeddings but encoder `{}` has \
                     hidden size {}",
                    hc.input_size, hc.encoder, dir.config.hidden_size
                ),
            ));
        }
        let weights = root.join("model.safetensors");
        if !weights.is_file() {
            return Err(EngineError::invalid_model(
                root,
                "model.safetensors (the head's weights) is missing",
            ));
        }
        dir.config.head = HeadKind::SequenceClassification;
        dir.config.id2label = hc.labels();
        dir.config.architecture = ARCHITECTURE.to_string();
        dir.config.multi_label = false;
        dir.pooling = hc.pooling_mode().unwrap_or(dir.pooling);
        dir.root = root.to_path_buf();
        dir.head = Some(HeadDir {
            config: hc,
            weights,
            encoder,
        });
        Ok(dir)
    }

    /// The file whose identity decides a model's results for caching: the head's weights for a
    /// trained head (the encoder it names stays fixed), else the encoder's.
    pub fn revision_file(&self) -> &Path {
        self.head.as_ref().map_or(&self.weights, |h| &h.weights)
    }

    /// Bytes of weights a loaded model holds (encoder and head).
    pub fn weight_bytes(&self) -> u64 {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        size(&self.weights) + self.head.as_ref().map_or(0, |h| size(&h.weights))
    }
}
