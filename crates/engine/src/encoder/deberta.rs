//! DeBERTa-v2 / v3 (disentangled relative-position attention) through candle-transformers' port.
//! It stays on this generic path; the padding-free fast path covers the BERT family.

use super::{encoder_prefix, Batch, EncoderBackend};
use crate::config::EncoderConfig;
use crate::error::{EngineError, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use candle_transformers::models::debertav2::{Config as DebertaConfig, DebertaV2Model};
use serde_json::Value;
use std::path::Path;

pub struct DebertaEncoder {
    model: DebertaV2Model,
}

impl DebertaEncoder {
    pub fn load(vb: &VarBuilder, c: &EncoderConfig, path: &Path) -> Result<(Self, String)> {
        let prefix = encoder_prefix(vb, "embeddings.word_embeddings.weight").ok_or_else(|| {
            EngineError::invalid_model(path, "no `embeddings.word_embeddings.weight` tensor")
        })?;
        // candle's config struct requires a few fields HF configs may omit: fill HF's defaults.
        let mut raw = c.raw.clone();
        if let Some(obj) = raw.as_object_mut() {
            let defaults = [
                ("hidden_dropout_prob", Value::from(0.1)),
                ("attention_probs_dropout_prob", Value::from(0.1)),
                ("initializer_range", Value::from(0.02)),
                ("layer_norm_eps", Value::from(1e-7)),
                ("relative_attention", Value::from(false)),
                ("max_relative_positions", Value::from(-1)),
                ("position_biased_input", Value::from(true)),
                ("pos_att_type", Value::Array(vec![])),
                ("type_vocab_size", Value::from(0)),
                ("hidden_act", Value::from("gelu")),
            ];
            for (k, v) in defaults {
                let missing = obj.get(k).is_none_or(Value::is_null);
                if missing {
                    obj.insert(k.to_string(), v);
                }
            }
        }
        let cfg: DebertaConfig = serde_json::from_value(raw)
            .map_err(|e| EngineError::invalid_model(path, format!("DeBERTa config: {e}")))?;
        if cfg.conv_kernel_size.unwrap_or(0) > 0 {
            return Err(EngineError::invalid_model(
                path,
                "DeBERTa-v2 with a convolution layer (conv_kernel_size) is not supported",
            ));
        }
        let root = if prefix.is_empty() {
            vb.clone()
        } else {
            vb.pp(prefix.trim_end_matches('.'))
        };
        let model = DebertaV2Model::load(root, &cfg)?;
        Ok((DebertaEncoder { model }, prefix))
    }
}

impl EncoderBackend for DebertaEncoder {
    fn forward(&self, batch: &Batch) -> Result<Tensor> {
        Ok(self.model.forward(
            &batch.ids,
            Some(batch.type_ids.clone()),
            Some(batch.mask.clone()),
        )?)
    }

    fn name(&self) -> &'static str {
        "candle-deberta-v2"
    }
}
