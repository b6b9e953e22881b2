//! BERT-style encoders in candle: BERT, RoBERTa / XLM-RoBERTa (offset positions) and DistilBERT
//! (different tensor names, no token types). All are post-LayerNorm transformers.

use super::{encoder_prefix, Batch, EncoderBackend};
use crate::config::{Activation, EncoderConfig, Family};
use crate::error::{EngineError, Result};
use crate::profile::{self, Laps};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use std::path::Path;

pub(super) struct Layer {
    pub(super) q: Linear,
    pub(super) k: Linear,
    pub(super) v: Linear,
    pub(super) o: Linear,
    pub(super) attn_norm: LayerNorm,
    pub(super) up: Linear,
    pub(super) down: Linear,
    pub(super) out_norm: LayerNorm,
}

/// Tensor names of one layer, per family.
struct LayerNames {
    q: &'static str,
    k: &'static str,
    v: &'static str,
    o: &'static str,
    attn_norm: &'static str,
    up: &'static str,
    down: &'static str,
    out_norm: &'static str,
}

const BERT_NAMES: LayerNames = LayerNames {
    q: "attention.self.query",
    k: "attention.self.key",
    v: "attention.self.value",
    o: "attention.output.dense",
    attn_norm: "attention.output.LayerNorm",
    up: "intermediate.dense",
    down: "output.dense",
    out_norm: "output.LayerNorm",
};

const DISTIL_NAMES: LayerNames = LayerNames {
    q: "attention.q_lin",
    k: "attention.k_lin",
    v: "attention.v_lin",
    o: "attention.out_lin",
    attn_norm: "sa_layer_norm",
    up: "ffn.lin1",
    down: "ffn.lin2",
    out_norm: "output_layer_norm",
};

impl Layer {
    fn load(vb: VarBuilder, c: &EncoderConfig, n: &LayerNames) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let eps = c.layer_norm_eps;
        Ok(Layer {
            q: linear(h, h, vb.pp(n.q))?,
            k: linear(h, h, vb.pp(n.k))?,
            v: linear(h, h, vb.pp(n.v))?,
            o: linear(h, h, vb.pp(n.o))?,
            attn_norm: layer_norm(h, eps, vb.pp(n.attn_norm))?,
            up: linear(h, c.intermediate_size, vb.pp(n.up))?,
            down: linear(c.intermediate_size, h, vb.pp(n.down))?,
            out_norm: layer_norm(h, eps, vb.pp(n.out_norm))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mask_bias: &Tensor,
        heads: usize,
        act: Activation,
        laps: &mut Laps,
    ) -> candle_core::Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let d = h / heads;
        let split = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((b, t, heads, d))?.transpose(1, 2)?.contiguous()
        };
        let q = split(self.q.forward(x)?)?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
        let scores = scores.broadcast_add(mask_bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, h))?;
        let attn = self.attn_norm.forward(&(self.o.forward(&ctx)? + x)?)?;
        laps.lap(1);
        let ff = self.down.forward(&act.apply(&self.up.forward(&attn)?)?)?;
        let out = self.out_norm.forward(&(ff + attn)?);
        laps.lap(2);
        out
    }
}

/// BERT, RoBERTa, XLM-RoBERTa and DistilBERT encoders.
pub struct BertEncoder {
    pub(super) word: Embedding,
    pub(super) position: Embedding,
    pub(super) token_type: Option<Embedding>,
    pub(super) emb_norm: LayerNorm,
    pub(super) layers: Vec<Layer>,
    pub(super) heads: usize,
    pub(super) act: Activation,
    /// RoBERTa: positions start at `pad_token_id + 1`.
    pub(super) position_offset: u32,
    pub(super) device: Device,
}

impl BertEncoder {
    /// Loads the encoder from a VarBuilder over the checkpoint; returns it and the prefix it used.
    pub fn load(vb: &VarBuilder, c: &EncoderConfig, path: &Path) -> Result<(Self, String)> {
        let prefix = encoder_prefix(vb, "embeddings.word_embeddings.weight").ok_or_else(|| {
            EngineError::invalid_model(path, "no `embeddings.word_embeddings.weight` tensor")
        })?;
        let root = vb.pp(prefix.trim_end_matches('.'));
        let root = if prefix.is_empty() { vb.clone() } else { root };
        let h = c.hidden_size;
        let emb = root.pp("embeddings");
        let (layers_vb, names) = match c.family {
            Family::DistilBert => (root.pp("transformer.layer"), &DISTIL_NAMES),
            _ => (root.pp("encoder.layer"), &BERT_NAMES),
        };
        if c.sinusoidal_positions && !emb.contains_tensor("position_embeddings.weight") {
            return Err(EngineError::invalid_model(
                path,
                "sinusoidal position embeddings without stored weights are not supported",
            ));
        }
        let token_type = if c.family != Family::DistilBert && c.type_vocab_size > 0 {
            Some(embedding(
                c.type_vocab_size,
                h,
                emb.pp("token_type_embeddings"),
            )?)
        } else {
            None
        };
        let layers = (0..c.num_layers)
            .map(|i| Layer::load(layers_vb.pp(i), c, names))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let encoder = BertEncoder {
            word: embedding(c.vocab_size, h, emb.pp("word_embeddings"))?,
            position: embedding(c.max_position_embeddings, h, emb.pp("position_embeddings"))?,
            token_type,
            emb_norm: layer_norm(h, c.layer_norm_eps, emb.pp("LayerNorm"))?,
            layers,
            heads: c.num_heads,
            act: c.activation,
            position_offset: if c.family == Family::Roberta {
                c.pad_token_id as u32 + 1
            } else {
                0
            },
            device: vb.device().clone(),
        };
        Ok((encoder, prefix))
    }
}

impl EncoderBackend for BertEncoder {
    fn forward(&self, batch: &Batch) -> Result<Tensor> {
        let mut laps = Laps::new();
        let (_b, t) = batch.ids.dims2()?;
        let positions: Vec<u32> = (0..t as u32).map(|p| p + self.position_offset).collect();
        let positions = Tensor::from_vec(positions, (1, t), &self.device)?;
        let mut x = self
            .word
            .forward(&batch.ids)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        if let Some(tt) = &self.token_type {
            x = (x + tt.forward(&batch.type_ids)?)?;
        }
        let mut x = self.emb_norm.forward(&x)?;
        // Additive mask: 0 for real tokens, a large negative number for padding: [b, 1, 1, t].
        let mask_bias = ((batch.mask.ones_like()? - &batch.mask)? * -1e30f64)?
            .to_dtype(DType::F32)?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        laps.lap(0);
        for layer in &self.layers {
            x = layer.forward(&x, &mask_bias, self.heads, self.act, &mut laps)?;
        }
        if profile::enabled() {
            laps.times.record(None);
        }
        Ok(x)
    }

    fn name(&self) -> &'static str {
        "candle-bert"
    }
}
