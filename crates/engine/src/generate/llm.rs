//! A quantized decoder LM loaded from GGUF, with its tokenizer and chat template.

use super::constraint::{ConstrainedDecoder, ConstraintError, ConstraintVocab, OutputConstraint};
use super::gguf_tokenizer::{meta_str, meta_u32, tokenizer_from_gguf};
use super::stream::StopMatcher;
use super::template::{ChatMessage, ChatTemplate};
use crate::error::{tok_err, EngineError, Result};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::{quantized_llama, quantized_qwen2};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::Tokenizer;

/// candle's quantized llama precomputes rotary tables for this many positions.
const CANDLE_MAX_POSITIONS: usize = quantized_llama::MAX_SEQ_LEN;

enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
}

impl Weights {
    fn forward(&mut self, x: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        match self {
            Weights::Llama(m) => m.forward(x, pos),
            Weights::Qwen2(m) => m.forward(x, pos),
        }
    }

    fn clear(&mut self) {
        match self {
            Weights::Llama(m) => m.clear_kv_cache(),
            Weights::Qwen2(m) => m.clear_kv_cache(),
        }
    }
}

/// Sampling and stopping settings.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub seed: u64,
    pub stop: Vec<String>,
    /// 1.0 = off.
    pub repeat_penalty: f32,
    /// Structured output: the text must match this grammar (a JSON schema), enforced token by
    /// token. `None`: free text.
    pub constraint: Option<OutputConstraint>,
}

/// Temperatures below this sample greedily (the most probable token): dividing logits by a
/// smaller one overflows f32, and the distribution is already one token.
pub const GREEDY_BELOW: f64 = 1e-4;

/// The sampling seed when a request or command names none (the speed of light in m/s): the same
/// request samples the same text everywhere.
pub const DEFAULT_SEED: u64 = 299_792_458;

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            temperature: 0.0,
            top_p: None,
            seed: DEFAULT_SEED,
            stop: Vec::new(),
            repeat_penalty: 1.0,
            constraint: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` (or the context) ran out.
    Length,
    /// The caller's callback asked to stop (e.g. the client went away).
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
}

/// What [`GenModel::time_greedy`] measured.
#[derive(Debug, Clone)]
pub struct GenTiming {
    pub prompt_tokens: usize,
    /// The prompt's forward pass up to the first sampled token.
    pub prefill: std::time::Duration,
    pub decode_tokens: usize,
    /// The `decode_tokens` single-token steps.
    pub decode: std::time::Duration,
    /// The greedy tokens: the first from the prefill, then one per decode step.
    pub tokens: Vec<u32>,
}

impl GenTiming {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill.as_secs_f64().max(1e-9)
    }

    pub fn decode_tokens_per_s(&self) -> f64 {
        self.decode_tokens as f64 / self.decode.as_secs_f64().max(1e-9)
    }
}

/// A generative model's state after a prompt prefix: see [`GenModel::prefix_state`].
pub struct PrefixState {
    ids: Vec<u32>,
    weights: quantized_llama::ModelWeights,
}

impl PrefixState {
    /// The prefix's tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A generative model.
pub struct GenModel {
    path: PathBuf,
    architecture: String,
    weights: Weights,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    eos_ids: Vec<u32>,
    context_length: usize,
    device: Device,
    /// The token trie and parser factory of structured output, built on first use.
    constraint_vocab: Option<Arc<ConstraintVocab>>,
}

/// Finds the GGUF file: the path itself, or the single `.gguf` in a directory.
pub fn find_gguf(path: &Path) -> Result<PathBuf> {
    if !path.exists() {
        return Err(EngineError::ModelNotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let entries = std::fs::read_dir(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut ggufs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    ggufs.sort();
    match ggufs.len() {
        1 => Ok(ggufs.remove(0)),
        0 => Err(EngineError::invalid_model(
            path,
            "no .gguf file in this directory",
        )),
        n => Err(EngineError::invalid_model(
            path,
            format!("{n} .gguf files in this directory; name one"),
        )),
    }
}

/// Opens a GGUF file and reads its header (metadata and tensor directory).
pub(crate) fn read_gguf(path: &Path) -> Result<(std::fs::File, gguf_file::Content)> {
    let mut file = std::fs::File::open(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let ct = gguf_file::Content::read(&mut file)
        .map_err(|e| EngineError::invalid_model(path, format!("not a readable GGUF file: {e}")))?;
    Ok((file, ct))
}

impl GenModel {
    /// Loads a GGUF file (or a directory holding one, optionally with a `tokenizer.json`).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_on(path, &Device::Cpu)
    }

    pub fn load_on(path: &Path, device: &Device) -> Result<Self> {
        let file_path = find_gguf(path)?;
        let (mut file, ct) = read_gguf(&file_path)?;
        let architecture = meta_str(&ct, "general.architecture").unwrap_or_default();
        let sidecar = file_path.with_file_name("tokenizer.json");
        let tokenizer = if sidecar.is_file() {
            Tokenizer::from_file(&sidecar)
                .map_err(|e| EngineError::invalid_model(&sidecar, e.to_string()))?
        } else {
            tokenizer_from_gguf(&ct, &file_path)?
        };
        let token_text = |key: &str| -> String {
            meta_u32(&ct, key)
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let bos = token_text("tokenizer.ggml.bos_token_id");
        let eos = token_text("tokenizer.ggml.eos_token_id");
        let template_src = meta_str(&ct, "tokenizer.chat_template");
        let template = ChatTemplate::new(template_src.as_deref(), &bos, &eos)?;
        let mut eos_ids: Vec<u32> = meta_u32(&ct, "tokenizer.ggml.eos_token_id")
            .into_iter()
            .collect();
        for t in [
            "<|im_end|>",
            "<|endoftext|>",
            "<|eot_id|>",
            "<|end_of_text|>",
        ] {
            if let Some(id) = tokenizer.token_to_id(t) {
                if !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        let context_length = meta_u32(&ct, &format!("{architecture}.context_length"))
            .map(|c| c as usize)
            .unwrap_or(CANDLE_MAX_POSITIONS)
            .min(CANDLE_MAX_POSITIONS);
        let load_err = |e: candle_core::Error| {
            EngineError::invalid_model(&file_path, format!("cannot load weights: {e}"))
        };
        let weights = match architecture.as_str() {
            "llama" => Weights::Llama(
                quantized_llama::ModelWeights::from_gguf(ct, &mut file, device)
                    .map_err(load_err)?,
            ),
            "qwen2" => Weights::Qwen2(
                quantized_qwen2::ModelWeights::from_gguf(ct, &mut file, device)
                    .map_err(load_err)?,
            ),
            other => {
                return Err(EngineError::UnsupportedArchitecture {
                    path: file_path,
                    architecture: other.to_string(),
                    supported: "llama (incl. SmolLM2), qwen2 (GGUF)",
                })
            }
        };
        Ok(GenModel {
            path: file_path,
            architecture,
            weights,
            tokenizer,
            template,
            eos_ids,
            context_length,
            device: device.clone(),
            constraint_vocab: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the quantized weights live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The chat template applied to `messages`, ready to tokenize.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        if messages.is_empty() {
            return Err(EngineError::InvalidInput(
                "messages must not be empty".into(),
            ));
        }
        self.template.render(messages, true)
    }

    /// Tokenizes text that already contains any special tokens it needs (e.g. a rendered template).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(tok_err)
    }

    /// The model's state after `prefix` (its attention keys and values), so that prompts that
    /// start with it skip recomputing it ([`GenModel::next_token_logits_after`]). `None` where the
    /// architecture's weights cannot be snapshotted (candle's qwen2 model is not `Clone`).
    pub fn prefix_state(&mut self, prefix: &[u32]) -> Result<Option<PrefixState>> {
        self.check_prompt(prefix, 1)?;
        let Weights::Llama(m) = &mut self.weights else {
            return Ok(None);
        };
        m.clear_kv_cache();
        let input = Tensor::new(prefix, &self.device)?.unsqueeze(0)?;
        m.forward(&input, 0)?;
        let snapshot = m.clone();
        m.clear_kv_cache();
        Ok(Some(PrefixState {
            ids: prefix.to_vec(),
            weights: snapshot,
        }))
    }

    /// [`GenModel::next_token_logits`] for a prompt, continuing from `state` when the prompt
    /// starts with its prefix (only the rest is computed), else from scratch.
    pub fn next_token_logits_after(
        &mut self,
        state: &PrefixState,
        prompt: &[u32],
    ) -> Result<Vec<f32>> {
        let n = state.ids.len();
        if prompt.len() <= n || prompt[..n] != state.ids[..] {
            return self.next_token_logits(prompt);
        }
        self.check_prompt(prompt, 1)?;
        let mut m = state.weights.clone();
        let input = Tensor::new(&prompt[n..], &self.device)?.unsqueeze(0)?;
        let logits = m.forward(&input, n)?.squeeze(0)?;
        Ok(logits.to_vec1::<f32>()?)
    }

    /// Logits of the token after `prompt` (one forward pass, no sampling).
    pub fn next_token_logits(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        self.check_prompt(prompt, 1)?;
        self.weights.clear();
        let input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        let logits = self.weights.forward(&input, 0)?.squeeze(0)?;
        self.weights.clear();
        Ok(logits.to_vec1::<f32>()?)
    }

    pub(crate) fn check_prompt(&self, prompt: &[u32], max_new: usize) -> Result<()> {
        if prompt.is_empty() {
            return Err(EngineError::InvalidInput("the prompt is empty".into()));
        }
        if prompt.len() + max_new > self.context_length {
            return Err(EngineError::InputTooLong {
                index: 0,
                tokens: prompt.len() + max_new,
                limit: self.context_length,
            });
        }
        Ok(())
    }

    /// The model's vocabulary for structured output (token bytes and llguidance's parser factory),
    /// built on the first call and kept for the model's lifetime.
    pub fn constraint_vocab(&mut self) -> Result<Arc<ConstraintVocab>> {
        if let Some(v) = &self.constraint_vocab {
            return Ok(v.clone());
        }
        let start = std::time::Instant::now();
        let vocab = Arc::new(
            ConstraintVocab::new(&self.tokenizer, &self.eos_ids)
                .map_err(|e| EngineError::invalid_model(&self.path, e.to_string()))?,
        );
        tracing::debug!(
            model = %self.path.display(),
            took_ms = start.elapsed().as_millis() as u64,
            "built the structured-output token trie"
        );
        self.constraint_vocab = Some(vocab.clone());
        Ok(vocab)
    }

    /// A fresh decoder state for one generation under `constraint`.
    pub fn constrained_decoder(
        &mut self,
        constraint: &OutputConstraint,
    ) -> Result<ConstrainedDecoder> {
        self.constraint_vocab()?
            .decoder(constraint)
            .map_err(constraint_err)
    }

    /// Times a greedy run: the prompt in one forward pass (prefill), then exactly `steps` more
    /// tokens one at a time (decode), ignoring end-of-sequence tokens so runs are comparable.
    /// What the generation benchmark and the profiler measure.
    pub fn time_greedy(&mut self, prompt: &[u32], steps: usize) -> Result<GenTiming> {
        self.check_prompt(prompt, steps.max(1))?;
        self.weights.clear();
        let mut sampler = LogitsProcessor::from_sampling(0, Sampling::ArgMax);
        let start = std::time::Instant::now();
        let input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        let logits = self.weights.forward(&input, 0)?.squeeze(0)?;
        let mut next = sampler.sample(&logits)?;
        let prefill = start.elapsed();
        let start = std::time::Instant::now();
        let mut tokens = vec![next];
        for step in 0..steps {
            let input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
            let logits = self
                .weights
                .forward(&input, prompt.len() + step)?
                .squeeze(0)?;
            next = sampler.sample(&logits)?;
            tokens.push(next);
        }
        let decode = start.elapsed();
        self.weights.clear();
        Ok(GenTiming {
            prompt_tokens: prompt.len(),
            prefill,
            decode_tokens: steps,
            decode,
            tokens,
        })
    }

    /// Generates from `prompt` token ids. `on_text` receives each newly released piece of text and
    /// returns `false` to stop early.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let max_new = opts
            .max_tokens
            .min(self.context_length.saturating_sub(prompt.len()));
        self.check_prompt(prompt, 1)?;
        if opts.temperature < 0.0 || !opts.temperature.is_finite() {
            return Err(EngineError::InvalidInput("temperature must be >= 0".into()));
        }
        if let Some(p) = opts.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(EngineError::InvalidInput("top_p must be in (0, 1]".into()));
            }
        }
        let sampling = match (opts.temperature, opts.top_p) {
            // Near 0 the logits divided by the temperature overflow f32, and a nucleus that
            // rounds to 0 in f32 keeps no token: both mean the most probable token.
            (t, _) if t < GREEDY_BELOW => Sampling::ArgMax,
            (_, Some(p)) if p as f32 <= 0.0 => Sampling::ArgMax,
            (t, Some(p)) if p < 1.0 => Sampling::TopP { p, temperature: t },
            (t, _) => Sampling::All { temperature: t },
        };
        let mut sampler = LogitsProcessor::from_sampling(opts.seed, sampling);
        let mut stops = StopMatcher::new(&opts.stop);
        let mut constraint = match &opts.constraint {
            Some(c) => Some(self.constrained_decoder(c)?),
            None => None,
        };
        self.weights.clear();
        let mut generated: Vec<u32> = Vec::new();
        let mut finish = FinishReason::Length;
        let mut input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        let mut pos = 0;
        while generated.len() < max_new {
            let logits = self.weights.forward(&input, pos)?.squeeze(0)?;
            pos += input.dim(1)?;
            let logits = if opts.repeat_penalty != 1.0 {
                let start = generated.len().saturating_sub(64);
                candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    opts.repeat_penalty,
                    &generated[start..],
                )?
            } else {
                logits
            };
            let logits = match constraint.as_mut() {
                Some(c) => {
                    let mut v = logits.to_vec1::<f32>()?;
                    c.mask_logits(&mut v).map_err(constraint_err)?;
                    Tensor::new(v, &self.device)?
                }
                None => logits,
            };
            let next = sampler.sample(&logits)?;
            // Under a constraint, end-of-sequence is only allowed once the output is complete.
            if self.eos_ids.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            if let Some(c) = constraint.as_mut() {
                c.commit(next).map_err(constraint_err)?;
            }
            generated.push(next);
            let (piece, hit) = stops.update(&self.decode(&generated)?);
            if !piece.is_empty() && !on_text(&piece) {
                finish = FinishReason::Cancelled;
                break;
            }
            if hit {
                finish = FinishReason::Stop;
                break;
            }
            // A complete structured output allows nothing but end-of-sequence: stop without
            // another forward pass.
            if constraint.as_ref().is_some_and(|c| c.is_complete()) {
                finish = FinishReason::Stop;
                break;
            }
            input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
        }
        self.weights.clear();
        if finish != FinishReason::Cancelled {
            let rest = stops.finish();
            if !rest.is_empty() {
                on_text(&rest);
            }
        }
        Ok(Generation {
            text: stops.text().to_string(),
            token_ids: generated,
            prompt_tokens: prompt.len(),
            finish_reason: finish,
        })
    }
}

/// Constraint failures inside a generation: a schema llguidance rejects only when the parser is
/// built is the caller's input; anything else is internal.
fn constraint_err(e: ConstraintError) -> EngineError {
    match e {
        ConstraintError::InvalidSchema(m) => EngineError::InvalidParameter {
            param: "response_format",
            message: m,
        },
        other => EngineError::internal(other.to_string()),
    }
}
