//! text-embeddings-inference compatible routes, so TEI clients switch without changes.

use super::respond;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::pipeline::{run_encoder, tokenize_texts, Input, RunOpts};
use crate::state::{AppState, Served};
use crate::types::{check_count, Texts};
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use nlpd_engine::{EncoderOp, OpOutput};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct TeiEmbed {
    inputs: Texts,
    #[serde(default = "crate::types::default_true")]
    normalize: bool,
    #[serde(default = "crate::types::default_true")]
    truncate: bool,
    /// `left` keeps a long input's end.
    truncation_direction: Option<super::hf::TruncationDirection>,
    /// One of the model's prompts (else its default prompt) before each input.
    prompt_name: Option<String>,
    dimensions: Option<usize>,
}

pub async fn embed(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<TeiEmbed>,
) -> Result<Response, ApiError> {
    let texts = req.inputs.into_vec();
    check_count(texts.len(), "inputs", st.config.max_inputs_per_request)?;
    let name = st.registry.resolve(None, "embed")?;
    let texts = super::hf::embed_texts(
        &st,
        &name,
        texts,
        req.prompt_name.as_deref(),
        req.truncation_direction,
        "",
    )
    .await?;
    let op = EncoderOp::Embed {
        normalize: req.normalize,
        dimensions: req.dimensions,
    };
    let mut run = run_encoder(
        &st,
        Some(&name),
        "embed",
        texts.into_iter().map(|t| (t, None)).collect(),
        op,
        RunOpts::new(req.truncate, None, true),
    )
    .await?;
    let v = run.take_embeddings()?;
    Ok(respond(run.served, v))
}

#[derive(Deserialize)]
pub struct TeiRerank {
    query: String,
    texts: Vec<String>,
    #[serde(default)]
    return_text: bool,
}

pub async fn rerank(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<TeiRerank>,
) -> Result<Response, ApiError> {
    let (scores, served) = super::encode::rerank_scores(
        &st,
        None,
        &req.query,
        &req.texts,
        RunOpts::new(true, None, true),
    )
    .await?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let out: Vec<Value> = order
        .into_iter()
        .map(|i| {
            let mut r = json!({"index": i, "score": scores[i]});
            if req.return_text {
                r["text"] = json!(req.texts[i]);
            }
            r
        })
        .collect();
    Ok(respond(served, out))
}

#[derive(Deserialize)]
pub struct TeiPredict {
    inputs: Value,
    #[serde(default)]
    raw_scores: bool,
}

pub async fn predict(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<TeiPredict>,
) -> Result<Response, ApiError> {
    let (single, inputs) = predict_inputs(req.inputs)?;
    check_count(inputs.len(), "inputs", st.config.max_inputs_per_request)?;
    let run = run_encoder(
        &st,
        None,
        "classify",
        inputs,
        EncoderOp::Classify,
        RunOpts::new(true, None, true),
    )
    .await?;
    let labels = run.handle.info.labels.clone();
    let mut lists: Vec<Value> = run
        .outputs
        .iter()
        .map(|o| {
            let OpOutput::Classification(c) = o else {
                return json!([]);
            };
            let vals = if req.raw_scores { &c.logits } else { &c.scores };
            let mut v: Vec<(String, f32)> =
                labels.iter().cloned().zip(vals.iter().copied()).collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            json!(v
                .into_iter()
                .map(|(l, s)| json!({"label": l, "score": s}))
                .collect::<Vec<_>>())
        })
        .collect();
    let body = if single {
        lists.remove(0)
    } else {
        json!(lists)
    };
    Ok(respond(run.served, body))
}

#[derive(Deserialize)]
pub struct TeiTokenize {
    inputs: Texts,
}

pub async fn tokenize(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<TeiTokenize>,
) -> Result<Response, ApiError> {
    let texts = req.inputs.into_vec();
    let (tokens, served) = tokenize_texts(&st, None, &texts, "stop").await?;
    Ok(respond(served, tokens))
}

pub async fn info(State(st): State<AppState>) -> Json<Value> {
    let name = st
        .registry
        .default_for("embed")
        .unwrap_or_default()
        .to_string();
    let model_type = match st.registry.spec(&name) {
        Some(s) if s.task == "classify" => json!({"classifier": {}}),
        Some(s) if s.task == "rerank" => json!({"reranker": {}}),
        _ => json!({"embedding": {"pooling": "mean"}}),
    };
    Json(json!({
        "model_id": name,
        "model_sha": null,
        "model_dtype": "float32",
        "model_type": model_type,
        "max_concurrent_requests": 512,
        "max_client_batch_size": st.config.max_inputs_per_request,
        "tokenization_workers": tokio::runtime::Handle::current().metrics().num_workers(),
        "version": env!("CARGO_PKG_VERSION"),
        "router": "nlpd",
    }))
}

/// TEI's `inputs`: a text, a pair `[a, b]`, or a list of texts and pairs.
fn predict_inputs(v: Value) -> Result<(bool, Vec<Input>), ApiError> {
    let bad = || {
        ApiError::bad(
            "inputs",
            "expected a string, a pair [text, text_pair], or a list of strings and pairs",
        )
    };
    let one = |x: &Value| -> Option<(String, Option<String>)> {
        match x {
            Value::String(s) => Some((s.clone(), None)),
            Value::Array(a) if a.len() == 2 && a.iter().all(Value::is_string) => {
                Some((a[0].as_str()?.to_string(), Some(a[1].as_str()?.to_string())))
            }
            _ => None,
        }
    };
    if let Some(x) = one(&v) {
        return Ok((true, vec![x]));
    }
    match v {
        Value::Array(items) => items
            .iter()
            .map(|x| one(x).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| (false, v)),
        _ => Err(bad()),
    }
}

/// TEI `POST /similarity`: `{"inputs": {"source_sentence", "sentences"}, "parameters"?}` on the
/// default embedding model, answering one cosine similarity per sentence.
pub async fn similarity(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<super::hf::SimilarityRequest>,
) -> Result<Response, ApiError> {
    let (scores, served) = super::hf::similarity(&st, None, req).await?;
    Ok(respond(served, scores))
}

#[derive(Deserialize)]
pub struct TeiDecode {
    ids: Value,
    #[serde(default = "crate::types::default_true")]
    skip_special_tokens: bool,
}

/// TEI `POST /decode`: token ids (a list, or a list of lists) back to text with the default
/// embedding model's tokenizer; always a list of strings.
pub async fn decode(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<TeiDecode>,
) -> Result<Response, ApiError> {
    let (single, rows) = decode_ids(&req.ids)?;
    check_count(rows.len(), "ids", st.config.max_inputs_per_request)?;
    let name = st.registry.resolve(None, "embed")?;
    let handle = st.registry.encoder(&name).await?;
    let vocab = handle.info.tokenizer.inner().get_vocab_size(true);
    for (i, row) in rows.iter().enumerate() {
        if let Some(j) = row.iter().position(|&id| id as usize >= vocab) {
            let param = if single {
                format!("ids[{j}]")
            } else {
                format!("ids[{i}][{j}]")
            };
            return Err(ApiError::unprocessable(
                &param,
                format!(
                    "token id {} is not in the vocabulary of `{name}` ({vocab} tokens)",
                    row[j]
                ),
            ));
        }
    }
    let n = rows.len();
    let skip = req.skip_special_tokens;
    let texts = tokio::task::spawn_blocking(move || {
        let tokenizer = handle.info.tokenizer.inner();
        rows.iter()
            .map(|r| tokenizer.decode(r, skip).map_err(|e| e.to_string()))
            .collect::<Result<Vec<String>, String>>()
    })
    .await
    .map_err(|e| ApiError::Internal {
        message: format!("decoding task failed: {e}"),
    })?
    .map_err(|e| ApiError::unprocessable("ids", format!("cannot decode `ids`: {e}")))?;
    let served = Served {
        task: "tokenize",
        model: name,
        inputs: n,
    };
    Ok(respond(served, texts))
}

/// TEI's `ids`: one list of token ids (`single`) or a list of them.
fn decode_ids(v: &Value) -> Result<(bool, Vec<Vec<u32>>), ApiError> {
    let id = |x: &Value, param: String| {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::bad(
                    &param,
                    format!("`{param}` must be a token id (an integer from 0)"),
                )
            })
    };
    let Value::Array(items) = v else {
        return Err(ApiError::bad(
            "ids",
            "`ids` must be a list of token ids or a list of such lists",
        ));
    };
    if items.is_empty() {
        return Err(ApiError::unprocessable("ids", "`ids` must not be empty"));
    }
    if items.iter().all(Value::is_array) {
        let rows = items
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let row = row.as_array().map(Vec::as_slice).unwrap_or_default();
                row.iter()
                    .enumerate()
                    .map(|(j, x)| id(x, format!("ids[{i}][{j}]")))
                    .collect::<Result<Vec<u32>, ApiError>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((false, rows));
    }
    let row = items
        .iter()
        .enumerate()
        .map(|(j, x)| id(x, format!("ids[{j}]")))
        .collect::<Result<Vec<u32>, ApiError>>()?;
    Ok((true, vec![row]))
}
