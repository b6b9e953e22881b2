//! `config.json` of a Hugging Face encoder: which family, which head, and the sizes the layers need.

use crate::error::{EngineError, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The encoder families nlpd implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Bert,
    /// RoBERTa and XLM-RoBERTa (and CamemBERT): BERT layers, positions offset by `pad_token_id + 1`.
    Roberta,
    DistilBert,
    DebertaV2,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::DistilBert => "distilbert",
            Family::DebertaV2 => "deberta-v2",
        }
    }
}

pub(crate) const SUPPORTED_ENCODERS: &str =
    "bert, roberta, xlm-roberta, camembert, distilbert, deberta-v2 (incl. v3)";

/// What sits on top of the encoder, from `architectures` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// A bare encoder (`*Model`, `*ForMaskedLM`, sentence-transformers): pooled embeddings.
    Base,
    SequenceClassification,
    TokenClassification,
}

/// Activation functions named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
    Silu,
    Tanh,
}

impl Activation {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" | "gelu_python" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "tanh" => Activation::Tanh,
            _ => return None,
        })
    }

    pub(crate) fn apply(self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        match self {
            Activation::GeluErf => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// The parsed configuration. `raw` keeps the whole JSON for family-specific readers (DeBERTa).
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    pub family: Family,
    pub head: HeadKind,
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: usize,
    /// Label names by id (empty for a base encoder).
    pub id2label: Vec<String>,
    /// `problem_type == multi_label_classification`: sigmoid instead of softmax.
    pub multi_label: bool,
    /// DistilBERT with sinusoidal (fixed) position embeddings.
    pub sinusoidal_positions: bool,
    pub raw: Value,
}

impl EncoderConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let raw: Value = crate::files::read_json(path)?;
        Self::from_value(raw, path)
    }

    pub fn from_value(raw: Value, path: &Path) -> Result<Self> {
        let model_type = raw
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let architecture = raw
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let family = match model_type.as_str() {
            "bert" => Family::Bert,
            "roberta" | "xlm-roberta" | "camembert" => Family::Roberta,
            "distilbert" => Family::DistilBert,
            "deberta-v2" => Family::DebertaV2,
            other => {
                return Err(EngineError::UnsupportedArchitecture {
                    path: path.to_path_buf(),
                    architecture: if other.is_empty() {
                        format!("(no model_type; architectures: {architecture})")
                    } else {
                        other.to_string()
                    },
                    supported: SUPPORTED_ENCODERS,
                })
            }
        };
        let head = if architecture.ends_with("ForSequenceClassification") {
            HeadKind::SequenceClassification
        } else if architecture.ends_with("ForTokenClassification") {
            HeadKind::TokenClassification
        } else if architecture.is_empty()
            || architecture.ends_with("Model")
            || architecture.ends_with("ForMaskedLM")
            || architecture.ends_with("ForPreTraining")
        {
            HeadKind::Base
        } else {
            return Err(EngineError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                architecture,
                supported: "*Model, *ForSequenceClassification, *ForTokenClassification",
            });
        };

        let get = |keys: &[&str]| -> Option<u64> {
            keys.iter()
                .find_map(|k| raw.get(*k).and_then(Value::as_u64))
        };
        let need = |keys: &[&str]| -> Result<usize> {
            get(keys).map(|v| v as usize).ok_or_else(|| {
                EngineError::invalid_model(path, format!("config.json lacks `{}`", keys[0]))
            })
        };
        let distil = family == Family::DistilBert;
        let hidden_size = need(if distil { &["dim"] } else { &["hidden_size"] })?;
        let num_layers = need(if distil {
            &["n_layers"]
        } else {
            &["num_hidden_layers"]
        })?;
        let num_heads = need(if distil {
            &["n_heads"]
        } else {
            &["num_attention_heads"]
        })?;
        let intermediate_size = need(if distil {
            &["hidden_dim"]
        } else {
            &["intermediate_size"]
        })?;
        if num_heads == 0 || hidden_size % num_heads != 0 {
            return Err(EngineError::invalid_model(
                path,
                format!("hidden size {hidden_size} is not divisible by {num_heads} heads"),
            ));
        }
        let act_name = raw
            .get(if distil { "activation" } else { "hidden_act" })
            .and_then(Value::as_str)
            .unwrap_or("gelu");
        let activation = Activation::parse(act_name).ok_or_else(|| {
            EngineError::invalid_model(path, format!("unsupported activation `{act_name}`"))
        })?;

        let id2label = parse_id2label(&raw, path)?;
        if head != HeadKind::Base && id2label.is_empty() {
            let n = get(&["num_labels"]).unwrap_or(0) as usize;
            if n == 0 {
                return Err(EngineError::invalid_model(
                    path,
                    "a classification model needs `id2label` (or `num_labels`)",
                ));
            }
        }
        let id2label = if id2label.is_empty() && head != HeadKind::Base {
            let n = get(&["num_labels"]).unwrap_or(0) as usize;
            (0..n).map(|i| format!("LABEL_{i}")).collect()
        } else {
            id2label
        };

        Ok(EncoderConfig {
            family,
            head,
            architecture,
            vocab_size: need(&["vocab_size"])?,
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            activation,
            max_position_embeddings: need(&["max_position_embeddings"])?,
            type_vocab_size: get(&["type_vocab_size"]).unwrap_or(if distil { 0 } else { 2 })
                as usize,
            layer_norm_eps: raw.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(
                if family == Family::DebertaV2 {
                    1e-7
                } else {
                    1e-12
                },
            ),
            pad_token_id: get(&["pad_token_id"]).unwrap_or(0) as usize,
            multi_label: raw.get("problem_type").and_then(Value::as_str)
                == Some("multi_label_classification"),
            sinusoidal_positions: raw
                .get("sinusoidal_pos_embds")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            id2label,
            raw,
        })
    }

    /// Number of usable positions: RoBERTa reserves `pad_token_id + 1` slots before the first token.
    pub fn max_positions(&self) -> usize {
        match self.family {
            Family::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id + 1),
            _ => self.max_position_embeddings,
        }
    }
}

fn parse_id2label(raw: &Value, path: &Path) -> Result<Vec<String>> {
    let Some(map) = raw.get("id2label").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut by_id = BTreeMap::new();
    for (k, v) in map {
        let id: usize = k.parse().map_err(|_| {
            EngineError::invalid_model(path, format!("id2label key `{k}` is not a number"))
        })?;
        let label = v.as_str().ok_or_else(|| {
            EngineError::invalid_model(path, format!("id2label[{k}] is not a string"))
        })?;
        by_id.insert(id, label.to_string());
    }
    let labels: Vec<String> = by_id.values().cloned().collect();
    if by_id.keys().enumerate().any(|(i, k)| i != *k) {
        return Err(EngineError::invalid_model(
            path,
            "id2label ids must be 0..n without gaps",
        ));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<EncoderConfig> {
        EncoderConfig::from_value(v, Path::new("config.json"))
    }

    #[test]
    fn unsupported_architecture_is_named() {
        let err = parse(json!({"model_type": "gpt2"})).unwrap_err();
        assert!(
            err.to_string().contains("unsupported architecture `gpt2`"),
            "{err}"
        );
    }

    #[test]
    fn roberta_positions_are_offset() {
        let c = parse(
            json!({"model_type": "xlm-roberta", "architectures": ["XLMRobertaModel"],
            "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "max_position_embeddings": 514, "pad_token_id": 1}),
        )
        .unwrap();
        assert_eq!(c.family, Family::Roberta);
        assert_eq!(c.head, HeadKind::Base);
        assert_eq!(c.max_positions(), 512);
    }

    #[test]
    fn id2label_is_ordered_by_id() {
        let c = parse(
            json!({"model_type": "bert", "architectures": ["BertForTokenClassification"],
            "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "max_position_embeddings": 32,
            "id2label": {"1": "B-PER", "0": "O", "2": "I-PER"}}),
        )
        .unwrap();
        assert_eq!(c.head, HeadKind::TokenClassification);
        assert_eq!(c.id2label, vec!["O", "B-PER", "I-PER"]);
    }

    #[test]
    fn missing_sizes_are_reported() {
        let err = parse(json!({"model_type": "bert"})).unwrap_err();
        assert!(err.to_string().contains("lacks `hidden_size`"), "{err}");
    }
}
