//! Cache warming (`--warm-cache N`): after the server reports ready, compute the N most served
//! logged inputs of every model (those whose text was stored, `--log-inputs`) in the bulk lane
//! and put them in the result cache, so a restart does not start cold. Each logged row carries
//! the operation and parameters ([`super::OpParams`]): the recomputed key is the key the
//! original request used (the model revision is the current one, so a changed model is
//! computed afresh, never served stale).

use super::db::TopInput;
use super::{OpParams, Store};
use crate::cache::{encoder_key, Cache, CacheKey, CachedValue, EncoderResult};
use crate::{EncoderHandle, Lane, ModelKind, Registry};
use nlpd_engine::{EncoderOp, TextInput};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Inputs per forward-pass request while warming.
const CHUNK: usize = 32;
/// How often progress is logged while warming.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The deadline of one chunk in the bulk lane (interactive requests go first).
const CHUNK_DEADLINE: Duration = Duration::from_secs(600);

const WAITING: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;
const FAILED: u8 = 4;

/// Progress of cache warming; `state` 0 is `off`.
#[derive(Default)]
pub(crate) struct WarmProgress {
    state: AtomicU8,
    planned: AtomicU64,
    warmed: AtomicU64,
    cached: AtomicU64,
    failed: AtomicU64,
}

/// Cache warming in `/v1/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct WarmStats {
    /// `--warm-cache`: inputs per model (0: off).
    pub per_model: usize,
    /// `off`, `waiting` (for readiness), `running`, `done` or `failed` (see the log).
    pub state: &'static str,
    /// Logged inputs selected.
    pub planned: u64,
    /// Computed and put in the cache.
    pub warmed: u64,
    /// In L1 already (nothing to do).
    pub already_cached: u64,
    /// Not computed (model missing or failing, input refused).
    pub failed: u64,
}

impl WarmProgress {
    pub fn stats(&self, per_model: usize) -> WarmStats {
        WarmStats {
            per_model,
            state: match self.state.load(Ordering::Relaxed) {
                WAITING => "waiting",
                RUNNING => "running",
                DONE => "done",
                FAILED => "failed",
                _ => "off",
            },
            planned: self.planned.load(Ordering::Relaxed),
            warmed: self.warmed.load(Ordering::Relaxed),
            already_cached: self.cached.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Relaxed);
    }

    fn handled(&self) -> u64 {
        self.warmed.load(Ordering::Relaxed)
            + self.cached.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }
}

/// Warms the cache from the store's log (see the module doc); returns when done. Spawn it after
/// the server starts listening: it waits for readiness itself and never delays it.
pub async fn warm_cache(store: Arc<Store>, registry: Arc<Registry>, cache: Option<Arc<Cache>>) {
    let per_model = store.config().warm_cache;
    let progress = &store.warm;
    if per_model == 0 {
        return;
    }
    let Some(cache) = cache else {
        tracing::warn!("--warm-cache is set but the result cache is off: nothing to warm");
        progress.set(FAILED);
        return;
    };
    progress.set(WAITING);
    let waited = Instant::now();
    let mut told = false;
    while registry.readiness().is_err() {
        if !told && waited.elapsed() > Duration::from_secs(60) {
            tracing::info!("cache warming waits for the server to be ready");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.set(RUNNING);
    let t0 = Instant::now();
    let rows = match store.db.ensure_migrated().await {
        Ok(()) => store.db.top_inputs(per_model).await,
        Err(e) => Err(e),
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cache warming: cannot read the prediction log; the cache starts cold");
            progress.set(FAILED);
            return;
        }
    };
    progress.planned.store(rows.len() as u64, Ordering::Relaxed);
    tracing::info!(
        inputs = rows.len(),
        per_model,
        "cache warming: computing the most served logged inputs in the bulk lane"
    );
    let mut last_report = Instant::now();
    let mut start = 0;
    while start < rows.len() {
        // Rows come grouped by model.
        let model = rows[start].model.clone();
        let end = rows[start..]
            .iter()
            .position(|r| r.model != model)
            .map_or(rows.len(), |p| start + p);
        warm_model(
            &registry,
            &cache,
            progress,
            &model,
            &rows[start..end],
            &mut last_report,
        )
        .await;
        start = end;
    }
    progress.set(DONE);
    tracing::info!(
        warmed = progress.warmed.load(Ordering::Relaxed),
        already_cached = progress.cached.load(Ordering::Relaxed),
        failed = progress.failed.load(Ordering::Relaxed),
        seconds = t0.elapsed().as_secs_f64(),
        "cache warming: done"
    );
}

async fn warm_model(
    registry: &Registry,
    cache: &Cache,
    progress: &WarmProgress,
    model: &str,
    rows: &[TopInput],
    last_report: &mut Instant,
) {
    let fail = |n: usize| {
        progress.failed.fetch_add(n as u64, Ordering::Relaxed);
    };
    match registry.spec(model).map(|s| s.kind) {
        Some(ModelKind::Encoder) => {}
        _ => {
            tracing::info!(
                model,
                inputs = rows.len(),
                "cache warming: skipping a model that is not served as an encoder now"
            );
            return fail(rows.len());
        }
    }
    let handle = match registry.encoder(model).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(model, error = %e, "cache warming: model unavailable");
            return fail(rows.len());
        }
    };
    // Consecutive rows with the same parameters go together, CHUNK at a time.
    let mut i = 0;
    while i < rows.len() {
        let params = &rows[i].params;
        let mut j = i;
        while j < rows.len() && rows[j].params == *params && j - i < CHUNK {
            j += 1;
        }
        let chunk = &rows[i..j];
        i = j;
        let Some((op, truncate)) = OpParams::from_json(params).and_then(|p| p.to_op()) else {
            tracing::warn!(model, params = %params, "cache warming: unknown logged parameters");
            fail(chunk.len());
            continue;
        };
        warm_chunk(cache, progress, &handle, model, &op, truncate, chunk).await;
        if last_report.elapsed() >= PROGRESS_EVERY {
            *last_report = Instant::now();
            tracing::info!(
                done = progress.handled(),
                planned = progress.planned.load(Ordering::Relaxed),
                "cache warming: progress"
            );
        }
    }
}

/// The key a request for this row's input would use now.
pub(crate) fn key_of(
    model: &str,
    revision: &str,
    op: &EncoderOp,
    truncate: bool,
    row: &TopInput,
) -> CacheKey {
    encoder_key(
        model,
        revision,
        op,
        truncate,
        &row.text,
        row.pair.as_deref(),
    )
}

async fn warm_chunk(
    cache: &Cache,
    progress: &WarmProgress,
    handle: &Arc<EncoderHandle>,
    model: &str,
    op: &EncoderOp,
    truncate: bool,
    rows: &[TopInput],
) {
    let mut todo: Vec<(CacheKey, String, Option<String>)> = Vec::new();
    for r in rows {
        let k = key_of(model, &handle.revision, op, truncate, r);
        if cache.contains(&k) {
            progress.cached.fetch_add(1, Ordering::Relaxed);
        } else {
            todo.push((k, r.text.clone(), r.pair.clone()));
        }
    }
    if todo.is_empty() {
        return;
    }
    let asked = todo.len() as u64;
    let h = handle.clone();
    let tokenized = tokio::task::spawn_blocking(move || {
        todo.into_iter()
            .enumerate()
            .filter_map(|(i, (k, a, b))| {
                let input = match &b {
                    Some(b) => TextInput::Pair(&a, b),
                    None => TextInput::Single(&a),
                };
                h.info
                    .tokenizer
                    .encode(input, truncate, i)
                    .ok()
                    .map(|e| (k, e))
            })
            .collect::<Vec<_>>()
    })
    .await;
    let Ok(tokenized) = tokenized else {
        progress.failed.fetch_add(asked, Ordering::Relaxed);
        return;
    };
    // An input the tokenizer refuses now (e.g. a lower --max-input-tokens) is not warmed.
    let refused = asked - tokenized.len() as u64;
    let (keys, encodings): (Vec<CacheKey>, Vec<_>) = tokenized.into_iter().unzip();
    let n = keys.len() as u64;
    progress.failed.fetch_add(refused, Ordering::Relaxed);
    if n == 0 {
        return;
    }
    let deadline = Instant::now() + CHUNK_DEADLINE;
    match handle
        .run(encodings, op.clone(), "warm", Lane::Bulk, deadline)
        .await
    {
        Ok(out) => {
            let entries = keys
                .into_iter()
                .zip(out)
                .map(|(k, (enc, output))| {
                    (
                        k,
                        CachedValue::Encoder(EncoderResult::from_run(op, enc, output)),
                    )
                })
                .collect();
            cache.fill(model, entries);
            progress.warmed.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::warn!(model, error = %e, "cache warming: a batch failed");
            progress.failed.fetch_add(n, Ordering::Relaxed);
        }
    }
}
