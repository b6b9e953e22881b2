//! Task heads over the encoder's hidden states: pooling for embeddings, sequence classification
//! (per family: BERT pooler, RoBERTa dense+out_proj, DistilBERT pre_classifier, DeBERTa context
//! pooler) and token classification.

use crate::config::{Activation, EncoderConfig, Family};
use crate::error::{EngineError, Result};
use candle_core::{Module, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};
use std::path::Path;

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
    LastToken,
    Max,
}

impl Pooling {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            "last" | "lasttoken" | "last_token" => Pooling::LastToken,
            "max" => Pooling::Max,
            _ => return None,
        })
    }

    /// `hidden`: `[b, t, h]`, `mask`: `[b, t]` (1 = token), `lengths`: real lengths → `[b, h]`.
    pub fn apply(self, hidden: &Tensor, mask: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        Ok(match self {
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = mask.sum_keepdim(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::LastToken => {
                let rows = lengths
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| hidden.get(i)?.get(l.saturating_sub(1)))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::stack(&rows, 0)?
            }
            Pooling::Max => {
                let m = mask.unsqueeze(2)?;
                let neg = ((m.ones_like()? - &m)? * -1e30f64)?;
                hidden.broadcast_add(&neg)?.max(1)?
            }
        })
    }
}

impl Pooling {
    /// The same pooling over padding-free hidden states: the `lengths[i]` rows of sequence `i`
    /// back to back in `flat` (`[Σ lengths, hidden]`), one vector per sequence; an empty sequence
    /// pools to zeros. Used by backends that return hidden states without padding.
    pub fn apply_flat(self, flat: &[f32], lengths: &[usize], hidden: usize) -> Vec<Vec<f32>> {
        let mut start = 0;
        lengths
            .iter()
            .map(|&len| {
                let rows = &flat[start * hidden..(start + len) * hidden];
                start += len;
                if len == 0 {
                    return vec![0.0; hidden];
                }
                let mut rows_iter = rows.chunks_exact(hidden);
                match self {
                    Pooling::Cls => rows[..hidden].to_vec(),
                    Pooling::LastToken => rows[(len - 1) * hidden..].to_vec(),
                    Pooling::Mean => {
                        let mut v = vec![0f32; hidden];
                        for r in rows_iter {
                            for (a, x) in v.iter_mut().zip(r) {
                                *a += x;
                            }
                        }
                        v.iter_mut().for_each(|a| *a /= len as f32);
                        v
                    }
                    Pooling::Max => {
                        let mut v = rows_iter.next().map(<[f32]>::to_vec).unwrap_or_default();
                        for r in rows_iter {
                            for (a, &x) in v.iter_mut().zip(r) {
                                *a = if x > *a { x } else { *a };
                            }
                        }
                        v
                    }
                }
            })
            .collect()
    }
}

/// L2-normalizes rows of `[b, h]`.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}

/// Sequence classification heads, exactly as each family's `*ForSequenceClassification`.
pub enum SequenceHead {
    /// BERT: tanh pooler on [CLS], then the classifier.
    Bert { pooler: Linear, classifier: Linear },
    /// RoBERTa / XLM-R: `classifier.dense` + tanh, then `classifier.out_proj`, on `<s>`.
    Roberta { dense: Linear, out_proj: Linear },
    /// DistilBERT: `pre_classifier` + ReLU, then the classifier.
    Distil { pre: Linear, classifier: Linear },
    /// DeBERTa-v2: `pooler.dense` + its activation, then the classifier.
    Deberta {
        pooler: Linear,
        act: Activation,
        classifier: Linear,
    },
}

impl SequenceHead {
    pub fn load(vb: &VarBuilder, c: &EncoderConfig, path: &Path) -> Result<Self> {
        let h = c.hidden_size;
        let n = c.id2label.len();
        let bad = |e: candle_core::Error| {
            EngineError::invalid_model(path, format!("sequence classification head: {e}"))
        };
        Ok(match c.family {
            Family::Bert => {
                let pooler_vb = if vb.contains_tensor("bert.pooler.dense.weight") {
                    vb.pp("bert.pooler.dense")
                } else {
                    vb.pp("pooler.dense")
                };
                SequenceHead::Bert {
                    pooler: linear(h, h, pooler_vb).map_err(bad)?,
                    classifier: linear(h, n, vb.pp("classifier")).map_err(bad)?,
                }
            }
            Family::Roberta => SequenceHead::Roberta {
                dense: linear(h, h, vb.pp("classifier.dense")).map_err(bad)?,
                out_proj: linear(h, n, vb.pp("classifier.out_proj")).map_err(bad)?,
            },
            Family::DistilBert => SequenceHead::Distil {
                pre: linear(h, h, vb.pp("pre_classifier")).map_err(bad)?,
                classifier: linear(h, n, vb.pp("classifier")).map_err(bad)?,
            },
            Family::DebertaV2 => {
                let ph = c
                    .raw
                    .get("pooler_hidden_size")
                    .and_then(|v| v.as_u64())
                    .map(|v| v as usize)
                    .unwrap_or(h);
                let act_name = c
                    .raw
                    .get("pooler_hidden_act")
                    .and_then(|v| v.as_str())
                    .unwrap_or("gelu");
                SequenceHead::Deberta {
                    pooler: linear(h, ph, vb.pp("pooler.dense")).map_err(bad)?,
                    act: Activation::parse(act_name).ok_or_else(|| {
                        EngineError::invalid_model(
                            path,
                            format!("unsupported pooler activation `{act_name}`"),
                        )
                    })?,
                    classifier: linear(ph, n, vb.pp("classifier")).map_err(bad)?,
                }
            }
        })
    }

    /// `hidden`: `[b, t, h]` → logits `[b, labels]`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(match self {
            SequenceHead::Bert { pooler, classifier } => {
                classifier.forward(&pooler.forward(&first)?.tanh()?)?
            }
            SequenceHead::Roberta { dense, out_proj } => {
                out_proj.forward(&dense.forward(&first)?.tanh()?)?
            }
            SequenceHead::Distil { pre, classifier } => {
                classifier.forward(&pre.forward(&first)?.relu()?)?
            }
            SequenceHead::Deberta {
                pooler,
                act,
                classifier,
            } => classifier.forward(&act.apply(&pooler.forward(&first)?)?)?,
        })
    }
}

/// Token classification: one linear layer over every token state.
pub struct TokenHead {
    classifier: Linear,
}

impl TokenHead {
    pub fn load(vb: &VarBuilder, c: &EncoderConfig, path: &Path) -> Result<Self> {
        let classifier =
            linear(c.hidden_size, c.id2label.len(), vb.pp("classifier")).map_err(|e| {
                EngineError::invalid_model(path, format!("token classification head: {e}"))
            })?;
        Ok(TokenHead { classifier })
    }

    /// `[b, t, h]` → logits `[b, t, labels]`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.classifier.forward(hidden)?)
    }
}

/// Softmax over a plain vector (numerically stable).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, -2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[0] && p[0] > p[2]);
        let big = softmax(&[1000.0, 0.0]);
        assert!((big[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn mean_pooling_ignores_padding() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let hidden = Tensor::from_vec(vec![1f32, 2., 3., 4., 100., 100.], (1, 3, 2), &dev)?;
        let mask = Tensor::from_vec(vec![1f32, 1., 0.], (1, 3), &dev)?;
        let pooled = Pooling::Mean
            .apply(&hidden, &mask, &[2])?
            .to_vec2::<f32>()?;
        assert_eq!(pooled, vec![vec![2.0, 3.0]]);
        let last = Pooling::LastToken
            .apply(&hidden, &mask, &[2])?
            .to_vec2::<f32>()?;
        assert_eq!(last, vec![vec![3.0, 4.0]]);
        let max = Pooling::Max.apply(&hidden, &mask, &[2])?.to_vec2::<f32>()?;
        assert_eq!(max, vec![vec![3.0, 4.0]]);
        Ok(())
    }

    #[test]
    fn flat_pooling_equals_the_padded_tensor_pooling() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let (h, lengths) = (3, [2usize, 4, 1]);
        let t = 4;
        let flat: Vec<f32> = (0..7 * h).map(|i| ((i as f32) * 0.77).sin()).collect();
        let mut padded = vec![-50f32; lengths.len() * t * h];
        let mut mask = vec![0f32; lengths.len() * t];
        let mut src = 0;
        for (b, &len) in lengths.iter().enumerate() {
            padded[b * t * h..(b * t + len) * h].copy_from_slice(&flat[src..src + len * h]);
            mask[b * t..b * t + len].fill(1.0);
            src += len * h;
        }
        let hidden = Tensor::from_vec(padded, (lengths.len(), t, h), &dev)?;
        let mask = Tensor::from_vec(mask, (lengths.len(), t), &dev)?;
        for p in [
            Pooling::Mean,
            Pooling::Cls,
            Pooling::LastToken,
            Pooling::Max,
        ] {
            let want = p.apply(&hidden, &mask, &lengths)?.to_vec2::<f32>()?;
            let got = p.apply_flat(&flat, &lengths, h);
            for (w, g) in want.iter().zip(&got) {
                for (a, b) in w.iter().zip(g) {
                    assert!((a - b).abs() < 1e-6, "{p:?}: {w:?} vs {g:?}");
                }
            }
        }
        assert_eq!(Pooling::Mean.apply_flat(&[], &[0], 2), vec![vec![0.0, 0.0]]);
        Ok(())
    }

    #[test]
    fn normalize_gives_unit_rows() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::from_vec(vec![3f32, 4.], (1, 2), &dev)?;
        assert_eq!(normalize(&x)?.to_vec2::<f32>()?, vec![vec![0.6, 0.8]]);
        Ok(())
    }
}
