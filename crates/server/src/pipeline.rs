//! The path every encoder request takes: resolve the model (lazy load), tokenize off the async
//! threads, queue each input in the model's batcher, await the results under the deadline.

use crate::error::ApiError;
use crate::state::{AppState, Served};
use nlpd_engine::{Encoded, EncoderOp, OpOutput, TextInput};
use nlpd_runtime::stats::Stage;
use nlpd_runtime::{metrics as m, EncoderHandle, Lane};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One input: a text or a pair.
pub type Input = (String, Option<String>);

pub struct EncoderRun {
    pub outputs: Vec<OpOutput>,
    pub encodings: Vec<Encoded>,
    pub handle: Arc<EncoderHandle>,
    pub served: Served,
}

impl EncoderRun {
    pub fn tokens(&self) -> usize {
        self.encodings.iter().map(Encoded::len).sum()
    }
}

/// The request's deadline: its own `timeout_ms` or the server's `--request-timeout`.
pub fn deadline(state: &AppState, timeout_ms: Option<u64>) -> (Instant, Duration) {
    let d = timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(state.config.request_timeout);
    (Instant::now() + d, d)
}

pub async fn run_encoder(
    state: &AppState,
    model: Option<&str>,
    task: &'static str,
    inputs: Vec<Input>,
    op: EncoderOp,
    truncate: bool,
    timeout_ms: Option<u64>,
) -> Result<EncoderRun, ApiError> {
    run_encoder_as(state, model, task, task, inputs, op, truncate, timeout_ms).await
}

/// [`run_encoder`] for a request counted as `task` whose model, when the request names none, is
/// the default of `default_task` (rerank without a cross-encoder uses the embedding model).
#[allow(clippy::too_many_arguments)]
pub async fn run_encoder_as(
    state: &AppState,
    model: Option<&str>,
    default_task: &str,
    task: &'static str,
    inputs: Vec<Input>,
    op: EncoderOp,
    truncate: bool,
    timeout_ms: Option<u64>,
) -> Result<EncoderRun, ApiError> {
    let (deadline, budget) = deadline(state, timeout_ms);
    let name = state.registry.resolve(model, default_task)?;
    let work = async {
        let handle = state.registry.encoder(&name).await?;
        let n = inputs.len();
        let t0 = Instant::now();
        let h = handle.clone();
        let encodings = tokio::task::spawn_blocking(move || {
            inputs
                .iter()
                .enumerate()
                .map(|(i, (a, b))| {
                    let input = match b {
                        Some(b) => TextInput::Pair(a, b),
                        None => TextInput::Single(a),
                    };
                    h.info.tokenizer.encode(input, truncate, i)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| ApiError::Internal {
            message: format!("tokenizer task failed: {e}"),
        })??;
        let took = t0.elapsed();
        m::stage(m::TOKENIZE_DURATION, &name, took);
        state.stats().stage(task, &name, Stage::Tokenize, took);
        let lane = if n > state.config.bulk_threshold {
            Lane::Bulk
        } else {
            Lane::Interactive
        };
        let (encodings, outputs) = handle
            .run(encodings, op, task, lane, deadline)
            .await?
            .into_iter()
            .unzip();
        Ok::<_, ApiError>(EncoderRun {
            outputs,
            encodings,
            handle,
            served: Served {
                task,
                model: name.clone(),
                inputs: n,
            },
        })
    };
    match tokio::time::timeout(budget, work).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::Timeout {
            message: format!(
                "the request took longer than its {} ms deadline",
                budget.as_millis()
            ),
        }),
    }
}

/// Times post-processing of a request.
pub fn postprocess<T>(state: &AppState, served: &Served, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let out = f();
    let took = t0.elapsed();
    m::stage(m::POSTPROCESS_DURATION, &served.model, took);
    state
        .stats()
        .stage(served.task, &served.model, Stage::Postprocess, took);
    out
}

/// The tokens of each text with the model's tokenizer (special tokens included, truncated to the
/// model's limit), for the tokenize routes; `end_key` names the end offset (`end`; TEI: `stop`).
pub async fn tokenize_texts(
    state: &AppState,
    model: Option<&str>,
    texts: &[String],
    end_key: &str,
) -> Result<(Vec<Vec<serde_json::Value>>, Served), ApiError> {
    crate::types::check_count(texts.len(), "inputs", state.config.max_inputs_per_request)?;
    let name = state.registry.resolve(model, "embed")?;
    let handle = state.registry.encoder(&name).await?;
    let tokenizer = &handle.info.tokenizer;
    let mut out = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        let enc = tokenizer.encode(TextInput::Single(t), true, i)?;
        let rows = (0..enc.len())
            .map(|k| {
                let mut row = serde_json::json!({
                    "id": enc.ids[k],
                    "text": tokenizer.inner().id_to_token(enc.ids[k]).unwrap_or_default(),
                    "start": enc.offsets[k].0,
                    "special": enc.special[k],
                });
                row[end_key] = serde_json::json!(enc.offsets[k].1);
                row
            })
            .collect();
        out.push(rows);
    }
    let served = Served {
        task: "tokenize",
        model: name,
        inputs: texts.len(),
    };
    Ok((out, served))
}
