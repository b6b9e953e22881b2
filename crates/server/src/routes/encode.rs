//! Encoder routes: embeddings (native and OpenAI), classification, entities, NLI, rerank,
//! tokenization, combined analysis.

use super::respond;
use crate::embed_input::{prepare, prompt_for, Side};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::pipeline::{postprocess, run_encoder, run_encoder_as, tokenize_texts, Input, RunOpts};
use crate::state::{AppState, Served};
use crate::types::{check_count, ClassifyInputs, LabelScore, Texts, Usage};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use nlpd_engine::{entities_of, Aggregation, EncoderOp, EntityOutput, OpOutput, TokenPredictions};
use nlpd_runtime::evidence::report::NliOut;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

fn singles(v: Vec<String>) -> Vec<Input> {
    v.into_iter().map(|t| (t, None)).collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    model: Option<String>,
    inputs: Texts,
    #[serde(default = "crate::types::default_true")]
    normalize: bool,
    #[serde(default = "crate::types::default_true")]
    truncate: bool,
    /// Which end of an over-long input is cut: `right` (the default) or `left` (keep the end).
    truncation_direction: Option<String>,
    dimensions: Option<usize>,
    /// One of the model's prompts (`config_sentence_transformers.json`), put before each input.
    prompt_name: Option<String>,
    /// A prompt's text, put before each input (`""`: none, not even the model's default).
    prompt: Option<String>,
    timeout_ms: Option<crate::types::TimeoutMs>,
    /// `false`: neither read nor fill the result cache.
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

/// `truncation_direction` (TEI's name and values): `right` keeps the start, `left` the end.
fn truncation_side(direction: Option<&str>) -> Result<Side, ApiError> {
    match direction.map(str::to_ascii_lowercase).as_deref() {
        None | Some("right") => Ok(Side::End),
        Some("left") => Ok(Side::Start),
        Some(_) => Err(ApiError::bad(
            "truncation_direction",
            format!(
                "truncation_direction must be `right` or `left`, not `{}`",
                direction.unwrap_or_default()
            ),
        )),
    }
}

pub async fn embed(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> Result<Response, ApiError> {
    let texts = req.inputs.into_vec();
    check_count(texts.len(), "inputs", st.config.max_inputs_per_request)?;
    let side = truncation_side(req.truncation_direction.as_deref())?;
    let name = st.registry.resolve(req.model.as_deref(), "embed")?;
    let prompt = prompt_for(
        &st,
        &name,
        req.prompt_name.as_deref(),
        req.prompt.as_deref(),
    )?;
    let texts = prepare(&st, &name, texts, prompt.as_deref(), side, "inputs").await?;
    let op = EncoderOp::Embed {
        normalize: req.normalize,
        dimensions: req.dimensions,
    };
    let mut run = run_encoder(
        &st,
        Some(&name),
        "embed",
        singles(texts),
        op,
        RunOpts::new(req.truncate, req.timeout_ms, req.cache),
    )
    .await?;
    let embeddings = run.take_embeddings()?;
    Ok(respond(run.served, EmbedResponse { embeddings }))
}

/// Serialized directly (not through `json!`) so floats keep their short f32 form.
#[derive(Serialize)]
struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct OpenAiEmbedding {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
struct OpenAiEmbeddingsResponse {
    object: &'static str,
    data: Vec<OpenAiEmbedding>,
    model: String,
    usage: Usage,
}

/// OpenAI `input`: text, texts, or token ids (refused: nlpd tokenizes itself).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum OpenAiInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<Value>),
}

#[derive(Deserialize)]
pub struct OpenAiEmbeddingsRequest {
    model: Option<String>,
    input: OpenAiInput,
    encoding_format: Option<String>,
    dimensions: Option<usize>,
    #[allow(dead_code)]
    user: Option<String>,
    /// nlpd: one of the model's prompts, put before each input.
    prompt_name: Option<String>,
    /// nlpd: a prompt's text, put before each input (`""`: none).
    prompt: Option<String>,
    /// `false`: neither read nor fill the result cache.
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

pub async fn openai_embeddings(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<OpenAiEmbeddingsRequest>,
) -> Result<Response, ApiError> {
    let texts = match req.input {
        OpenAiInput::One(s) => vec![s],
        OpenAiInput::Many(v) => v,
        OpenAiInput::Tokens(_) => {
            return Err(ApiError::bad(
                "input",
                "token-id inputs are not supported: send text",
            ))
        }
    };
    check_count(texts.len(), "input", st.config.max_inputs_per_request)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "encoding_format",
                format!("encoding_format must be `float` or `base64`, not `{other}`"),
            ))
        }
    };
    // OpenAI clients send their own model names: one this server does not have means the default.
    let model = req.model.filter(|m| st.registry.spec(m).is_some());
    let name = st.registry.resolve(model.as_deref(), "embed")?;
    let prompt = prompt_for(
        &st,
        &name,
        req.prompt_name.as_deref(),
        req.prompt.as_deref(),
    )?;
    let texts = prepare(&st, &name, texts, prompt.as_deref(), Side::End, "input")
        .await
        .map_err(|e| crate::embed_input::rename_inputs(e, "input"))?;
    let op = EncoderOp::Embed {
        normalize: true,
        dimensions: req.dimensions,
    };
    let mut run = run_encoder(
        &st,
        Some(&name),
        "embed",
        singles(texts),
        op,
        RunOpts::new(true, None, req.cache),
    )
    .await?;
    let tokens = run.tokens();
    let vectors = run.take_embeddings()?;
    let data: Vec<OpenAiEmbedding> = postprocess(&st, &run.served, || {
        vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let embedding = if base64 {
                    EmbeddingValue::Base64(crate::embedding_types::base64_f32(&v))
                } else {
                    EmbeddingValue::Float(v)
                };
                OpenAiEmbedding {
                    object: "embedding",
                    index: i,
                    embedding,
                }
            })
            .collect()
    });
    let model_name = run.served.model.clone();
    Ok(respond(
        run.served,
        OpenAiEmbeddingsResponse {
            object: "list",
            data,
            model: model_name,
            usage: Usage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    model: Option<String>,
    inputs: ClassifyInputs,
    top_k: Option<usize>,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default = "crate::types::default_true")]
    truncate: bool,
    timeout_ms: Option<crate::types::TimeoutMs>,
    /// `false`: neither read nor fill the result cache.
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

/// Label/score lists sorted by score, highest first.
pub(crate) fn ranked(labels: &[String], scores: &[f32], top_k: Option<usize>) -> Vec<LabelScore> {
    let mut v: Vec<LabelScore> = labels
        .iter()
        .zip(scores)
        .map(|(l, s)| LabelScore {
            label: l.clone(),
            score: *s,
        })
        .collect();
    v.sort_by(|a, b| b.score.total_cmp(&a.score));
    if let Some(k) = top_k {
        v.truncate(k);
    }
    v
}

pub async fn classify(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ClassifyRequest>,
) -> Result<Response, ApiError> {
    let inputs = req.inputs.into_vec();
    check_count(inputs.len(), "inputs", st.config.max_inputs_per_request)?;
    if req.top_k == Some(0) {
        return Err(ApiError::bad("top_k", "top_k must be at least 1"));
    }
    let run = run_encoder(
        &st,
        req.model.as_deref(),
        "classify",
        inputs,
        EncoderOp::Classify,
        RunOpts::new(req.truncate, req.timeout_ms, req.cache),
    )
    .await?;
    let labels = run.handle.info.labels.clone();
    let results: Vec<Vec<LabelScore>> = postprocess(&st, &run.served, || {
        run.outputs
            .iter()
            .map(|o| match o {
                OpOutput::Classification(c) => ranked(
                    &labels,
                    if req.raw_scores { &c.logits } else { &c.scores },
                    req.top_k,
                ),
                _ => Vec::new(),
            })
            .collect()
    });
    Ok(respond(run.served, json!({ "results": results })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitiesRequest {
    model: Option<String>,
    inputs: Texts,
    #[serde(default)]
    aggregation: Aggregation,
    #[serde(default = "crate::types::default_true")]
    truncate: bool,
    timeout_ms: Option<crate::types::TimeoutMs>,
    /// `false`: neither read nor fill the result cache.
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

pub async fn entities(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<EntitiesRequest>,
) -> Result<Response, ApiError> {
    let texts = req.inputs.into_vec();
    check_count(texts.len(), "inputs", st.config.max_inputs_per_request)?;
    let opts = RunOpts::new(req.truncate, req.timeout_ms, req.cache);
    let (outputs, served) =
        entity_outputs(&st, req.model.as_deref(), &texts, req.aggregation, opts).await?;
    let results: Vec<Value> = outputs
        .into_iter()
        .map(|o| match o {
            EntityOutput::Spans(s) => json!(s),
            EntityOutput::Tokens(t) => json!(t),
        })
        .collect();
    Ok(respond(served, json!({ "results": results })))
}

/// The entities of each text, in input order: spans (`Simple`) or labelled tokens (`None`). The
/// core of `/v1/entities`, shared with the Hugging Face route.
pub(crate) async fn entity_outputs(
    st: &AppState,
    model: Option<&str>,
    texts: &[String],
    agg: Aggregation,
    opts: RunOpts,
) -> Result<(Vec<EntityOutput>, Served), ApiError> {
    let run = run_encoder(
        st,
        model,
        "entities",
        singles(texts.to_vec()),
        EncoderOp::Tokens,
        opts,
    )
    .await?;
    let labels = run.handle.info.labels.clone();
    let outputs = postprocess(st, &run.served, || {
        run.outputs
            .into_iter()
            .zip(run.encodings)
            .zip(texts)
            .map(|((o, enc), text)| {
                let (OpOutput::TokenProbs(probs), Some(encoded)) = (o, enc) else {
                    return Err(ApiError::Internal {
                        message: "token classification returned no token predictions".into(),
                    });
                };
                let p = TokenPredictions { encoded, probs };
                Ok(entities_of(text, &p, &labels, agg))
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })?;
    Ok((outputs, run.served))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    model: Option<String>,
    inputs: Texts,
}

pub async fn tokenize(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Response, ApiError> {
    let texts = req.inputs.into_vec();
    let (tokens, served) = tokenize_texts(&st, req.model.as_deref(), &texts, "end").await?;
    Ok(respond(served, json!({ "tokens": tokens })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    model: Option<String>,
    query: String,
    documents: Vec<String>,
    top_n: Option<usize>,
    #[serde(default = "crate::types::default_true")]
    return_documents: bool,
    timeout_ms: Option<crate::types::TimeoutMs>,
    /// `false`: neither read nor fill the result cache.
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

/// Whether rerank with `model` (or the defaults) scores with a cross-encoder: a model whose task
/// is `rerank` or `classify`, or, when none is named, a configured `rerank` default. Otherwise
/// the embedding model's cosine.
pub fn rerank_is_cross(st: &AppState, model: Option<&str>) -> bool {
    match model {
        Some(m) => st
            .registry
            .spec(m)
            .map(|s| s.task == "rerank" || s.task == "classify")
            .unwrap_or(false),
        None => st.registry.default_for("rerank").is_some(),
    }
}

/// Scores of `documents` for `query`: a cross-encoder when one is configured for `rerank`
/// (raw relevance score), else the cosine of the embedding model's vectors.
pub async fn rerank_scores(
    st: &AppState,
    model: Option<&str>,
    query: &str,
    documents: &[String],
    opts: RunOpts,
) -> Result<(Vec<f32>, Served), ApiError> {
    if query.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "query",
            "`query` must be a non-empty string",
        ));
    }
    check_count(
        documents.len(),
        "documents",
        st.config.max_inputs_per_request,
    )?;
    if rerank_is_cross(st, model) {
        let inputs: Vec<Input> = documents
            .iter()
            .map(|d| (query.to_string(), Some(d.clone())))
            .collect();
        let run = run_encoder(st, model, "rerank", inputs, EncoderOp::Classify, opts).await?;
        let scores = run
            .outputs
            .iter()
            .map(|o| match o {
                OpOutput::Classification(c) => *c.logits.last().unwrap_or(&0.0),
                _ => 0.0,
            })
            .collect();
        return Ok((scores, run.served));
    }
    let mut texts = vec![query.to_string()];
    texts.extend(documents.iter().cloned());
    let op = EncoderOp::Embed {
        normalize: true,
        dimensions: None,
    };
    let mut run = run_encoder_as(st, model, "embed", "rerank", singles(texts), op, opts).await?;
    let vecs = run.take_embeddings()?;
    let q = &vecs[0];
    let scores = vecs[1..]
        .iter()
        .map(|d| d.iter().zip(q).map(|(a, b)| a * b).sum())
        .collect();
    Ok((scores, run.served))
}

/// `/v1/rerank`: the native request, or Cohere's form (answered in Cohere's shape; see
/// [`super::cohere::is_cohere_rerank`]).
pub async fn rerank(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    if super::cohere::is_cohere_rerank(&st, &headers, &body) {
        return super::cohere::rerank_v1(&st, &headers, body).await;
    }
    let req: RerankRequest = crate::json::from_value(body)?;
    let cross = rerank_is_cross(&st, req.model.as_deref());
    let (scores, served) = rerank_scores(
        &st,
        req.model.as_deref(),
        &req.query,
        &req.documents,
        RunOpts::new(true, req.timeout_ms, req.cache),
    )
    .await?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    if let Some(n) = req.top_n {
        order.truncate(n);
    }
    let results: Vec<Value> = order
        .into_iter()
        .map(|i| {
            let relevance = super::cohere::relevance(scores[i], cross);
            let mut r = json!({"index": i, "score": scores[i], "relevance_score": relevance});
            if req.return_documents {
                r["document"] = json!(req.documents[i]);
            }
            r
        })
        .collect();
    Ok(respond(served, json!({ "results": results })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NliPair {
    premise: String,
    hypothesis: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NliRequest {
    model: Option<String>,
    pairs: Vec<NliPair>,
    timeout_ms: Option<crate::types::TimeoutMs>,
    /// `false`: neither read nor fill the result cache.
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

/// NLI with a cross-encoder whose labels name entailment / neutral / contradiction, or, when the
/// request names a generative model or no NLI model is configured, the generative judge.
pub async fn nli(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<NliRequest>,
) -> Result<Response, ApiError> {
    let pairs = req
        .pairs
        .into_iter()
        .map(|p| (p.premise, p.hypothesis))
        .collect();
    let opts = RunOpts::new(true, req.timeout_ms, req.cache);
    let out = crate::nli::nli_scores(&st, req.model.as_deref(), pairs, "pairs", opts).await?;
    let results: Vec<Value> = out.scores.iter().map(|s| json!(NliOut::new(s))).collect();
    Ok(respond(out.served, json!({ "results": results })))
}
