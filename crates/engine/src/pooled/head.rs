//! The weights of a pooled classification head (`model.safetensors` of a head directory) and its
//! forward pass: plain f32 loops, the same for `nlpd train`'s metrics and for serving.

use super::config::{HeadConfig, HeadType};
use crate::error::{EngineError, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// One linear layer, PyTorch layout: `w` is `[n_out, n_in]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub n_in: usize,
    pub n_out: usize,
}

impl Dense {
    /// `y[j] = Σ_k w[j][k]·x[k] + b[j]`, summed in index order (deterministic).
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        self.w
            .chunks_exact(self.n_in)
            .zip(&self.b)
            .map(|(row, b)| row.iter().zip(x).fold(0f32, |acc, (w, x)| acc + w * x) + b)
            .collect()
    }

    fn tensors(&self, name: &str, out: &mut HashMap<String, Tensor>) -> Result<()> {
        let dev = Device::Cpu;
        out.insert(
            format!("{name}.weight"),
            Tensor::from_slice(&self.w, (self.n_out, self.n_in), &dev)?,
        );
        out.insert(
            format!("{name}.bias"),
            Tensor::from_slice(&self.b, self.n_out, &dev)?,
        );
        Ok(())
    }

    fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        name: &str,
        n_in: usize,
        n_out: usize,
        path: &Path,
    ) -> Result<Self> {
        let get = |suffix: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let key = format!("{name}.{suffix}");
            let t = tensors.get(&key).ok_or_else(|| {
                EngineError::invalid_model(path, format!("tensor `{key}` is missing"))
            })?;
            if t.dims() != shape {
                return Err(EngineError::invalid_model(
                    path,
                    format!(
                        "`{key}` has shape {:?}, config.json implies {shape:?} (dimension mismatch)",
                        t.dims()
                    ),
                ));
            }
            Ok(t.to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        Ok(Dense {
            w: get("weight", &[n_out, n_in])?,
            b: get("bias", &[n_out])?,
            n_in,
            n_out,
        })
    }
}

/// A head over a pooled sentence embedding: `classifier`, or `dense` + ReLU + `classifier`.
#[derive(Debug, Clone, PartialEq)]
pub struct PooledHead {
    pub dense: Option<Dense>,
    pub classifier: Dense,
}

impl PooledHead {
    pub fn head_type(&self) -> HeadType {
        if self.dense.is_some() {
            HeadType::Mlp
        } else {
            HeadType::Linear
        }
    }

    pub fn input_size(&self) -> usize {
        self.dense.as_ref().map_or(self.classifier.n_in, |d| d.n_in)
    }

    pub fn num_labels(&self) -> usize {
        self.classifier.n_out
    }

    /// Logits of one (pooled, and normalized if the head was trained so) embedding.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        match &self.dense {
            Some(d) => {
                let mut h = d.forward(x);
                h.iter_mut().for_each(|v| *v = v.max(0.0));
                self.classifier.forward(&h)
            }
            None => self.classifier.forward(x),
        }
    }

    /// Reads `model.safetensors` of a head directory, checking every shape against `config`.
    pub fn load(path: &Path, config: &HeadConfig) -> Result<Self> {
        if !path.is_file() {
            return Err(EngineError::invalid_model(
                path,
                "the head's weights file is missing",
            ));
        }
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
            EngineError::invalid_model(path, format!("cannot read head weights: {e}"))
        })?;
        let n = config.num_labels;
        let d = config.input_size;
        Ok(match config.head_type {
            HeadType::Linear => PooledHead {
                dense: None,
                classifier: Dense::from_tensors(&tensors, "classifier", d, n, path)?,
            },
            HeadType::Mlp => {
                let h = config.mlp_hidden_size.unwrap_or(0);
                PooledHead {
                    dense: Some(Dense::from_tensors(&tensors, "dense", d, h, path)?),
                    classifier: Dense::from_tensors(&tensors, "classifier", h, n, path)?,
                }
            }
        })
    }

    /// Writes the weights as safetensors (byte-identical output for identical weights).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = HashMap::new();
        if let Some(d) = &self.dense {
            d.tensors("dense", &mut tensors)?;
        }
        self.classifier.tensors("classifier", &mut tensors)?;
        candle_core::safetensors::save(&tensors, path).map_err(|e| match e {
            candle_core::Error::Io(source) => EngineError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => EngineError::Compute(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::Pooling;

    fn labels() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    fn mlp() -> PooledHead {
        PooledHead {
            dense: Some(Dense {
                w: vec![1.0, 0.0, 0.0, 1.0, -1.0, -1.0],
                b: vec![0.0, 0.0, 0.5],
                n_in: 2,
                n_out: 3,
            }),
            classifier: Dense {
                w: vec![1.0, 0.0, 0.0, 0.0, 1.0, 2.0],
                b: vec![0.25, -0.25],
                n_in: 3,
                n_out: 2,
            },
        }
    }

    #[test]
    fn forward_is_linear_relu_linear() {
        // h = relu([1, -2, 1 + 0.5]) = [1, 0, 1.5]; logits = [1 + .25, 0 + 3 - .25]
        assert_eq!(mlp().logits(&[1.0, -2.0]), vec![1.25, 2.75]);
    }

    #[test]
    fn save_then_load_is_exact_and_deterministic() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("nlpd-head-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io {
            path: dir.clone(),
            source,
        })?;
        let head = mlp();
        let (p1, p2) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
        head.save(&p1)?;
        head.save(&p2)?;
        let read = |p: &Path| std::fs::read(p).unwrap_or_default();
        assert_eq!(read(&p1), read(&p2));
        let cfg = HeadConfig::new(
            "enc".into(),
            Pooling::Mean,
            true,
            HeadType::Mlp,
            2,
            Some(3),
            &labels(),
        );
        assert_eq!(PooledHead::load(&p1, &cfg)?, head);
        let wrong = HeadConfig::new(
            "enc".into(),
            Pooling::Mean,
            true,
            HeadType::Mlp,
            4,
            Some(3),
            &labels(),
        );
        let err = PooledHead::load(&p1, &wrong).unwrap_err().to_string();
        assert!(err.contains("dimension mismatch"), "{err}");
        let linear = HeadConfig::new(
            "enc".into(),
            Pooling::Mean,
            true,
            HeadType::Linear,
            2,
            None,
            &labels(),
        );
        let err = PooledHead::load(&p1, &linear).unwrap_err().to_string();
        assert!(
            err.contains("`classifier.weight` has shape [2, 3]"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }
}
