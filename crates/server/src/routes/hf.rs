//! Hugging Face Inference API compatible routes, so `huggingface_hub.InferenceClient` (and the
//! LangChain and LlamaIndex integrations built on it) work unchanged. The client posts
//! `{"inputs": ...}` to the endpoint URL itself:
//!
//! - `POST /` is the default `embed` model, as a text-embeddings-inference server is:
//!   feature-extraction, or sentence-similarity when `inputs` is `{source_sentence, sentences}`.
//! - `POST /models/{name}` is any configured model, by its task: an embedding model as above, a
//!   `classify` (or `nli` / `rerank` cross-encoder) model text-classification, an `entities` model
//!   token-classification, a generative model text-generation (TGI's shapes, SSE streaming).
//!
//! A request whose shape belongs to another task than the model's is a 422 naming the field.
//! The shapes follow `huggingface_hub` 2.4.0 (`inference/_client.py`, `_providers/hf_inference.py`
//! and the generated types) and TGI's. The sentence-similarity core also serves TEI's
//! `POST /similarity` (see `tei.rs`).

use super::encode::{entity_outputs, ranked};
use super::generate::{generate_once, sse_response, sse_stream, start, Sampling};
use super::respond;
use crate::embed_input::{prepare, prompt_for, Side};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::pipeline::{postprocess, run_encoder, Input, RunOpts};
use crate::state::{AppState, Served};
use crate::types::{check_count, LabelScore, Texts};
use axum::extract::{Path, State};
use axum::response::Response;
use nlpd_engine::generate::{FinishReason, GenerateOptions, Generation};
use nlpd_engine::{Aggregation, EncoderOp, EntityOutput, OpOutput};
use nlpd_runtime::{GenInput, ModelKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

/// TGI's default `max_new_tokens`.
const DEFAULT_MAX_NEW_TOKENS: usize = 100;

/// `POST /`: the default embedding model (feature-extraction or sentence-similarity).
pub async fn root(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let name = st
        .registry
        .default_for("embed")
        .map(str::to_string)
        .ok_or_else(|| ApiError::NotFound {
            message: "no embedding model is configured: `POST /` serves the default `embed` model \
                      (feature-extraction, sentence-similarity); send other tasks to \
                      `POST /models/{name}`"
                .into(),
            param: Some("model".into()),
        })?;
    embedding(&st, &name, object(body)?).await
}

/// `POST /models/{name}`: the named model, by its task.
pub async fn model(
    State(st): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let Some(spec) = st.registry.spec(&name) else {
        return Err(ApiError::NotFound {
            message: format!("no model named `{name}` (see GET /v1/models)"),
            param: Some("model".into()),
        });
    };
    let task = if spec.kind == ModelKind::Generator {
        "generate"
    } else {
        spec.task.as_str()
    };
    let body = object(body)?;
    match task {
        "embed" => embedding(&st, &name, body).await,
        "entities" => token_classification(&st, &name, body).await,
        "generate" => text_generation(&st, &name, body).await,
        // classify, and the cross-encoders of nli and rerank: their labels' scores.
        _ => text_classification(&st, &name, body).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Request plumbing
// ---------------------------------------------------------------------------------------------

fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::BadRequest {
            message: "the request body must be a JSON object with `inputs`".into(),
            param: None,
        }),
    }
}

/// Deserializes the body, naming the failing field (`inputs[2]`, `parameters.top_k`) like
/// [`crate::json::parse`] does for a body read straight from bytes.
fn from_body<T: DeserializeOwned>(body: Map<String, Value>) -> Result<T, ApiError> {
    crate::json::from_value(Value::Object(body))
}

/// What `inputs` looks like, to tell the tasks' payloads apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{source_sentence, sentences}`: sentence-similarity.
    Similarity,
    /// Another object (text-classification's `{text, text_pair}`).
    Object,
    /// A list.
    List,
    /// Anything else (a string, or a wrong type left to the task's own parsing).
    Other,
}

fn shape(body: &Map<String, Value>) -> Shape {
    match body.get("inputs") {
        Some(Value::Object(o))
            if o.contains_key("source_sentence") || o.contains_key("sentences") =>
        {
            Shape::Similarity
        }
        Some(Value::Object(_)) => Shape::Object,
        Some(Value::Array(_)) => Shape::List,
        _ => Shape::Other,
    }
}

/// 422 for a payload of another task than the model's.
fn wrong_task(name: &str, kind: &str, accepts: &str, got: &str) -> ApiError {
    ApiError::unprocessable(
        "inputs",
        format!("model `{name}` is {kind} model: it takes {accepts}, not {got}"),
    )
}

/// `truncation_direction`: which end of a long input is cut.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TruncationDirection {
    #[serde(rename = "left", alias = "Left")]
    Left,
    #[serde(rename = "right", alias = "Right")]
    Right,
}

/// The texts as embedding model `name` gets them, as on `/v1/embed`: the named prompt (else the
/// model's default prompt) before each, and a long input cut at its start for `left`. `at`
/// prefixes the field names (`parameters.` for similarity); empty inputs are a 422 naming
/// `inputs[i]`.
pub(crate) async fn embed_texts(
    st: &AppState,
    name: &str,
    texts: Vec<String>,
    prompt_name: Option<&str>,
    direction: Option<TruncationDirection>,
    at: &str,
) -> Result<Vec<String>, ApiError> {
    let prompt = prompt_for(st, name, prompt_name, None).map_err(|e| match e {
        ApiError::Unprocessable { message, .. } => {
            ApiError::unprocessable(&format!("{at}prompt_name"), message)
        }
        other => other,
    })?;
    let side = match direction {
        Some(TruncationDirection::Left) => Side::Start,
        _ => Side::End,
    };
    prepare(st, name, texts, prompt.as_deref(), side, "inputs").await
}

fn singles(texts: Vec<String>) -> Vec<Input> {
    texts.into_iter().map(|t| (t, None)).collect()
}

// ---------------------------------------------------------------------------------------------
// Embedding models: feature-extraction and sentence-similarity
// ---------------------------------------------------------------------------------------------

/// Feature-extraction: TEI's `/embed` options at the top level (as the client sends them).
#[derive(Deserialize)]
struct FeatureRequest {
    inputs: Texts,
    normalize: Option<bool>,
    truncate: Option<bool>,
    truncation_direction: Option<TruncationDirection>,
    prompt_name: Option<String>,
    dimensions: Option<usize>,
    encoding_format: Option<String>,
    /// Another task's parameters: refused (see [`embedding`]).
    parameters: Option<Value>,
    timeout_ms: Option<crate::types::TimeoutMs>,
    cache: Option<bool>,
}

async fn embedding(
    st: &AppState,
    name: &str,
    body: Map<String, Value>,
) -> Result<Response, ApiError> {
    if shape(&body) == Shape::Similarity {
        let req: SimilarityRequest = from_body(body)?;
        let (scores, served) = similarity(st, Some(name), req).await?;
        return Ok(respond(served, scores));
    }
    if shape(&body) == Shape::Object {
        return Err(wrong_task(
            name,
            "an embedding",
            "a text or a list of texts (feature-extraction) or `{source_sentence, sentences}` \
             (sentence-similarity)",
            "another object",
        ));
    }
    let req: FeatureRequest = from_body(body)?;
    if let Some(Value::Object(p)) = &req.parameters {
        if !p.is_empty() {
            let keys: Vec<&str> = p.keys().map(String::as_str).collect();
            return Err(ApiError::unprocessable(
                "parameters",
                format!(
                    "model `{name}` is an embedding model: feature-extraction takes its options \
                     at the top level, so `parameters` ({}) belong to another task; send that \
                     task to `POST /models/{{name}}` of a model that does it",
                    keys.join(", ")
                ),
            ));
        }
    }
    match req.encoding_format.as_deref() {
        None | Some("float") => {}
        Some("base64") => {
            return Err(ApiError::unprocessable(
                "encoding_format",
                "feature-extraction answers float arrays; `base64` is for `POST /v1/embeddings`",
            ))
        }
        Some(other) => {
            return Err(ApiError::bad(
                "encoding_format",
                format!("encoding_format must be `float` or `base64`, not `{other}`"),
            ))
        }
    }
    let texts = req.inputs.into_vec();
    check_count(texts.len(), "inputs", st.config.max_inputs_per_request)?;
    let texts = embed_texts(
        st,
        name,
        texts,
        req.prompt_name.as_deref(),
        req.truncation_direction,
        "",
    )
    .await?;
    let op = EncoderOp::Embed {
        normalize: req.normalize.unwrap_or(true),
        dimensions: req.dimensions,
    };
    let opts = RunOpts::new(
        req.truncate.unwrap_or(true),
        req.timeout_ms,
        req.cache.unwrap_or(true),
    );
    let mut run = run_encoder(st, Some(name), "embed", singles(texts), op, opts).await?;
    let vectors = run.take_embeddings()?;
    Ok(respond(run.served, vectors))
}

/// Sentence-similarity (the Inference API's and TEI's `/similarity`).
#[derive(Deserialize)]
pub struct SimilarityRequest {
    inputs: SimilarityInputs,
    parameters: Option<SimilarityParameters>,
    timeout_ms: Option<crate::types::TimeoutMs>,
    cache: Option<bool>,
}

#[derive(Deserialize)]
struct SimilarityInputs {
    source_sentence: String,
    sentences: Vec<String>,
}

#[derive(Deserialize, Default)]
struct SimilarityParameters {
    truncate: Option<bool>,
    truncation_direction: Option<TruncationDirection>,
    prompt_name: Option<String>,
}

/// The cosine similarity of `source_sentence` with each of `sentences` (normalized embeddings of
/// the named, or default, embedding model), in `sentences` order.
pub(crate) async fn similarity(
    st: &AppState,
    model: Option<&str>,
    req: SimilarityRequest,
) -> Result<(Vec<f32>, Served), ApiError> {
    let p = req.parameters.unwrap_or_default();
    let name = st.registry.resolve(model, "embed")?;
    let SimilarityInputs {
        source_sentence,
        sentences,
    } = req.inputs;
    if source_sentence.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "inputs.source_sentence",
            "`inputs.source_sentence` must be a non-empty string",
        ));
    }
    check_count(
        sentences.len(),
        "inputs.sentences",
        st.config.max_inputs_per_request,
    )?;
    if let Some(i) = sentences.iter().position(|s| s.trim().is_empty()) {
        return Err(ApiError::unprocessable(
            &format!("inputs.sentences[{i}]"),
            format!("`inputs.sentences[{i}]` must be a non-empty string"),
        ));
    }
    let mut texts = Vec::with_capacity(sentences.len() + 1);
    texts.push(source_sentence);
    texts.extend(sentences);
    let texts = embed_texts(
        st,
        &name,
        texts,
        p.prompt_name.as_deref(),
        p.truncation_direction,
        "parameters.",
    )
    .await
    .map_err(similarity_param)?;
    let op = EncoderOp::Embed {
        normalize: true,
        dimensions: None,
    };
    let opts = RunOpts::new(
        p.truncate.unwrap_or(true),
        req.timeout_ms,
        req.cache.unwrap_or(true),
    );
    let mut run = run_encoder(st, Some(&name), "embed", singles(texts), op, opts)
        .await
        .map_err(similarity_param)?;
    let vectors = run.take_embeddings()?;
    let Some((source, others)) = vectors.split_first() else {
        return Err(ApiError::Internal {
            message: "the embedding model returned no vectors".into(),
        });
    };
    let scores = others
        .iter()
        .map(|v| {
            let dot: f32 = v.iter().zip(source).map(|(a, b)| a * b).sum();
            dot.clamp(-1.0, 1.0)
        })
        .collect();
    Ok((scores, run.served))
}

/// The engine names inputs by their place in the list it got (`inputs[0]` is the source
/// sentence): back to the request's fields.
fn similarity_param(e: ApiError) -> ApiError {
    let rename = |param: Option<String>| {
        let i = param
            .as_deref()
            .and_then(|p| p.strip_prefix("inputs["))
            .and_then(|p| p.strip_suffix(']'))
            .and_then(|i| i.parse::<usize>().ok());
        match i {
            Some(0) => Some("inputs.source_sentence".to_string()),
            Some(i) => Some(format!("inputs.sentences[{}]", i - 1)),
            None => param,
        }
    };
    match e {
        ApiError::Unprocessable { message, param } => ApiError::Unprocessable {
            message,
            param: rename(param),
        },
        ApiError::BadRequest { message, param } => ApiError::BadRequest {
            message,
            param: rename(param),
        },
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Text classification
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ClassificationRequest {
    inputs: ClassificationInputs,
    parameters: Option<ClassificationParameters>,
    truncate: Option<bool>,
    timeout_ms: Option<crate::types::TimeoutMs>,
    cache: Option<bool>,
}

/// A text, `{text, text_pair}`, or a list of those.
#[derive(Deserialize)]
#[serde(untagged)]
enum ClassificationInputs {
    One(ClassificationInput),
    Many(Vec<ClassificationInput>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ClassificationInput {
    Text(String),
    Pair {
        text: String,
        text_pair: Option<String>,
    },
}

impl ClassificationInput {
    fn into_input(self) -> Input {
        match self {
            ClassificationInput::Text(t) => (t, None),
            ClassificationInput::Pair { text, text_pair } => (text, text_pair),
        }
    }
}

#[derive(Deserialize, Default)]
struct ClassificationParameters {
    top_k: Option<usize>,
    function_to_apply: Option<Transform>,
}

/// `function_to_apply`: how logits become scores (default: the model's own, as on `/v1/classify`).
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Transform {
    Softmax,
    Sigmoid,
    None,
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

fn sigmoid(logits: &[f32]) -> Vec<f32> {
    logits.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect()
}

async fn text_classification(
    st: &AppState,
    name: &str,
    body: Map<String, Value>,
) -> Result<Response, ApiError> {
    if shape(&body) == Shape::Similarity {
        return Err(wrong_task(
            name,
            "a classification",
            "a text, `{text, text_pair}` or a list of them (text-classification)",
            "`{source_sentence, sentences}` (sentence-similarity)",
        ));
    }
    let req: ClassificationRequest = from_body(body)?;
    let p = req.parameters.unwrap_or_default();
    if p.top_k == Some(0) {
        return Err(ApiError::bad(
            "parameters.top_k",
            "parameters.top_k must be at least 1",
        ));
    }
    let inputs: Vec<Input> = match req.inputs {
        ClassificationInputs::One(x) => vec![x.into_input()],
        ClassificationInputs::Many(v) => v.into_iter().map(|x| x.into_input()).collect(),
    };
    check_count(inputs.len(), "inputs", st.config.max_inputs_per_request)?;
    let opts = RunOpts::new(
        req.truncate.unwrap_or(true),
        req.timeout_ms,
        req.cache.unwrap_or(true),
    );
    let run = run_encoder(
        st,
        Some(name),
        "classify",
        inputs,
        EncoderOp::Classify,
        opts,
    )
    .await?;
    let labels = run.handle.info.labels.clone();
    let results: Vec<Vec<LabelScore>> = postprocess(st, &run.served, || {
        run.outputs
            .iter()
            .map(|o| match o {
                OpOutput::Classification(c) => {
                    let scores = match p.function_to_apply {
                        None => c.scores.clone(),
                        Some(Transform::Softmax) => softmax(&c.logits),
                        Some(Transform::Sigmoid) => sigmoid(&c.logits),
                        Some(Transform::None) => c.logits.clone(),
                    };
                    ranked(&labels, &scores, p.top_k)
                }
                _ => Vec::new(),
            })
            .collect()
    });
    // One list per input, also for a single input: the client reads `[[{label, score}, ...]]`.
    Ok(respond(run.served, results))
}

// ---------------------------------------------------------------------------------------------
// Token classification
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct TokenRequest {
    inputs: Texts,
    parameters: Option<TokenParameters>,
    truncate: Option<bool>,
    timeout_ms: Option<crate::types::TimeoutMs>,
    cache: Option<bool>,
}

#[derive(Deserialize, Default)]
struct TokenParameters {
    aggregation_strategy: Option<Strategy>,
    ignore_labels: Option<Vec<String>>,
    stride: Option<usize>,
}

/// `aggregation_strategy`. nlpd groups word pieces into words and BIO tags into spans one way:
/// `simple`, `first`, `average` and `max` all give those spans.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Strategy {
    None,
    Simple,
    First,
    Average,
    Max,
}

#[derive(Serialize)]
struct EntityGroup {
    entity_group: String,
    score: f32,
    word: String,
    start: usize,
    end: usize,
}

#[derive(Serialize)]
struct TokenEntity {
    entity: String,
    score: f32,
    word: String,
    start: usize,
    end: usize,
}

#[derive(Serialize)]
#[serde(untagged)]
enum TokenResult {
    Groups(Vec<EntityGroup>),
    Tokens(Vec<TokenEntity>),
}

async fn token_classification(
    st: &AppState,
    name: &str,
    body: Map<String, Value>,
) -> Result<Response, ApiError> {
    if matches!(shape(&body), Shape::Similarity | Shape::Object) {
        return Err(wrong_task(
            name,
            "a token-classification",
            "a text or a list of texts",
            "an object",
        ));
    }
    let req: TokenRequest = from_body(body)?;
    let p = req.parameters.unwrap_or_default();
    if p.stride.is_some_and(|s| s > 0) {
        return Err(ApiError::unprocessable(
            "parameters.stride",
            "`stride` is not supported: nlpd does not split a long text into overlapping chunks; \
             it cuts it at the model's limit (or refuses it with `truncate: false`)",
        ));
    }
    let strategy = p.aggregation_strategy.unwrap_or(Strategy::Simple);
    let agg = match strategy {
        Strategy::None => Aggregation::None,
        _ => Aggregation::Simple,
    };
    let ignore = p.ignore_labels.unwrap_or_else(|| vec!["O".to_string()]);
    let single = req.inputs.is_one();
    let texts = req.inputs.into_vec();
    check_count(texts.len(), "inputs", st.config.max_inputs_per_request)?;
    let opts = RunOpts::new(
        req.truncate.unwrap_or(true),
        req.timeout_ms,
        req.cache.unwrap_or(true),
    );
    let (outputs, served) = entity_outputs(st, Some(name), &texts, agg, opts).await?;
    let mut results: Vec<TokenResult> = outputs
        .into_iter()
        .map(|o| match o {
            EntityOutput::Spans(spans) => TokenResult::Groups(
                spans
                    .into_iter()
                    .filter(|e| !ignore.contains(&e.label))
                    .map(|e| EntityGroup {
                        entity_group: e.label,
                        score: e.score,
                        word: e.text,
                        start: e.start,
                        end: e.end,
                    })
                    .collect(),
            ),
            EntityOutput::Tokens(tokens) => TokenResult::Tokens(
                tokens
                    .into_iter()
                    .filter(|t| !ignore.contains(&t.label))
                    .map(|t| TokenEntity {
                        entity: t.label,
                        score: t.score,
                        word: t.text,
                        start: t.start,
                        end: t.end,
                    })
                    .collect(),
            ),
        })
        .collect();
    if single {
        if let Some(one) = results.pop() {
            return Ok(respond(served, one));
        }
    }
    Ok(respond(served, results))
}

// ---------------------------------------------------------------------------------------------
// Text generation (TGI's shapes)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct GenerationRequest {
    inputs: String,
    parameters: Option<GenerationParameters>,
    stream: Option<bool>,
    timeout_ms: Option<crate::types::TimeoutMs>,
    cache: Option<bool>,
}

/// TGI's `parameters` (`TextGenerationInputGenerateParameters`).
#[derive(Deserialize, Default)]
struct GenerationParameters {
    adapter_id: Option<String>,
    best_of: Option<u64>,
    decoder_input_details: Option<bool>,
    details: Option<bool>,
    do_sample: Option<bool>,
    frequency_penalty: Option<f32>,
    grammar: Option<Value>,
    max_new_tokens: Option<usize>,
    repetition_penalty: Option<f32>,
    return_full_text: Option<bool>,
    seed: Option<u64>,
    #[serde(alias = "stop_sequences")]
    stop: Option<Vec<String>>,
    temperature: Option<f64>,
    top_k: Option<u64>,
    top_n_tokens: Option<u64>,
    top_p: Option<f64>,
    truncate: Option<u64>,
    typical_p: Option<f64>,
    watermark: Option<bool>,
}

/// The generation options of TGI's parameters, and the seed to report (`None` when greedy).
/// Sampling is on, as in TGI, with `do_sample` or any `temperature` other than 1 or `top_p` below 1.
/// `limit` is the server's `--max-new-tokens`: TGI's default is cut to it, more is refused.
fn generation_options(
    p: &GenerationParameters,
    limit: usize,
) -> Result<(GenerateOptions, Option<u64>), ApiError> {
    let bad = |field: &str, message: &str| {
        ApiError::bad(
            &format!("parameters.{field}"),
            format!("`{field}` {message}"),
        )
    };
    let max_tokens = super::generate::new_tokens(p.max_new_tokens, DEFAULT_MAX_NEW_TOKENS, limit)
        .map_err(|m| bad("max_new_tokens", &m))?;
    if p.temperature.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
        return Err(bad("temperature", "must be strictly positive"));
    }
    if p.top_p.is_some_and(|x| !(x > 0.0 && x <= 1.0)) {
        return Err(bad("top_p", "must be in (0, 1]"));
    }
    if p.typical_p.is_some_and(|x| !(x > 0.0 && x <= 1.0)) {
        return Err(bad("typical_p", "must be in (0, 1]"));
    }
    if p.repetition_penalty
        .is_some_and(|r| !(r > 0.0 && r.is_finite()))
    {
        return Err(bad("repetition_penalty", "must be strictly positive"));
    }
    if p.frequency_penalty
        .is_some_and(|f| !(-2.0..=2.0).contains(&f))
    {
        return Err(bad("frequency_penalty", "must be between -2 and 2"));
    }
    if p.best_of == Some(0) {
        return Err(bad("best_of", "must be at least 1"));
    }
    // What the generator cannot do: the answer huggingface_hub's InferenceClient knows from
    // transformers-served models; it drops these parameters (with a warning) and retries.
    let unused: Vec<&str> = [
        ("adapter_id", p.adapter_id.is_some()),
        ("best_of", p.best_of.is_some_and(|n| n > 1)),
        (
            "decoder_input_details",
            p.decoder_input_details == Some(true),
        ),
        ("grammar", p.grammar.as_ref().is_some_and(|g| !g.is_null())),
        ("top_k", p.top_k.is_some_and(|k| k > 0)),
        ("top_n_tokens", p.top_n_tokens.is_some_and(|n| n > 0)),
        ("truncate", p.truncate.is_some()),
        ("typical_p", p.typical_p.is_some_and(|x| x < 1.0)),
        ("watermark", p.watermark == Some(true)),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect();
    if let Some(first) = unused.first() {
        let list: Vec<String> = unused.iter().map(|k| format!("'{k}'")).collect();
        return Err(ApiError::bad(
            &format!("parameters.{first}"),
            format!(
                "The following `model_kwargs` are not used by the model: [{}] (nlpd's generator \
                 does not support them; leave them out)",
                list.join(", ")
            ),
        ));
    }
    let sampling = p.do_sample == Some(true)
        || p.temperature.is_some_and(|t| t != 1.0)
        || p.top_p.is_some_and(|x| x < 1.0);
    let seed = p.seed.unwrap_or_else(random_seed);
    let mut repeat_penalty = p.repetition_penalty.unwrap_or(1.0);
    if let Some(f) = p.frequency_penalty {
        // Additive penalties map onto the multiplicative one, as on the OpenAI routes.
        repeat_penalty *= 1.0 + f.max(0.0) / 2.0;
    }
    let opts = GenerateOptions {
        max_tokens,
        temperature: if sampling {
            p.temperature.unwrap_or(1.0)
        } else {
            0.0
        },
        top_p: if sampling { p.top_p } else { None },
        seed,
        stop: p.stop.clone().unwrap_or_default(),
        repeat_penalty,
        constraint: None,
    };
    Ok((opts, sampling.then_some(seed)))
}

/// A fresh seed for a sampled generation whose request set none (TGI reports it in `details`).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

/// TGI's finish reasons. The generator does not tell an end-of-sequence token from a stop
/// string: both are `eos_token`.
fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "eos_token",
        FinishReason::Length | FinishReason::Cancelled => "length",
    }
}

async fn text_generation(
    st: &AppState,
    name: &str,
    body: Map<String, Value>,
) -> Result<Response, ApiError> {
    if shape(&body) != Shape::Other {
        return Err(wrong_task(
            name,
            "a generative",
            "one prompt string (text-generation)",
            "a list or an object",
        ));
    }
    let req: GenerationRequest = from_body(body)?;
    if req.inputs.is_empty() {
        return Err(ApiError::unprocessable(
            "inputs",
            "`inputs` must not be empty",
        ));
    }
    let p = req.parameters.unwrap_or_default();
    let (opts, reported_seed) = generation_options(&p, st.config.max_new_tokens)?;
    let prefix = if p.return_full_text == Some(true) {
        req.inputs.clone()
    } else {
        String::new()
    };
    let cache = req.cache.unwrap_or(true);
    if req.stream != Some(true) {
        let sampling = Sampling::chosen(p.seed, req.timeout_ms, cache);
        let input = GenInput::Text(req.inputs);
        let (g, served) =
            generate_once(st, Some(name), input, opts, "completion", &sampling).await?;
        let mut out = json!({ "generated_text": format!("{prefix}{}", g.text) });
        if p.details == Some(true) {
            out["details"] = json!({
                "finish_reason": finish_reason(g.finish_reason),
                "generated_tokens": g.completion_tokens,
                "seed": reported_seed,
                "prefill": [],
                "tokens": [],
            });
        }
        return Ok(respond(served, json!([out])));
    }
    let input = GenInput::Text(req.inputs);
    let (rx, served) = start(st, Some(name), input, opts, "completion", req.timeout_ms).await?;
    let index = AtomicUsize::new(0);
    let chunk = move |text: Option<&str>, done: Option<&Generation>| {
        let i = index.fetch_add(1, Ordering::Relaxed);
        match (text, done) {
            // The generator streams text pieces, not token ids or their log-probabilities.
            (Some(t), _) => json!({
                "index": i,
                "token": {"id": 0, "text": t, "logprob": null, "special": false},
                "generated_text": null,
                "details": null,
            }),
            (None, Some(g)) => json!({
                "index": i,
                "token": {
                    "id": g.token_ids.last().copied().unwrap_or(0),
                    "text": "",
                    "logprob": null,
                    "special": true,
                },
                "generated_text": format!("{prefix}{}", g.text),
                "details": {
                    "finish_reason": finish_reason(g.finish_reason),
                    "generated_tokens": g.token_ids.len(),
                    "seed": reported_seed,
                    "input_length": g.prompt_tokens,
                },
            }),
            _ => json!({}),
        }
    };
    // TGI ends the stream without a `[DONE]` marker.
    Ok(sse_response(st, served, sse_stream(rx, chunk, false, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> GenerationParameters {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn greedy_unless_tgi_would_sample() {
        let (o, seed) = generation_options(&params(json!({})), 4096).unwrap();
        assert_eq!(o.temperature, 0.0);
        assert_eq!(o.max_tokens, DEFAULT_MAX_NEW_TOKENS);
        assert_eq!(seed, None);
        let (o, seed) =
            generation_options(&params(json!({"temperature": 0.7, "seed": 5})), 4096).unwrap();
        assert_eq!(o.temperature, 0.7);
        assert_eq!((o.seed, seed), (5, Some(5)));
        let (o, _) = generation_options(&params(json!({"do_sample": true})), 4096).unwrap();
        assert_eq!(o.temperature, 1.0);
        let (o, _) = generation_options(&params(json!({"top_p": 0.9})), 4096).unwrap();
        assert_eq!((o.temperature, o.top_p), (1.0, Some(0.9)));
    }

    #[test]
    fn unsupported_parameters_use_the_message_the_client_retries_on() {
        let e = generation_options(
            &params(json!({"top_k": 5, "watermark": true, "typical_p": 0.95})),
            4096,
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
        let m = e.message();
        assert!(
            m.starts_with("The following `model_kwargs` are not used by the model: ['top_k', 'typical_p', 'watermark']"),
            "{m}"
        );
        // Neutral values are fine.
        generation_options(
            &params(json!({"top_k": 0, "watermark": false, "typical_p": 1.0, "best_of": 1})),
            4096,
        )
        .unwrap();
    }

    #[test]
    fn bad_values_name_the_field() {
        for (body, field) in [
            (json!({"max_new_tokens": 0}), "parameters.max_new_tokens"),
            // Beyond --max-new-tokens (4096 here).
            (json!({"max_new_tokens": 4097}), "parameters.max_new_tokens"),
            (json!({"temperature": 0.0}), "parameters.temperature"),
            (json!({"top_p": 1.5}), "parameters.top_p"),
            (
                json!({"repetition_penalty": -1.0}),
                "parameters.repetition_penalty",
            ),
        ] {
            let e = generation_options(&params(body), 4096).unwrap_err();
            assert!(
                matches!(&e, ApiError::BadRequest { param: Some(p), .. } if p == field),
                "{e:?}"
            );
        }
    }

    #[test]
    fn transforms() {
        let s = softmax(&[1.0, 1.0]);
        assert!((s[0] - 0.5).abs() < 1e-6 && (s[1] - 0.5).abs() < 1e-6);
        assert!((sigmoid(&[0.0])[0] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn similarity_params_are_renamed() {
        let e = similarity_param(ApiError::unprocessable("inputs[0]", "x"));
        assert!(
            matches!(e, ApiError::Unprocessable { param: Some(p), .. } if p == "inputs.source_sentence")
        );
        let e = similarity_param(ApiError::unprocessable("inputs[3]", "x"));
        assert!(
            matches!(e, ApiError::Unprocessable { param: Some(p), .. } if p == "inputs.sentences[2]")
        );
    }
}
