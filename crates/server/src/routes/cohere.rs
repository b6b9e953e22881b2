//! Cohere-compatible routes, so Cohere's SDK (`ClientV2(base_url=...)`) and the clients and
//! gateways that follow its rerank shape work unchanged: `POST /v2/embed`, `POST /v2/rerank`,
//! and the Cohere form of `POST /v1/rerank` (see [`is_cohere_rerank`]).
//!
//! Shapes as in the `cohere` Python SDK 7.3.1 (`EmbedByTypeResponse`, `V2RerankResponse`,
//! `RerankResponse`, `ApiMeta`). A `model` this server does not have means the task's default
//! model, as on the OpenAI routes. Unknown fields are ignored.

use super::respond;
use crate::embed_input::{prepare, rename_inputs, Side};
use crate::embedding_types::{encode, EmbeddingType, Encoded};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::pipeline::{run_encoder, RunOpts};
use crate::state::AppState;
use crate::types::check_count;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use nlpd_engine::prompts::Prompts;
use nlpd_engine::EncoderOp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The response `id`: the request's `x-request-id` (set by the server when the client sent none).
fn response_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A model name this server has, else `None` (the task's default): clients send Cohere names.
fn known_model(st: &AppState, model: Option<String>) -> Option<String> {
    model.filter(|m| st.registry.spec(m).is_some())
}

#[derive(Serialize)]
struct ApiVersion {
    version: &'static str,
}

#[derive(Serialize, Default)]
struct Units {
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search_units: Option<usize>,
}

/// Cohere's `meta`: `api_version`, `billed_units` (nothing is billed; the units are what the
/// request used) and, for embeddings, `tokens`.
#[derive(Serialize)]
struct Meta {
    api_version: ApiVersion,
    billed_units: Units,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<Units>,
}

// ---------------------------------------------------------------------------------------------
// POST /v2/embed
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct V2EmbedRequest {
    model: Option<String>,
    texts: Option<Vec<String>>,
    images: Option<Value>,
    inputs: Option<Value>,
    input_type: Option<String>,
    embedding_types: Option<Vec<String>>,
    truncate: Option<String>,
    max_tokens: Option<u64>,
    output_dimension: Option<usize>,
    /// Accepted and ignored.
    #[allow(dead_code)]
    priority: Option<Value>,
    /// nlpd: `false` neither reads nor fills the result cache.
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

#[derive(Serialize)]
struct V2EmbedResponse {
    id: String,
    embeddings: BTreeMap<&'static str, Encoded>,
    texts: Vec<String>,
    response_type: &'static str,
    meta: Meta,
}

/// Cohere's `truncate`: `END` (the default) cuts the end, `START` the start, `NONE` refuses
/// inputs over the limit (422).
fn truncation(t: Option<&str>) -> Result<Option<Side>, ApiError> {
    match t.map(str::to_ascii_uppercase).as_deref() {
        None | Some("END") => Ok(Some(Side::End)),
        Some("START") => Ok(Some(Side::Start)),
        Some("NONE") => Ok(None),
        Some(_) => Err(ApiError::bad(
            "truncate",
            format!(
                "truncate must be `NONE`, `START` or `END`, not `{}`",
                t.unwrap_or_default()
            ),
        )),
    }
}

fn embedding_types(types: Option<Vec<String>>) -> Result<Vec<EmbeddingType>, ApiError> {
    let Some(types) = types else {
        return Ok(vec![EmbeddingType::Float]);
    };
    if types.is_empty() {
        return Err(ApiError::unprocessable(
            "embedding_types",
            "`embedding_types` must not be empty (leave it out for `float`)",
        ));
    }
    let mut out = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let parsed = EmbeddingType::parse(t).ok_or_else(|| {
            ApiError::bad(
                &format!("embedding_types[{i}]"),
                format!(
                    "unknown embedding type `{t}` (float, int8, uint8, binary, ubinary, base64)"
                ),
            )
        })?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// The prompt names tried for each Cohere `input_type`, in order (the names e5, bge, nomic,
/// jina and others give their prompts).
fn prompt_names(input_type: &str) -> Option<&'static [&'static str]> {
    Some(match input_type {
        "search_query" => &["search_query", "query", "retrieval.query"],
        "search_document" => &[
            "search_document",
            "document",
            "passage",
            "corpus",
            "retrieval.passage",
        ],
        "classification" => &["classification"],
        "clustering" => &["clustering", "separation"],
        _ => return None,
    })
}

/// The prompt for an `input_type`: the model's prompt of that name, or of one of the names in
/// [`prompt_names`], else its default prompt. `image` and other types are refused (400).
pub fn input_type_prompt(
    prompts: &Prompts,
    input_type: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Some(t) = input_type else {
        return Ok(prompts.default_text().map(str::to_string));
    };
    if let Some(p) = prompts.get(t) {
        return Ok(Some(p.to_string()).filter(|p| !p.is_empty()));
    }
    let Some(names) = prompt_names(t) else {
        return Err(ApiError::bad(
            "input_type",
            format!(
                "input_type `{t}` is not supported: search_query, search_document, classification, \
                 clustering{}",
                if prompts.is_empty() {
                    String::new()
                } else {
                    format!(", or one of the model's prompts ({})", prompts.names().join(", "))
                }
            ),
        ));
    };
    Ok(names
        .iter()
        .find_map(|n| prompts.get(n))
        .or(prompts.default_text())
        .filter(|p| !p.is_empty())
        .map(str::to_string))
}

pub async fn embed_v2(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<V2EmbedRequest>,
) -> Result<Response, ApiError> {
    let Some(texts) = req.texts else {
        for (field, given) in [("images", &req.images), ("inputs", &req.inputs)] {
            if given.is_some() {
                return Err(ApiError::unprocessable(
                    field,
                    format!("`{field}` is not supported: nlpd embeds text; send `texts`"),
                ));
            }
        }
        return Err(ApiError::unprocessable("texts", "`texts` is required"));
    };
    check_count(texts.len(), "texts", st.config.max_inputs_per_request)?;
    if req.images.is_some() {
        return Err(ApiError::unprocessable(
            "images",
            "`images` is not supported: nlpd embeds text",
        ));
    }
    let types = embedding_types(req.embedding_types)?;
    let side = truncation(req.truncate.as_deref())?;
    let name = st
        .registry
        .resolve(known_model(&st, req.model).as_deref(), "embed")?;
    let prompts = st
        .registry
        .spec(&name)
        .map(|s| s.prompts.clone())
        .unwrap_or_default();
    let prompt = input_type_prompt(&prompts, req.input_type.as_deref())?;
    if let Some(max) = req.max_tokens {
        refuse_below_limit(&st, &name, max, "max_tokens").await?;
    }
    let prepared = prepare(
        &st,
        &name,
        texts.clone(),
        prompt.as_deref(),
        side.unwrap_or(Side::End),
        "texts",
    )
    .await?;
    let op = EncoderOp::Embed {
        normalize: true,
        dimensions: req.output_dimension,
    };
    let mut run = run_encoder(
        &st,
        Some(&name),
        "embed",
        prepared.into_iter().map(|t| (t, None)).collect(),
        op,
        RunOpts::new(side.is_some(), None, req.cache),
    )
    .await
    .map_err(|e| match e {
        ApiError::BadRequest {
            message,
            param: Some(p),
        } if p == "dimensions" => ApiError::BadRequest {
            message: message.replace("dimensions", "output_dimension"),
            param: Some("output_dimension".into()),
        },
        e => rename_inputs(e, "texts"),
    })?;
    let tokens = run.tokens();
    let vectors = run.take_embeddings()?;
    let embeddings = crate::pipeline::postprocess(&st, &run.served, || {
        types
            .iter()
            .map(|&t| (t.name(), encode(t, &vectors)))
            .collect()
    });
    Ok(respond(
        run.served,
        V2EmbedResponse {
            id: response_id(&headers),
            embeddings,
            texts,
            response_type: "embeddings_by_type",
            meta: Meta {
                api_version: ApiVersion { version: "2" },
                billed_units: Units {
                    input_tokens: Some(tokens),
                    search_units: None,
                },
                tokens: Some(Units {
                    input_tokens: Some(tokens),
                    search_units: None,
                }),
            },
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// POST /v2/rerank, and /v1/rerank in Cohere form
// ---------------------------------------------------------------------------------------------

/// A document: a text, or (Cohere v1) an object whose `text` is ranked.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum CohereDocument {
    Text(String),
    Object(serde_json::Map<String, Value>),
}

#[derive(Deserialize)]
pub struct CohereRerankRequest {
    model: Option<String>,
    query: String,
    documents: Vec<CohereDocument>,
    top_n: Option<usize>,
    /// Include each document (`{"text": ...}`) in its result; default false, as Cohere's.
    #[serde(default)]
    return_documents: bool,
    /// Cohere v1: only `["text"]` is supported.
    rank_fields: Option<Vec<String>>,
    max_tokens_per_doc: Option<u64>,
    /// Accepted and ignored (spans are never returned), as are `priority` and
    /// `max_chunks_per_doc`.
    #[allow(dead_code)]
    relevant_spans: Option<Value>,
    #[allow(dead_code)]
    priority: Option<Value>,
    #[allow(dead_code)]
    max_chunks_per_doc: Option<Value>,
    timeout_ms: Option<crate::types::TimeoutMs>,
    /// nlpd: `false` neither reads nor fills the result cache.
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

#[derive(Serialize)]
struct DocumentText {
    text: String,
}

#[derive(Serialize)]
struct CohereRerankResult {
    index: usize,
    relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<DocumentText>,
}

#[derive(Serialize)]
struct CohereRerankResponse {
    id: String,
    results: Vec<CohereRerankResult>,
    /// The model that served the request (Jina and vLLM send it; Cohere's SDK keeps it as extra).
    model: String,
    meta: Meta,
}

/// Fields only the Cohere / Jina / vLLM form of a rerank request has.
const COHERE_ONLY: &[&str] = &[
    "rank_fields",
    "max_chunks_per_doc",
    "max_tokens_per_doc",
    "relevant_spans",
    "priority",
];

/// Whether a `/v1/rerank` body is in Cohere form, to be answered in Cohere's shape: it has a
/// field only that form has, a document that is an object, a `model` this server does not have
/// (a gateway's or Cohere's name), or it comes from Cohere's SDK (`X-Fern-SDK-Name: cohere`).
/// Anything else is the native request, answered in the native shape.
pub fn is_cohere_rerank(st: &AppState, headers: &HeaderMap, body: &Value) -> bool {
    let Some(o) = body.as_object() else {
        return false;
    };
    COHERE_ONLY.iter().any(|k| o.contains_key(*k))
        || o.get("documents")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(Value::is_object))
        || o.get("model")
            .and_then(Value::as_str)
            .is_some_and(|m| st.registry.spec(m).is_none())
        || headers
            .get("x-fern-sdk-name")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("cohere"))
}

/// Cohere's `relevance_score` in [0, 1] from nlpd's rerank score: the sigmoid of a
/// cross-encoder's logit (as sentence-transformers' `CrossEncoder` gives for one-label models),
/// `(1 + cosine) / 2` for the bi-encoder fallback. Both keep the order.
pub fn relevance(score: f32, cross: bool) -> f32 {
    if cross {
        1.0 / (1.0 + (-score).exp())
    } else {
        ((1.0 + score) / 2.0).clamp(0.0, 1.0)
    }
}

pub async fn rerank_v2(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CohereRerankRequest>,
) -> Result<Response, ApiError> {
    rerank(&st, &headers, req, "2").await
}

/// `/v1/rerank` in Cohere form (`api_version` 1).
pub async fn rerank_v1(
    st: &AppState,
    headers: &HeaderMap,
    body: Value,
) -> Result<Response, ApiError> {
    rerank(st, headers, crate::json::from_value(body)?, "1").await
}

async fn rerank(
    st: &AppState,
    headers: &HeaderMap,
    req: CohereRerankRequest,
    version: &'static str,
) -> Result<Response, ApiError> {
    if let Some(f) = &req.rank_fields {
        if f.iter().any(|f| f != "text") {
            return Err(ApiError::unprocessable(
                "rank_fields",
                "only `text` can be ranked: rank_fields must be [\"text\"] or left out",
            ));
        }
    }
    if req.top_n == Some(0) {
        return Err(ApiError::unprocessable("top_n", "top_n must be at least 1"));
    }
    let documents: Vec<String> = req
        .documents
        .into_iter()
        .enumerate()
        .map(|(i, d)| match d {
            CohereDocument::Text(t) => Ok(t),
            CohereDocument::Object(mut o) => match o.remove("text") {
                Some(Value::String(t)) => Ok(t),
                _ => Err(ApiError::unprocessable(
                    &format!("documents[{i}].text"),
                    format!("documents[{i}] is an object without a string `text`"),
                )),
            },
        })
        .collect::<Result<_, _>>()?;
    let model = known_model(st, req.model);
    let cross = super::encode::rerank_is_cross(st, model.as_deref());
    if let Some(max) = req.max_tokens_per_doc {
        let task = if cross { "rerank" } else { "embed" };
        let name = st.registry.resolve(model.as_deref(), task)?;
        refuse_below_limit(st, &name, max, "max_tokens_per_doc").await?;
    }
    let (scores, served) = super::encode::rerank_scores(
        st,
        model.as_deref(),
        &req.query,
        &documents,
        RunOpts::new(true, req.timeout_ms, req.cache),
    )
    .await?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    if let Some(n) = req.top_n {
        order.truncate(n);
    }
    let results = order
        .into_iter()
        .map(|i| CohereRerankResult {
            index: i,
            relevance_score: relevance(scores[i], cross),
            document: req.return_documents.then(|| DocumentText {
                text: documents[i].clone(),
            }),
        })
        .collect();
    let search_units = documents.len().div_ceil(100).max(1);
    let model_name = served.model.clone();
    Ok(respond(
        served,
        CohereRerankResponse {
            id: response_id(headers),
            results,
            model: model_name,
            meta: Meta {
                api_version: ApiVersion { version },
                billed_units: Units {
                    input_tokens: None,
                    search_units: Some(search_units),
                },
                tokens: None,
            },
        },
    ))
}

/// Cohere's `max_tokens` / `max_tokens_per_doc`: a cap below model `name`'s own limit is a 422
/// naming `field` (inputs are cut at the model's limit only); one at or above it changes nothing.
async fn refuse_below_limit(
    st: &AppState,
    name: &str,
    max: u64,
    field: &str,
) -> Result<(), ApiError> {
    let limit = st.registry.encoder(name).await?.info.tokenizer.max_len();
    if max < limit as u64 {
        return Err(ApiError::unprocessable(
            field,
            format!(
                "{field} below the model's limit ({limit} tokens) is not supported: inputs are \
                 cut at the model's limit (leave {field} out)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts(pairs: &[(&str, &str)], default: Option<&str>) -> Prompts {
        Prompts {
            prompts: pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            default_name: default.map(str::to_string),
        }
    }

    #[test]
    fn input_types_map_to_the_models_prompts() {
        let e5 = prompts(&[("query", "query: "), ("passage", "passage: ")], None);
        let p = |t| input_type_prompt(&e5, Some(t)).unwrap();
        assert_eq!(p("search_query").as_deref(), Some("query: "));
        assert_eq!(p("search_document").as_deref(), Some("passage: "));
        assert_eq!(p("classification"), None);
        // A model prompt's own name works too.
        assert_eq!(p("passage").as_deref(), Some("passage: "));
        assert_eq!(input_type_prompt(&e5, None).unwrap(), None);
        let e = input_type_prompt(&e5, Some("image")).unwrap_err();
        assert!(matches!(e, ApiError::BadRequest { param: Some(ref p), .. } if p == "input_type"));
        assert!(e.message().contains("passage, query"), "{}", e.message());
        let nomic = prompts(
            &[
                ("search_query", "search_query: "),
                ("clustering", "clustering: "),
            ],
            Some("clustering"),
        );
        assert_eq!(
            input_type_prompt(&nomic, Some("search_query"))
                .unwrap()
                .as_deref(),
            Some("search_query: ")
        );
        // No matching prompt: the default.
        assert_eq!(
            input_type_prompt(&nomic, Some("search_document"))
                .unwrap()
                .as_deref(),
            Some("clustering: ")
        );
        let none = Prompts::default();
        assert_eq!(
            input_type_prompt(&none, Some("search_query")).unwrap(),
            None
        );
    }

    #[test]
    fn truncate_and_types_are_checked() {
        assert_eq!(truncation(None).unwrap(), Some(Side::End));
        assert_eq!(truncation(Some("START")).unwrap(), Some(Side::Start));
        assert_eq!(truncation(Some("none")).unwrap(), None);
        assert!(truncation(Some("MIDDLE")).is_err());
        assert_eq!(
            embedding_types(Some(vec!["int8".into(), "float".into(), "int8".into()])).unwrap(),
            vec![EmbeddingType::Int8, EmbeddingType::Float]
        );
        let e = embedding_types(Some(vec!["float".into(), "int4".into()])).unwrap_err();
        assert!(
            matches!(e, ApiError::BadRequest { param: Some(ref p), .. } if p == "embedding_types[1]")
        );
        assert!(embedding_types(Some(vec![])).is_err());
    }

    #[test]
    fn relevance_scores_are_in_0_1_and_keep_the_order() {
        assert_eq!(relevance(0.0, true), 0.5);
        assert!(relevance(5.0, true) > relevance(1.0, true));
        assert_eq!(relevance(1.0, false), 1.0);
        assert_eq!(relevance(-1.0, false), 0.0);
        assert_eq!(relevance(0.5, false), 0.75);
    }
}
