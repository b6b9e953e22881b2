//! The evidence corpus: `POST /v1/evidence` (split documents into passages, embed them in
//! batches, store and index them), `GET /v1/evidence` (the corpus' size and state),
//! `GET /v1/evidence/{id}`, `DELETE /v1/evidence/{id}`; and the index rebuild at start.
//!
//! Passages are embedded by the default embedding model (the corpus' model); a passage stored by
//! another model or revision is embedded again when the server starts.

use super::respond;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::pipeline::{deadline, run_encoder_as, Input, RunOpts};
use crate::state::{AppState, Served};
use crate::types::check_count;
use axum::extract::{Path, State};
use axum::response::Response;
use nlpd_engine::{EncoderOp, OpOutput, TextInput};
use nlpd_runtime::evidence::{document_id_for, split, Corpus, DEFAULT_PASSAGE_TOKENS};
use nlpd_runtime::store::{now_ms, EvidenceDocument, EvidencePassage};
use nlpd_runtime::Lane;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The smallest passage budget a request may ask for.
const MIN_PASSAGE_TOKENS: usize = 8;
/// Longest client document id.
const MAX_ID_CHARS: usize = 256;
/// Passages embedded per batcher request while ingesting.
const EMBED_CHUNK: usize = 256;
/// Passages embedded per request while re-embedding at start...
const REEMBED_CHUNK: usize = 256;
/// ...and the deadline of each such request (bulk lane: client requests go first).
const REEMBED_DEADLINE: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    id: Option<String>,
    text: String,
    source: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRequest {
    documents: Vec<DocumentIn>,
    /// Most word pieces per passage (default 64; at most the embedding model's limit).
    passage_tokens: Option<usize>,
    timeout_ms: Option<crate::types::TimeoutMs>,
}

/// The corpus, or 503 when the server runs without a store.
pub fn corpus(st: &AppState) -> Result<&Arc<Corpus>, ApiError> {
    st.corpus.as_ref().ok_or_else(|| ApiError::Unavailable {
        message: "the evidence corpus needs the store, which is off (see --database-url and \
                  --store)"
            .into(),
    })
}

/// The corpus' embedding model: the default `embed` model.
pub fn evidence_model(st: &AppState) -> Result<String, ApiError> {
    st.registry
        .default_for("embed")
        .map(str::to_string)
        .ok_or_else(|| ApiError::Unavailable {
            message: "the evidence corpus needs an embedding model and none is configured".into(),
        })
}

/// One document checked and given its id.
struct Doc {
    id: String,
    source: Option<String>,
    text: String,
}

fn check_documents(docs: Vec<DocumentIn>, max: usize) -> Result<Vec<Doc>, ApiError> {
    check_count(docs.len(), "documents", max)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(docs.len());
    for (i, d) in docs.into_iter().enumerate() {
        if d.text.trim().is_empty() {
            return Err(ApiError::unprocessable(
                &format!("documents[{i}].text"),
                format!("documents[{i}].text must be a non-empty string"),
            ));
        }
        let id = match d.id {
            Some(id) => {
                if id.trim().is_empty() || id.chars().count() > MAX_ID_CHARS || id.contains('/') {
                    return Err(ApiError::unprocessable(
                        &format!("documents[{i}].id"),
                        format!(
                            "documents[{i}].id must be 1 to {MAX_ID_CHARS} characters, not blank, \
                             without `/`"
                        ),
                    ));
                }
                id
            }
            None => document_id_for(&d.text),
        };
        if !seen.insert(id.clone()) {
            return Err(ApiError::unprocessable(
                &format!("documents[{i}].id"),
                format!("documents[{i}]: the id `{id}` appears twice in the request"),
            ));
        }
        out.push(Doc {
            id,
            source: d.source,
            text: d.text,
        });
    }
    Ok(out)
}

/// Passages of one document: (byte range, tokens).
type Split = Vec<(std::ops::Range<usize>, usize)>;

pub async fn put_evidence(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<EvidenceRequest>,
) -> Result<Response, ApiError> {
    let corpus = corpus(&st)?.clone();
    let docs = check_documents(req.documents, st.config.max_inputs_per_request)?;
    let (deadline_at, wait) = deadline(&st, req.timeout_ms);
    corpus.ready(wait).await?;
    let model = evidence_model(&st)?;
    let handle = st.registry.encoder(&model).await?;
    let limit = handle
        .info
        .tokenizer
        .max_len()
        .saturating_sub(2)
        .max(MIN_PASSAGE_TOKENS);
    let max_tokens = req
        .passage_tokens
        .unwrap_or(DEFAULT_PASSAGE_TOKENS.min(limit));
    if !(MIN_PASSAGE_TOKENS..=limit).contains(&max_tokens) {
        return Err(ApiError::unprocessable(
            "passage_tokens",
            format!(
                "passage_tokens must be between {MIN_PASSAGE_TOKENS} and {limit} (model \
                 `{model}`'s limit), not {max_tokens}"
            ),
        ));
    }
    // Sentence splitting and token counting are CPU work: off the async threads.
    let (docs, splits) = {
        let h = handle.clone();
        tokio::task::spawn_blocking(move || {
            let count = |s: &str| {
                h.info
                    .tokenizer
                    .inner()
                    .encode(s, false)
                    .map(|e| e.len())
                    .unwrap_or_else(|_| s.split_whitespace().count())
            };
            let splits: Vec<Split> = docs
                .iter()
                .map(|d| split::passages(&d.text, max_tokens, count))
                .collect();
            (docs, splits)
        })
        .await
        .map_err(|e| ApiError::Internal {
            message: format!("passage splitting failed: {e}"),
        })?
    };
    let inputs: Vec<Input> = docs
        .iter()
        .zip(&splits)
        .flat_map(|(d, s)| s.iter().map(|(r, _)| (d.text[r.clone()].to_string(), None)))
        .collect();
    let op = EncoderOp::Embed {
        normalize: true,
        dimensions: None,
    };
    // In chunks, so a long document never exceeds a request's input limit or the model's queue;
    // every chunk runs under what is left of the request's deadline.
    let mut vectors: Vec<Option<Vec<f32>>> = Vec::with_capacity(inputs.len());
    let mut revision = String::new();
    let mut inputs = inputs.into_iter();
    loop {
        let chunk: Vec<Input> = inputs.by_ref().take(EMBED_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let left = deadline_at.saturating_duration_since(Instant::now());
        let left_ms = crate::types::TimeoutMs::clamped(left);
        let run = run_encoder_as(
            &st,
            Some(&model),
            "embed",
            "evidence",
            chunk,
            op.clone(),
            RunOpts::new(true, Some(left_ms), true),
        )
        .await?;
        revision = run.handle.revision.clone();
        vectors.extend(run.outputs.into_iter().map(OpOutput::into_embedding));
    }
    let mut vectors = vectors.into_iter();
    let now = now_ms();
    let mut results = Vec::with_capacity(docs.len());
    let mut total = 0;
    for (d, s) in docs.into_iter().zip(splits) {
        let offsets = split::char_offsets(
            &d.text,
            &s.iter()
                .flat_map(|(r, _)| [r.start, r.end])
                .collect::<Vec<_>>(),
        );
        let mut passages = Vec::with_capacity(s.len());
        for (pos, (r, tokens)) in s.iter().enumerate() {
            let embedding = vectors.next().flatten().ok_or_else(|| ApiError::Internal {
                message: "the embedding model returned fewer vectors than passages".into(),
            })?;
            passages.push(EvidencePassage {
                document_id: d.id.clone(),
                position: pos as i32,
                start_char: offsets[2 * pos] as i32,
                end_char: offsets[2 * pos + 1] as i32,
                text: d.text[r.clone()].to_string(),
                tokens: *tokens as i32,
                model: model.clone(),
                revision: revision.clone(),
                embedding,
            });
        }
        let doc = EvidenceDocument {
            id: d.id,
            source: d.source,
            text: d.text,
            created_at: now,
        };
        let replaced = corpus.put(&doc, &passages).await?;
        total += passages.len();
        results.push(json!({
            "id": doc.id,
            "passages": passages.len(),
            "tokens": passages.iter().map(|p| p.tokens as usize).sum::<usize>(),
            "replaced": replaced,
        }));
    }
    let served = Served {
        task: "evidence",
        model,
        inputs: results.len(),
    };
    Ok(respond(
        served,
        json!({ "documents": results, "passages": total, "corpus": corpus.stats() }),
    ))
}

pub async fn get_evidence(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let corpus = corpus(&st)?;
    let Some((doc, passages)) = corpus.get(&id).await? else {
        return Err(unknown(&id));
    };
    let passages: Vec<Value> = passages
        .iter()
        .map(|p| {
            json!({
                "position": p.position,
                "text": p.text,
                "start_char": p.start_char,
                "end_char": p.end_char,
                "tokens": p.tokens,
                "model": p.model,
            })
        })
        .collect();
    let served = Served {
        task: "evidence",
        model: String::new(),
        inputs: 1,
    };
    Ok(respond(
        served,
        json!({
            "id": doc.id,
            "source": doc.source,
            "text": doc.text,
            "created_at_ms": doc.created_at,
            "passages": passages,
        }),
    ))
}

pub async fn delete_evidence(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let corpus = corpus(&st)?;
    if !corpus.delete(&id).await? {
        return Err(unknown(&id));
    }
    let served = Served {
        task: "evidence",
        model: String::new(),
        inputs: 1,
    };
    Ok(respond(served, json!({ "id": id, "deleted": true })))
}

pub async fn corpus_stats(State(st): State<AppState>) -> Result<Response, ApiError> {
    let corpus = corpus(&st)?;
    let served = Served {
        task: "evidence",
        model: String::new(),
        inputs: 0,
    };
    Ok(respond(served, json!(corpus.stats())))
}

fn unknown(id: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("no evidence document has the id `{id}`"),
        param: Some("id".into()),
    }
}

/// At start: reads the stored passages into the index; passages embedded by another model or
/// revision are embedded again (bulk lane) and saved. Until it ends, evidence routes wait (up
/// to their deadline) and then answer 503. Then, every `refresh` (if set), rebuilds the index
/// when another replica on the same database changed the corpus.
pub async fn rebuild_index(st: AppState, refresh: Option<Duration>) {
    let Some(corpus) = st.corpus.clone() else {
        return;
    };
    if let Err(e) = rebuild(&st, &corpus).await {
        corpus.fail(e);
        return;
    }
    let Some(every) = refresh.filter(|d| !d.is_zero()) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if !corpus.changed_elsewhere().await {
            continue;
        }
        // Our own writes wait while the index is read and swapped, so none is lost.
        let _writes = corpus.lock_writes().await;
        if !corpus.changed_elsewhere().await {
            continue;
        }
        let t = Instant::now();
        match rebuild(&st, &corpus).await {
            Ok(()) => tracing::info!(
                took_ms = t.elapsed().as_millis() as u64,
                "evidence index rebuilt: another replica changed the corpus"
            ),
            // The old index keeps serving; the next tick tries again.
            Err(e) => tracing::warn!(error = %e, "evidence index refresh failed"),
        }
    }
}

async fn rebuild(st: &AppState, corpus: &Arc<Corpus>) -> Result<(), String> {
    let rows = corpus.read_store().await.map_err(|e| e.to_string())?;
    let Ok(model) = evidence_model(st) else {
        if rows.is_empty() {
            corpus.mark_ready("", "");
            return Ok(());
        }
        return Err("the store holds evidence but no embedding model is configured".into());
    };
    if rows.is_empty() {
        // Nothing to index (an empty index replaces any older one): no model load for it.
        corpus
            .index_loaded(rows, &model, "")
            .map_err(|e| e.to_string())?;
        return corpus
            .finish_load(Vec::new())
            .await
            .map_err(|e| e.to_string());
    }
    let handle = st
        .registry
        .encoder(&model)
        .await
        .map_err(|e| e.to_string())?;
    let report = corpus
        .index_loaded(rows, &model, &handle.revision)
        .map_err(|e| e.to_string())?;
    let mut fresh = Vec::with_capacity(report.stale.len());
    for chunk in report.stale.chunks(REEMBED_CHUNK) {
        let texts: Vec<String> = chunk.iter().map(|p| p.text.clone()).collect();
        let h = handle.clone();
        let encodings = tokio::task::spawn_blocking(move || {
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| h.info.tokenizer.encode(TextInput::Single(t), true, i))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| format!("tokenizing stored passages: {e}"))?
        .map_err(|e| format!("tokenizing stored passages: {e}"))?;
        let op = EncoderOp::Embed {
            normalize: true,
            dimensions: None,
        };
        let deadline = Instant::now() + REEMBED_DEADLINE;
        let outs = handle
            .run(encodings, op, "evidence", Lane::Bulk, deadline)
            .await
            .map_err(|e| format!("embedding stored passages again: {e}"))?;
        for (p, (enc, out)) in chunk.iter().zip(outs) {
            let embedding = out
                .into_embedding()
                .ok_or("the embedding model returned no vector")?;
            fresh.push(EvidencePassage {
                model: model.clone(),
                revision: handle.revision.clone(),
                tokens: enc.len().saturating_sub(2) as i32,
                embedding,
                ..p.clone()
            });
        }
    }
    corpus.finish_load(fresh).await.map_err(|e| e.to_string())
}
