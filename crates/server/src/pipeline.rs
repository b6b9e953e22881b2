//! The path every encoder request takes: resolve the model (lazy load), look every input up in
//! the result cache, and for the misses only: tokenize off the async threads, queue each input in
//! the model's batcher, await the results under the deadline; the cache merges them back in
//! input order. Every served input (hit or computed) is then handed to the prediction log,
//! which never waits.

use crate::error::ApiError;
use crate::state::{AppState, Served};
use nlpd_engine::{Encoded, EncoderOp, OpOutput, TextInput};
use nlpd_runtime::cache::{encoder_key, CachedValue, EncoderResult};
use nlpd_runtime::stats::Stage;
use nlpd_runtime::{metrics as m, EncoderHandle, Lane};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One input: a text or a pair.
pub type Input = (String, Option<String>);

/// Per-request settings of an encoder run.
#[derive(Debug, Clone, Copy)]
pub struct RunOpts {
    /// Cut inputs to the model's limit (else 422 for a longer one).
    pub truncate: bool,
    pub timeout_ms: Option<crate::types::TimeoutMs>,
    /// Use the result cache (a request's `"cache": false` turns it off).
    pub cache: bool,
}

impl RunOpts {
    pub fn new(truncate: bool, timeout_ms: Option<crate::types::TimeoutMs>, cache: bool) -> Self {
        RunOpts {
            truncate,
            timeout_ms,
            cache,
        }
    }
}

pub struct EncoderRun {
    pub outputs: Vec<OpOutput>,
    /// Tokens of each input (usage).
    pub token_counts: Vec<usize>,
    /// Each input's encoding, kept for token classification only (aggregation needs offsets).
    pub encodings: Vec<Option<Encoded>>,
    pub handle: Arc<EncoderHandle>,
    pub served: Served,
}

impl EncoderRun {
    pub fn tokens(&self) -> usize {
        self.token_counts.iter().sum()
    }

    /// The vectors of an `Embed` run, one per input in input order, taken out of `outputs`.
    /// Any other output is the server's own inconsistency: a 500, never a list that no longer
    /// lines up with the inputs.
    pub fn take_embeddings(&mut self) -> Result<Vec<Vec<f32>>, ApiError> {
        std::mem::take(&mut self.outputs)
            .into_iter()
            .map(|o| {
                o.into_embedding().ok_or_else(|| ApiError::Internal {
                    message: "an embedding run returned another kind of output".into(),
                })
            })
            .collect()
    }
}

/// The request's deadline: its own `timeout_ms` or the server's `--request-timeout`.
pub fn deadline(
    state: &AppState,
    timeout_ms: Option<crate::types::TimeoutMs>,
) -> (Instant, Duration) {
    let d = timeout_ms
        .map(crate::types::TimeoutMs::duration)
        .unwrap_or(state.config.request_timeout);
    (Instant::now() + d, d)
}

pub async fn run_encoder(
    state: &AppState,
    model: Option<&str>,
    task: &'static str,
    inputs: Vec<Input>,
    op: EncoderOp,
    opts: RunOpts,
) -> Result<EncoderRun, ApiError> {
    run_encoder_as(state, model, task, task, inputs, op, opts).await
}

/// [`run_encoder`] for a request counted as `task` whose model, when the request names none, is
/// the default of `default_task` (rerank without a cross-encoder uses the embedding model).
pub async fn run_encoder_as(
    state: &AppState,
    model: Option<&str>,
    default_task: &str,
    task: &'static str,
    inputs: Vec<Input>,
    op: EncoderOp,
    opts: RunOpts,
) -> Result<EncoderRun, ApiError> {
    let (deadline, budget) = deadline(state, opts.timeout_ms);
    let name = state.registry.resolve(model, default_task)?;
    let work = async {
        let handle = state.registry.encoder(&name).await?;
        let n = inputs.len();
        let job = Job {
            state,
            handle: &handle,
            name: &name,
            task,
            inputs: &inputs,
            op: &op,
            truncate: opts.truncate,
            deadline,
            computed: Mutex::new(Vec::new()),
        };
        let values: Vec<Arc<CachedValue>> = match &state.cache {
            Some(cache) if opts.cache => {
                let keys: Vec<_> = inputs
                    .iter()
                    .map(|(a, b)| {
                        encoder_key(&name, &handle.revision, &op, opts.truncate, a, b.as_deref())
                    })
                    .collect();
                cache
                    .get_or_compute(&name, &keys, |idx| job.compute(idx))
                    .await?
            }
            cache => {
                if let Some(c) = cache {
                    c.bypassed(&name, n);
                }
                job.compute((0..n).collect())
                    .await?
                    .into_iter()
                    .map(Arc::new)
                    .collect()
            }
        };
        if let Some(log) = state.predictions() {
            let latency = job.latencies(n);
            log.encoder(
                &name,
                &handle.revision,
                task,
                &op,
                opts.truncate,
                &inputs,
                &values,
                &latency,
            );
        }
        let results: Vec<EncoderResult> = values
            .into_iter()
            .map(|v| into_encoder(Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone())))
            .collect::<Result<_, _>>()?;
        let mut run = EncoderRun {
            outputs: Vec::with_capacity(n),
            token_counts: Vec::with_capacity(n),
            encodings: Vec::with_capacity(n),
            handle: handle.clone(),
            served: Served {
                task,
                model: name.clone(),
                inputs: n,
            },
        };
        for r in results {
            run.outputs.push(r.output);
            run.token_counts.push(r.tokens as usize);
            run.encodings.push(r.encoding);
        }
        Ok::<_, ApiError>(run)
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

fn into_encoder(v: CachedValue) -> Result<EncoderResult, ApiError> {
    match v {
        CachedValue::Encoder(r) => Ok(r),
        CachedValue::Generation(_) => Err(ApiError::Internal {
            message: "a generation where an encoder result was expected".into(),
        }),
    }
}

/// The model work of one request: tokenize some of its inputs and run them through the batcher.
struct Job<'a> {
    state: &'a AppState,
    handle: &'a Arc<EncoderHandle>,
    name: &'a str,
    task: &'static str,
    inputs: &'a [Input],
    op: &'a EncoderOp,
    truncate: bool,
    deadline: Instant,
    /// Inputs computed for this request and how long their computation took (ms): the
    /// prediction log's latency.
    computed: Mutex<Vec<(usize, f64)>>,
}

impl Job<'_> {
    /// The compute time of each of `n` inputs, `None` for the ones not computed here.
    fn latencies(&self, n: usize) -> Vec<Option<f64>> {
        let mut out = vec![None; n];
        for &(i, ms) in self
            .computed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(ms);
            }
        }
        out
    }

    /// Computes the inputs at `idx`, in that order.
    async fn compute(&self, idx: Vec<usize>) -> Result<Vec<CachedValue>, ApiError> {
        let n = idx.len();
        let t0 = Instant::now();
        let h = self.handle.clone();
        let truncate = self.truncate;
        let picked: Vec<(usize, Input)> =
            idx.iter().map(|&i| (i, self.inputs[i].clone())).collect();
        let encodings = tokio::task::spawn_blocking(move || {
            picked
                .iter()
                .map(|(i, (a, b))| {
                    let input = match b {
                        Some(b) => TextInput::Pair(a, b),
                        None => TextInput::Single(a),
                    };
                    h.info.tokenizer.encode(input, truncate, *i)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| ApiError::Internal {
            message: format!("tokenizer task failed: {e}"),
        })??;
        let took = t0.elapsed();
        nlpd_runtime::timing::record_tokenize(took);
        m::stage(m::TOKENIZE_DURATION, self.name, took);
        self.state
            .stats()
            .stage(self.task, self.name, Stage::Tokenize, took);
        let lane = if n > self.state.config.bulk_threshold {
            Lane::Bulk
        } else {
            Lane::Interactive
        };
        let values: Vec<CachedValue> = self
            .handle
            .run(encodings, self.op.clone(), self.task, lane, self.deadline)
            .await?
            .into_iter()
            .map(|(enc, output)| {
                CachedValue::Encoder(EncoderResult::from_run(self.op, enc, output))
            })
            .collect();
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        self.computed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(idx.iter().map(|&i| (i, ms)));
        Ok(values)
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
    let t0 = Instant::now();
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
    nlpd_runtime::timing::record_tokenize(t0.elapsed());
    let served = Served {
        task: "tokenize",
        model: name,
        inputs: texts.len(),
    };
    Ok((out, served))
}
