//! An encoder model loaded for inference: tokenizer + backbone + head, with batched task methods.

use crate::aggregate::{aggregate_joined, tokens_none, Entity, TokenLabel, TokenView};
use crate::config::{EncoderConfig, Family, HeadKind};
use crate::encoder::{Batch, BertEncoder, DebertaEncoder, EncoderBackend, FastBert, Kernel};
use crate::error::{EngineError, Result};
use crate::heads::{sigmoid, softmax, SequenceHead, TokenHead};
use crate::modeldir::EncoderDir;
use crate::pooled::PooledHead;
use crate::profile::{self, Stage};
use crate::tokenize::{Encoded, TextInput, TextTokenizer};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;

/// Most items in one forward pass of the engine's own batching (the server batches above this).
pub const DEFAULT_MAX_BATCH: usize = 32;

/// Which implementation runs the encoder stack: the one vocabulary of `--backend` (clap, with
/// the `clap` feature), the config file's `backend` (serde) and [`str::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BackendKind {
    /// The fast path where it supports the model (BERT, RoBERTa, DistilBERT on the CPU), else candle.
    #[default]
    Auto,
    /// candle's graph: every architecture and device (the reference the fast path is checked against).
    Candle,
    /// The padding-free fused CPU encoder; refuses models it does not support.
    Fast,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Candle => "candle",
            BackendKind::Fast => "fast",
        }
    }
}

/// Weight precision of the encoder's linear layers: the one vocabulary of `--quantize` (clap,
/// with the `clap` feature), the config file's `quantize` (serde) and [`str::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Quantize {
    /// f32 throughout (bit-for-bit the reference's arithmetic up to summation order).
    #[default]
    #[serde(alias = "f32", alias = "fp32", alias = "off")]
    #[cfg_attr(feature = "clap", value(alias = "f32", alias = "fp32", alias = "off"))]
    None,
    /// int8 weights per output channel, int8 activations per token (fast encoder only).
    #[serde(alias = "i8")]
    #[cfg_attr(feature = "clap", value(alias = "i8"))]
    Int8,
    /// bf16 weights (rounded at load) and bf16 GEMM inputs, f32 sums; LayerNorm, softmax, GELU
    /// and attention in f32 (fast encoder only; AVX512-BF16 where the CPU has it).
    #[serde(alias = "bfloat16")]
    #[cfg_attr(feature = "clap", value(alias = "bfloat16"))]
    Bf16,
}

/// Reads a word of a serde vocabulary, in any case (`"FAST"`, `"Int8"`).
fn from_word<'de, T: serde::Deserialize<'de>>(s: &str) -> std::result::Result<T, String> {
    use serde::de::IntoDeserializer;
    let lower = s.trim().to_ascii_lowercase();
    T::deserialize(lower.as_str().into_deserializer())
        .map_err(|e: serde::de::value::Error| format!("`{s}`: {e}"))
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        from_word(s)
    }
}

impl std::str::FromStr for Quantize {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        from_word(s)
    }
}

impl Quantize {
    pub fn as_str(self) -> &'static str {
        match self {
            Quantize::None => "none",
            Quantize::Int8 => "int8",
            Quantize::Bf16 => "bf16",
        }
    }

    /// The precision's name as reported to users: `f32`, `int8` or `bf16`.
    pub fn precision(self) -> &'static str {
        match self {
            Quantize::None => "f32",
            other => other.as_str(),
        }
    }
}

/// How a model is loaded.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub backend: BackendKind,
    pub quantize: Quantize,
}

/// Refuses option combinations no backend runs: int8 and bf16 need the fast encoder, which does
/// not run DeBERTa-v2 models.
fn check_options(family: Family, opts: &LoadOptions) -> Result<()> {
    let low = opts.quantize != Quantize::None;
    let q = opts.quantize.as_str();
    let refuse = |option, message: String| Err(EngineError::IncompatibleOption { option, message });
    match (family, opts.backend) {
        (Family::DebertaV2, _) if low => refuse(
            "quantize",
            format!("{q} runs on the fast encoder, which does not run DeBERTa-v2 models"),
        ),
        (_, BackendKind::Candle) if low => refuse(
            "quantize",
            format!("{q} runs on the fast encoder; use backend auto or fast"),
        ),
        (Family::DebertaV2, BackendKind::Fast) => refuse(
            "backend",
            "the fast encoder does not run DeBERTa-v2 models; use auto or candle".into(),
        ),
        _ => Ok(()),
    }
}

/// The kernel a CPU load of a `family` model with `opts` runs, without loading it (for
/// `nlpd models info`); the load's own refusal when it would fail.
pub fn planned_kernel(family: Family, opts: &LoadOptions) -> Result<Kernel> {
    check_options(family, opts)?;
    Ok(match (family, opts.backend) {
        (Family::DebertaV2, _) | (_, BackendKind::Candle) => Kernel::Candle,
        _ => Kernel::fast(opts.quantize),
    })
}

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

/// An encoder pass' last hidden states: padding-free from a backend that has them (enough for
/// pooling), else the padded `[batch, seq, hidden]` tensor the sequence and token heads read.
enum Hidden {
    Flat(Vec<f32>),
    Padded(Tensor),
}

impl Hidden {
    fn padded(&self) -> Result<&Tensor> {
        match self {
            Hidden::Padded(t) => Ok(t),
            Hidden::Flat(_) => Err(EngineError::internal(
                "a head asked for padded hidden states from a backend that has only flat ones",
            )),
        }
    }
}

/// What the runtime asks of one input in a shared forward pass.
#[derive(Debug, Clone, PartialEq)]
pub enum EncoderOp {
    /// Pooled sentence embedding (`normalize` is forced on for models ending in Normalize).
    Embed {
        normalize: bool,
        dimensions: Option<usize>,
    },
    /// Sequence classification scores.
    Classify,
    /// Per-token label probabilities.
    Tokens,
}

/// The result of one [`EncoderOp`].
#[derive(Debug, Clone, PartialEq)]
pub enum OpOutput {
    Embedding(Vec<f32>),
    Classification(Classification),
    TokenProbs(Vec<Vec<f32>>),
}

impl OpOutput {
    pub fn into_embedding(self) -> Option<Vec<f32>> {
        match self {
            OpOutput::Embedding(v) => Some(v),
            _ => None,
        }
    }
}

/// How token predictions become output: the one vocabulary of the HTTP field `aggregation`
/// (serde) and the CLI's `--aggregation` (clap, with the `clap` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Aggregation {
    /// Merge word pieces and BIO tags into entity spans.
    #[default]
    Simple,
    /// Every token with its label.
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
    /// Each token with its top label (`O` for an id outside `labels`), score and offsets.
    pub fn views<'a>(&self, labels: &'a [String]) -> Vec<TokenView<'a>> {
        self.label_ids()
            .iter()
            .enumerate()
            .map(|(t, &l)| TokenView {
                label: labels.get(l).map(String::as_str).unwrap_or("O"),
                score: self.probs[t][l],
                start: self.encoded.offsets[t].0,
                end: self.encoded.offsets[t].1,
                word: self.encoded.word_ids[t],
                special: self.encoded.special[t],
            })
            .collect()
    }

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
    /// A head trained by `nlpd train` over the pooled embedding; `normalize`: L2 first.
    Pooled {
        head: PooledHead,
        normalize: bool,
    },
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
        Self::load_with(root, device, &LoadOptions::default())
    }

    /// Loads a model directory on the CPU with explicit options (backend, precision).
    pub fn load_opts(root: &Path, opts: &LoadOptions) -> Result<Self> {
        Self::load_with(root, &Device::Cpu, opts)
    }

    /// Loads a model directory with explicit options (backend choice).
    pub fn load_with(root: &Path, device: &Device, opts: &LoadOptions) -> Result<Self> {
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
        check_options(c.family, opts)?;
        let backend: Box<dyn EncoderBackend> = match (c.family, opts.backend) {
            (Family::DebertaV2, _) => Box::new(DebertaEncoder::load(&vb, c, root).map_err(wrap)?.0),
            (_, kind) => {
                let bert = BertEncoder::load(&vb, c, root).map_err(wrap)?.0;
                let fast = match kind {
                    BackendKind::Candle => false,
                    BackendKind::Fast => true,
                    BackendKind::Auto => FastBert::supports(&bert),
                };
                if fast {
                    let mut f = FastBert::from_candle(&bert)?;
                    drop(bert);
                    match opts.quantize {
                        Quantize::None => {}
                        Quantize::Int8 => f.quantize_int8()?,
                        Quantize::Bf16 => f.to_bf16()?,
                    }
                    match f.kernel() {
                        Kernel::Int8Portable => tracing::warn!(
                            "int8: this CPU lacks AVX-512 VNNI; the portable int8 loop is slow"
                        ),
                        Kernel::Bf16Avx2 => tracing::warn!(
                            "bf16: this CPU lacks AVX512-BF16; the avx2-fma kernel (bf16 widened \
                             to f32) gives bf16's results but is no faster than f32"
                        ),
                        Kernel::Bf16Portable => tracing::warn!(
                            "bf16: this CPU has neither AVX512-BF16 nor AVX2; the portable bf16 \
                             loop is slow"
                        ),
                        _ => {}
                    }
                    Box::new(f)
                } else if opts.quantize != Quantize::None {
                    return Err(EngineError::IncompatibleOption {
                        option: "quantize",
                        message: format!(
                            "{} needs the fast encoder, which runs on the CPU only",
                            opts.quantize.as_str()
                        ),
                    });
                } else {
                    Box::new(bert)
                }
            }
        };
        let head = match (&dir.head, c.head) {
            (Some(h), _) => Head::Pooled {
                head: PooledHead::load(&h.weights, &h.config)?,
                normalize: h.config.normalize,
            },
            (None, HeadKind::Base) => Head::None,
            (None, HeadKind::SequenceClassification) => {
                Head::Sequence(SequenceHead::load(&vb, c, root)?)
            }
            (None, HeadKind::TokenClassification) => Head::Token(TokenHead::load(&vb, c, root)?),
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

    /// The kernel running the encoder's linear layers (its precision is [`Kernel::precision`]).
    pub fn kernel(&self) -> Kernel {
        self.backend.kernel()
    }

    /// Lowers the token limit per input (never above the model's own).
    pub fn limit_tokens(&mut self, cap: usize) -> Result<()> {
        let n = cap.clamp(2, self.tokenizer.max_len());
        self.tokenizer =
            TextTokenizer::new(self.tokenizer.inner().clone(), n, self.tokenizer.pad_id())?;
        Ok(())
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

    /// One forward pass over `items` (a batch the caller formed), then each item's own head:
    /// items of different operations share the encoder pass.
    pub fn run_batch(&self, items: &[(&Encoded, &EncoderOp)]) -> Result<Vec<OpOutput>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        for (_, op) in items {
            self.check_op(op)?;
        }
        let t0 = profile::start();
        let encs: Vec<&Encoded> = items.iter().map(|(e, _)| *e).collect();
        let batch = Batch::new(&encs, self.tokenizer.pad_id(), &self.device)?;
        profile::stop(Stage::Batch, t0);
        let any = |f: fn(&EncoderOp) -> bool| items.iter().any(|(_, op)| f(op));
        let pooled_head =
            matches!(self.head, Head::Pooled { .. }) && any(|op| matches!(op, EncoderOp::Classify));
        let wants_pooled = pooled_head || any(|op| matches!(op, EncoderOp::Embed { .. }));
        // The sequence and token heads read the padded tensor; pooling alone can read the
        // padding-free states of a backend that has them (no padded copy, no tensor ops).
        let tensor_heads = match &self.head {
            Head::Sequence(_) => any(|op| matches!(op, EncoderOp::Classify)),
            Head::Token(_) => any(|op| matches!(op, EncoderOp::Tokens)),
            _ => false,
        };
        let t0 = profile::start();
        let flat = if tensor_heads {
            None
        } else {
            self.backend.forward_flat(&batch).transpose()?
        };
        let hidden = match flat {
            Some(f) => Hidden::Flat(f),
            None => Hidden::Padded(self.backend.forward(&batch)?),
        };
        profile::stop(Stage::Encoder, t0);
        let t0 = profile::start();
        let pooled = match (wants_pooled, &hidden) {
            (false, _) => None,
            (true, Hidden::Flat(f)) => {
                let h = self.dir.config.hidden_size;
                Some(self.dir.pooling.apply_flat(f, &batch.lengths, h))
            }
            (true, Hidden::Padded(t)) => Some(
                self.dir
                    .pooling
                    .apply(t, &batch.mask, &batch.lengths)?
                    .to_vec2::<f32>()?,
            ),
        };
        let seq_logits = match (&self.head, any(|op| matches!(op, EncoderOp::Classify))) {
            (Head::Sequence(h), true) => Some(h.forward(hidden.padded()?)?.to_vec2::<f32>()?),
            _ => None,
        };
        let tok_logits = match (&self.head, any(|op| matches!(op, EncoderOp::Tokens))) {
            (Head::Token(h), true) => Some(h.forward(hidden.padded()?)?.to_vec3::<f32>()?),
            _ => None,
        };
        profile::stop(Stage::PoolingHead, t0);
        let t0 = profile::start();
        let always_normalized = self.dir.normalized;
        let multi = self.dir.config.multi_label;
        let out = items
            .iter()
            .enumerate()
            .map(|(row, (_, op))| {
                Ok(match op {
                    EncoderOp::Embed {
                        normalize,
                        dimensions,
                    } => {
                        let mut v = pooled.as_ref().map(|p| p[row].clone()).unwrap_or_default();
                        if let Some(d) = dimensions {
                            v.truncate(*d);
                        }
                        if always_normalized || *normalize {
                            l2_normalize(&mut v);
                        }
                        OpOutput::Embedding(v)
                    }
                    EncoderOp::Classify => {
                        let l = match (&self.head, &pooled) {
                            (Head::Pooled { head, normalize }, Some(p)) => {
                                let mut v = p[row].clone();
                                if *normalize {
                                    l2_normalize(&mut v);
                                }
                                head.logits(&v)
                            }
                            _ => seq_logits
                                .as_ref()
                                .map(|x| x[row].clone())
                                .unwrap_or_default(),
                        };
                        let scores = if l.len() == 1 {
                            l.clone()
                        } else if multi {
                            l.iter().map(|&x| sigmoid(x)).collect()
                        } else {
                            softmax(&l)
                        };
                        OpOutput::Classification(Classification { logits: l, scores })
                    }
                    EncoderOp::Tokens => {
                        let len = batch.lengths[row];
                        let rows = tok_logits.as_ref().map(|x| &x[row][..len]).unwrap_or(&[]);
                        OpOutput::TokenProbs(rows.iter().map(|r| softmax(r)).collect())
                    }
                })
            })
            .collect();
        if t0.is_some() {
            profile::stop(Stage::Postprocess, t0);
            profile::count_call();
        }
        out
    }

    /// Refuses an operation this model cannot do (before any compute).
    pub fn check_op(&self, op: &EncoderOp) -> Result<()> {
        match (op, &self.head) {
            (
                EncoderOp::Embed {
                    dimensions: Some(d),
                    ..
                },
                _,
            ) => {
                let h = self.dir.config.hidden_size;
                if *d == 0 || *d > h {
                    return Err(EngineError::InvalidParameter {
                        param: "dimensions",
                        message: format!("must be between 1 and {h}, got {d}"),
                    });
                }
                Ok(())
            }
            (EncoderOp::Embed { .. }, _) => Ok(()),
            (EncoderOp::Classify, Head::Sequence(_) | Head::Pooled { .. }) => Ok(()),
            (EncoderOp::Classify, _) => Err(self.unsupported("sequence classification")),
            (EncoderOp::Tokens, Head::Token(_)) => Ok(()),
            (EncoderOp::Tokens, _) => Err(self.unsupported("token classification")),
        }
    }

    /// Runs one operation over many inputs in length-sorted chunks; results in input order.
    fn run_all(&self, encs: &[Encoded], op: &EncoderOp) -> Result<Vec<OpOutput>> {
        self.check_op(op)?;
        let mut order: Vec<usize> = (0..encs.len()).collect();
        order.sort_by_key(|&i| encs[i].len());
        let mut out: Vec<Option<OpOutput>> = (0..encs.len()).map(|_| None).collect();
        for chunk in order.chunks(self.max_batch) {
            let items: Vec<(&Encoded, &EncoderOp)> =
                chunk.iter().map(|&i| (&encs[i], op)).collect();
            for (&i, r) in chunk.iter().zip(self.run_batch(&items)?) {
                out[i] = Some(r);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Sentence embeddings.
    pub fn embed(&self, texts: &[&str], opts: &EmbedOptions) -> Result<Vec<Vec<f32>>> {
        let op = EncoderOp::Embed {
            normalize: opts.normalize.unwrap_or(false),
            dimensions: opts.dimensions,
        };
        self.check_op(&op)?;
        let inputs: Vec<TextInput> = texts.iter().map(|t| TextInput::Single(t)).collect();
        let encs = self.encode(&inputs, opts.truncate)?;
        Ok(self
            .run_all(&encs, &op)?
            .into_iter()
            .filter_map(OpOutput::into_embedding)
            .collect())
    }

    /// Sequence classification of texts or pairs.
    pub fn classify(
        &self,
        inputs: &[TextInput<'_>],
        truncate: bool,
    ) -> Result<Vec<Classification>> {
        self.check_op(&EncoderOp::Classify)?;
        let encs = self.encode(inputs, truncate)?;
        Ok(self
            .run_all(&encs, &EncoderOp::Classify)?
            .into_iter()
            .filter_map(|o| match o {
                OpOutput::Classification(c) => Some(c),
                _ => None,
            })
            .collect())
    }

    /// Per-token label probabilities.
    pub fn token_predictions(
        &self,
        texts: &[&str],
        truncate: bool,
    ) -> Result<Vec<TokenPredictions>> {
        self.check_op(&EncoderOp::Tokens)?;
        let inputs: Vec<TextInput> = texts.iter().map(|t| TextInput::Single(t)).collect();
        let encs = self.encode(&inputs, truncate)?;
        let outs = self.run_all(&encs, &EncoderOp::Tokens)?;
        Ok(encs
            .into_iter()
            .zip(outs)
            .map(|(encoded, o)| TokenPredictions {
                encoded,
                probs: match o {
                    OpOutput::TokenProbs(p) => p,
                    _ => Vec::new(),
                },
            })
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
        Ok(preds
            .iter()
            .zip(texts)
            .map(|(p, text)| entities_of(text, p, self.labels(), aggregation))
            .collect())
    }

    fn unsupported(&self, task: &'static str) -> EngineError {
        EngineError::UnsupportedTask {
            model: self.dir.root.display().to_string(),
            task,
        }
    }
}

/// Turns one text's token predictions into entities (post-processing, off the model's worker).
pub fn entities_of(
    text: &str,
    p: &TokenPredictions,
    labels: &[String],
    aggregation: Aggregation,
) -> EntityOutput {
    let views = p.views(labels);
    match aggregation {
        Aggregation::Simple => EntityOutput::Spans(aggregate_joined(text, &views)),
        Aggregation::None => EntityOutput::Tokens(tokens_none(text, &views)),
    }
}

/// L2-normalizes a vector in place (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod vocabulary_tests {
    use super::*;

    #[test]
    fn backend_and_precision_words_parse_in_any_case_with_their_aliases() {
        assert_eq!("FAST".parse::<BackendKind>(), Ok(BackendKind::Fast));
        assert_eq!(" candle ".parse::<BackendKind>(), Ok(BackendKind::Candle));
        for (word, q) in [
            ("none", Quantize::None),
            ("F32", Quantize::None),
            ("fp32", Quantize::None),
            ("off", Quantize::None),
            ("int8", Quantize::Int8),
            ("i8", Quantize::Int8),
            ("BF16", Quantize::Bf16),
            ("bfloat16", Quantize::Bf16),
        ] {
            assert_eq!(word.parse::<Quantize>(), Ok(q), "{word}");
            assert_eq!(q.as_str().parse::<Quantize>(), Ok(q));
        }
        let e = "gpu".parse::<BackendKind>().unwrap_err();
        assert!(e.contains("`gpu`") && e.contains("auto"), "{e}");
        let e = "int4".parse::<Quantize>().unwrap_err();
        assert!(e.contains("int8") && e.contains("bf16"), "{e}");
    }
}
