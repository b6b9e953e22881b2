//! An encoder model loaded for inference: tokenizer + backbone + head, with batched task methods.

use crate::aggregate::{aggregate_joined, tokens_none, Entity, TokenLabel, TokenView};
use crate::config::{EncoderConfig, Family, HeadKind};
use crate::encoder::{Batch, BertEncoder, DebertaEncoder, EncoderBackend};
use crate::error::{EngineError, Result};
use crate::heads::{normalize, sigmoid, softmax, Pooling, SequenceHead, TokenHead};
use crate::modeldir::EncoderDir;
use crate::tokenize::{Encoded, TextInput, TextTokenizer};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;

/// Most items in one forward pass of the engine's own batching (the server batches above this).
pub const DEFAULT_MAX_BATCH: usize = 32;

/// Options for embeddings.
#[derive(Debug, Clone, Default)]
pub struct EmbedOptions {
    /// `None`: the model's default (normalized if it ends in a Normalize module, else not).
    /// A model with a Normalize module is always normalized.
    pub normalize: Option<bool>,
    /// Matryoshka truncation to the first `dimensions` values (re-normalized when normalizing).
    pub dimensions: Option<usize>,
    /// Cut inputs to the model's limit (default) instead of refusing them.
    pub truncate: bool,
}

impl EmbedOptions {
    pub fn new() -> Self {
        EmbedOptions {
            normalize: None,
            dimensions: None,
            truncate: true,
        }
    }
}

/// How token predictions become output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    #[default]
    Simple,
    None,
}

/// One sequence classification result: logits and scores in label-id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub logits: Vec<f32>,
    /// Softmax probabilities; sigmoid for multi-label models; the raw logit when there is one label.
    pub scores: Vec<f32>,
}

/// Token-level predictions of one text.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenPredictions {
    pub encoded: Encoded,
    /// Per token: softmax over labels.
    pub probs: Vec<Vec<f32>>,
}

impl TokenPredictions {
    /// Argmax label id per token.
    pub fn label_ids(&self) -> Vec<usize> {
        self.probs
            .iter()
            .map(|p| {
                p.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                        if v > bv {
                            (i, v)
                        } else {
                            (bi, bv)
                        }
                    })
                    .0
            })
            .collect()
    }
}

/// Entities (or per-token labels) of one text.
#[derive(Debug, Clone, PartialEq)]
pub enum EntityOutput {
    Spans(Vec<Entity>),
    Tokens(Vec<TokenLabel>),
}

enum Head {
    None,
    Sequence(SequenceHead),
    Token(TokenHead),
}

/// A loaded encoder model.
pub struct EncoderModel {
    dir: EncoderDir,
    tokenizer: TextTokenizer,
    backend: Box<dyn EncoderBackend>,
    head: Head,
    device: Device,
    max_batch: usize,
}

impl EncoderModel {
    /// Loads a model directory on the CPU in f32.
    pub fn load(root: &Path) -> Result<Self> {
        Self::load_on(root, &Device::Cpu)
    }

    pub fn load_on(root: &Path, device: &Device) -> Result<Self> {
        let dir = EncoderDir::open(root)?;
        let c = &dir.config;
        let tokenizer =
            TextTokenizer::from_file(&dir.tokenizer, dir.max_len, c.pad_token_id as u32)?;
        // SAFETY: the file is memory-mapped read-only; nlpd never writes model files while serving.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                std::slice::from_ref(&dir.weights),
                DType::F32,
                device,
            )
        }
        .map_err(|e| {
            EngineError::invalid_model(&dir.weights, format!("cannot read weights: {e}"))
        })?;
        let wrap = |e: EngineError| match e {
            EngineError::Compute(err) => {
                EngineError::invalid_model(root, format!("weights do not match config.json: {err}"))
            }
            other => other,
        };
        let backend: Box<dyn EncoderBackend> = match c.family {
            Family::DebertaV2 => Box::new(DebertaEncoder::load(&vb, c, root).map_err(wrap)?.0),
            _ => Box::new(BertEncoder::load(&vb, c, root).map_err(wrap)?.0),
        };
        let head = match c.head {
            HeadKind::Base => Head::None,
            HeadKind::SequenceClassification => Head::Sequence(SequenceHead::load(&vb, c, root)?),
            HeadKind::TokenClassification => Head::Token(TokenHead::load(&vb, c, root)?),
        };
        Ok(EncoderModel {
            dir,
            tokenizer,
            backend,
            head,
            device: device.clone(),
            max_batch: DEFAULT_MAX_BATCH,
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.dir.config
    }

    pub fn dir(&self) -> &EncoderDir {
        &self.dir
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn labels(&self) -> &[String] {
        &self.dir.config.id2label
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn set_max_batch(&mut self, n: usize) {
        self.max_batch = n.max(1);
    }

    /// Tokenizes inputs (errors name the input's index).
    pub fn encode(&self, inputs: &[TextInput<'_>], truncate: bool) -> Result<Vec<Encoded>> {
        inputs
            .iter()
            .enumerate()
            .map(|(i, input)| self.tokenizer.encode(*input, truncate, i))
            .collect()
    }

    /// Runs `f` over length-sorted chunks of `encs` and returns the per-item results in input order.
    fn batched<T>(
        &self,
        encs: &[Encoded],
        mut f: impl FnMut(&Tensor, &Batch) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let mut order: Vec<usize> = (0..encs.len()).collect();
        order.sort_by_key(|&i| encs[i].len());
        let mut out: Vec<Option<T>> = (0..encs.len()).map(|_| None).collect();
        for chunk in order.chunks(self.max_batch) {
            let items: Vec<&Encoded> = chunk.iter().map(|&i| &encs[i]).collect();
            let batch = Batch::new(&items, self.tokenizer.pad_id(), &self.device)?;
            let hidden = self.backend.forward(&batch)?;
            for (&i, r) in chunk.iter().zip(f(&hidden, &batch)?) {
                out[i] = Some(r);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Sentence embeddings.
    pub fn embed(&self, texts: &[&str], opts: &EmbedOptions) -> Result<Vec<Vec<f32>>> {
        let hidden_size = self.dir.config.hidden_size;
        if let Some(d) = opts.dimensions {
            if d == 0 || d > hidden_size {
                return Err(EngineError::InvalidInput(format!(
                    "dimensions must be between 1 and {hidden_size}, got {d}"
                )));
            }
        }
        let inputs: Vec<TextInput> = texts.iter().map(|t| TextInput::Single(t)).collect();
        let encs = self.encode(&inputs, opts.truncate)?;
        self.embed_encoded(&encs, opts)
    }

    /// Embeddings of already tokenized inputs.
    pub fn embed_encoded(&self, encs: &[Encoded], opts: &EmbedOptions) -> Result<Vec<Vec<f32>>> {
        let normalize_out = self.dir.normalized || opts.normalize.unwrap_or(false);
        let pooling: Pooling = self.dir.pooling;
        self.batched(encs, |hidden, batch| {
            let mut pooled = pooling.apply(hidden, &batch.mask, &batch.lengths)?;
            if let Some(d) = opts.dimensions {
                pooled = pooled.narrow(1, 0, d)?;
            }
            if normalize_out {
                pooled = normalize(&pooled)?;
            }
            Ok(pooled.to_vec2::<f32>()?)
        })
    }

    /// Sequence classification of texts or pairs.
    pub fn classify(
        &self,
        inputs: &[TextInput<'_>],
        truncate: bool,
    ) -> Result<Vec<Classification>> {
        let Head::Sequence(head) = &self.head else {
            return Err(self.unsupported("sequence classification"));
        };
        let encs = self.encode(inputs, truncate)?;
        let multi = self.dir.config.multi_label;
        self.batched(&encs, |hidden, _| {
            let logits = head.forward(hidden)?.to_vec2::<f32>()?;
            Ok(logits
                .into_iter()
                .map(|l| {
                    let scores = if l.len() == 1 {
                        l.clone()
                    } else if multi {
                        l.iter().map(|&x| sigmoid(x)).collect()
                    } else {
                        softmax(&l)
                    };
                    Classification { logits: l, scores }
                })
                .collect())
        })
    }

    /// Per-token label probabilities.
    pub fn token_predictions(
        &self,
        texts: &[&str],
        truncate: bool,
    ) -> Result<Vec<TokenPredictions>> {
        let Head::Token(head) = &self.head else {
            return Err(self.unsupported("token classification"));
        };
        let inputs: Vec<TextInput> = texts.iter().map(|t| TextInput::Single(t)).collect();
        let encs = self.encode(&inputs, truncate)?;
        let probs = self.batched(&encs, |hidden, batch| {
            let logits = head.forward(hidden)?.to_vec3::<f32>()?;
            Ok(logits
                .into_iter()
                .zip(&batch.lengths)
                .map(|(rows, &len)| {
                    rows.into_iter()
                        .take(len)
                        .map(|r| softmax(&r))
                        .collect::<Vec<_>>()
                })
                .collect())
        })?;
        Ok(encs
            .into_iter()
            .zip(probs)
            .map(|(encoded, probs)| TokenPredictions { encoded, probs })
            .collect())
    }

    /// Entity spans (or labelled tokens) with character offsets.
    pub fn entities(
        &self,
        texts: &[&str],
        aggregation: Aggregation,
        truncate: bool,
    ) -> Result<Vec<EntityOutput>> {
        let preds = self.token_predictions(texts, truncate)?;
        let labels = self.labels();
        Ok(preds
            .iter()
            .zip(texts)
            .map(|(p, text)| {
                let ids = p.label_ids();
                let views: Vec<TokenView> = ids
                    .iter()
                    .enumerate()
                    .map(|(t, &l)| TokenView {
                        label: labels.get(l).map(String::as_str).unwrap_or("O"),
                        score: p.probs[t][l],
                        start: p.encoded.offsets[t].0,
                        end: p.encoded.offsets[t].1,
                        word: p.encoded.word_ids[t],
                        special: p.encoded.special[t],
                    })
                    .collect();
                match aggregation {
                    Aggregation::Simple => EntityOutput::Spans(aggregate_joined(text, &views)),
                    Aggregation::None => EntityOutput::Tokens(tokens_none(text, &views)),
                }
            })
            .collect())
    }

    fn unsupported(&self, task: &'static str) -> EngineError {
        EngineError::UnsupportedTask {
            model: self.dir.root.display().to_string(),
            task,
        }
    }
}
