//! `config.json` of a classification head trained by `nlpd train`: which encoder it sits on, how
//! that encoder's token states were pooled, the head's shape and its labels.

use crate::error::{EngineError, Result};
use crate::heads::Pooling;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `model_type` of a head directory.
pub const MODEL_TYPE: &str = "nlpd-pooled-classifier";
/// `architectures[0]` of a head directory.
pub const ARCHITECTURE: &str = "NlpdPooledClassifier";

/// The layers of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadType {
    /// `classifier`: one linear layer, embedding → logits.
    Linear,
    /// `dense` + ReLU, then `classifier`.
    Mlp,
}

impl HeadType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "linear" => HeadType::Linear,
            "mlp" => HeadType::Mlp,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HeadType::Linear => "linear",
            HeadType::Mlp => "mlp",
        }
    }
}

/// The JSON of a head directory's `config.json` (Hugging Face style: `architectures`,
/// `model_type`, `id2label`, `label2id`, `num_labels`, plus nlpd's fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    pub architectures: Vec<String>,
    pub model_type: String,
    /// The encoder: a path relative to the head directory (or absolute).
    pub encoder: String,
    /// Pooling of the encoder's token states the head was trained on (`mean`, `cls`, ...).
    pub pooling: String,
    /// Whether the pooled vector is L2-normalized before the head.
    pub normalize: bool,
    pub head_type: HeadType,
    /// Width of the head's input: the encoder's hidden size.
    pub input_size: usize,
    /// Width of the MLP's hidden layer (MLP heads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_hidden_size: Option<usize>,
    pub num_labels: usize,
    pub id2label: BTreeMap<String, String>,
    pub label2id: BTreeMap<String, usize>,
}

impl HeadConfig {
    pub fn new(
        encoder: String,
        pooling: Pooling,
        normalize: bool,
        head_type: HeadType,
        input_size: usize,
        mlp_hidden_size: Option<usize>,
        labels: &[String],
    ) -> Self {
        HeadConfig {
            architectures: vec![ARCHITECTURE.to_string()],
            model_type: MODEL_TYPE.to_string(),
            encoder,
            pooling: pooling_name(pooling).to_string(),
            normalize,
            head_type,
            input_size,
            mlp_hidden_size: if head_type == HeadType::Mlp {
                mlp_hidden_size
            } else {
                None
            },
            num_labels: labels.len(),
            id2label: labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.clone()))
                .collect(),
            label2id: labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), i))
                .collect(),
        }
    }

    /// True when a parsed `config.json` describes a head directory.
    pub fn is_head(raw: &serde_json::Value) -> bool {
        raw.get("model_type").and_then(|v| v.as_str()) == Some(MODEL_TYPE)
    }

    /// Parses and checks a head's `config.json` (`path` names it in errors).
    pub fn from_value(raw: serde_json::Value, path: &Path) -> Result<Self> {
        let c: HeadConfig = serde_json::from_value(raw).map_err(|source| EngineError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |m: String| EngineError::invalid_model(path, m);
        if c.encoder.trim().is_empty() {
            return Err(bad(
                "`encoder` is empty: a head must name the encoder directory it sits on".into(),
            ));
        }
        if c.pooling_mode().is_none() {
            return Err(bad(format!(
                "unknown pooling `{}` (expected mean, cls, last or max)",
                c.pooling
            )));
        }
        if c.input_size == 0 {
            return Err(bad("`input_size` must be positive".into()));
        }
        if c.head_type == HeadType::Mlp && c.mlp_hidden_size.unwrap_or(0) == 0 {
            return Err(bad("an mlp head needs a positive `mlp_hidden_size`".into()));
        }
        let labels = c.labels();
        if labels.len() < 2 || labels.len() != c.num_labels {
            return Err(bad(format!(
                "`id2label` must hold `num_labels` ({}) labels numbered 0..n, at least 2",
                c.num_labels
            )));
        }
        Ok(c)
    }

    /// Labels by id; empty when `id2label` is not exactly `0..n`.
    pub fn labels(&self) -> Vec<String> {
        (0..self.id2label.len())
            .map(|i| self.id2label.get(&i.to_string()).cloned())
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    }

    /// The pooling the head was trained on (checked by [`HeadConfig::from_value`]).
    pub fn pooling_mode(&self) -> Option<Pooling> {
        Pooling::parse(&self.pooling)
    }

    /// The encoder directory, resolved against the head directory `root`.
    pub fn encoder_path(&self, root: &Path) -> PathBuf {
        let p = Path::new(&self.encoder);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        }
    }
}

/// The name `Pooling::parse` reads back.
pub fn pooling_name(p: Pooling) -> &'static str {
    match p {
        Pooling::Mean => "mean",
        Pooling::Cls => "cls",
        Pooling::LastToken => "last",
        Pooling::Max => "max",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["negative", "neutral", "positive"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn round_trips_through_json() -> Result<()> {
        let c = HeadConfig::new(
            "../enc".into(),
            Pooling::Mean,
            true,
            HeadType::Linear,
            384,
            Some(64),
            &labels(),
        );
        assert_eq!(c.mlp_hidden_size, None);
        let v = serde_json::to_value(&c).map_err(|e| EngineError::InvalidInput(e.to_string()))?;
        assert!(HeadConfig::is_head(&v));
        assert_eq!(v["label2id"]["positive"], 2);
        assert_eq!(v["id2label"]["0"], "negative");
        let back = HeadConfig::from_value(v, Path::new("config.json"))?;
        assert_eq!(back, c);
        assert_eq!(back.labels(), labels());
        assert_eq!(
            back.encoder_path(Path::new("/m/head")),
            Path::new("/m/head/../enc")
        );
        Ok(())
    }

    #[test]
    fn bad_configs_are_named() {
        let base = HeadConfig::new(
            "enc".into(),
            Pooling::Mean,
            true,
            HeadType::Mlp,
            8,
            Some(4),
            &labels(),
        );
        let check = |f: &dyn Fn(&mut serde_json::Value), want: &str| {
            let mut v = serde_json::to_value(&base).unwrap_or_default();
            f(&mut v);
            let err = HeadConfig::from_value(v, Path::new("h/config.json"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{err} lacks {want}");
        };
        check(&|v| v["encoder"] = "".into(), "`encoder` is empty");
        check(&|v| v["pooling"] = "sum".into(), "unknown pooling `sum`");
        check(&|v| v["mlp_hidden_size"] = 0.into(), "mlp_hidden_size");
        check(&|v| v["num_labels"] = 4.into(), "num_labels");
        check(
            &|v| {
                v["id2label"] = serde_json::json!({"0": "a", "2": "b"});
                v["num_labels"] = 2.into();
            },
            "num_labels",
        );
        check(
            &|v| {
                v.as_object_mut().map(|o| o.remove("encoder"));
            },
            "missing field `encoder`",
        );
    }
}
