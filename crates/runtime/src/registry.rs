//! The model registry: every configured model, loaded lazily on first use (concurrent first
//! requests load once) or eagerly at start, warmed up before it counts as ready, and kept under a
//! memory budget by unloading the least recently used idle models.

use crate::config::BatchConfig;
use crate::encoder_worker::EncoderHandle;
use crate::error::{Result, RuntimeError};
use crate::gen_worker::GeneratorHandle;
use crate::metrics as m;
use crate::shared_head::SharedHead;
use crate::spec::{ModelKind, ModelSpec, TASKS};
use crate::stats::Stats;
use nlpd_engine::generate::GenModel;
use nlpd_engine::{EncoderModel, EncoderOp, HeadKind, LoadOptions, TextInput};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone)]
pub enum Loaded {
    Encoder(Arc<EncoderHandle>),
    Generator(Arc<GeneratorHandle>),
}

impl Loaded {
    fn idle(&self) -> bool {
        match self {
            // Only the registry's own reference, nothing queued.
            Loaded::Encoder(h) => Arc::strong_count(h) == 1 && h.queue_depth() == 0,
            Loaded::Generator(h) => Arc::strong_count(h) == 1 && h.queue_depth() == 0,
        }
    }

    fn queue_depth(&self) -> usize {
        match self {
            Loaded::Encoder(h) => h.queue_depth(),
            Loaded::Generator(h) => h.queue_depth(),
        }
    }
}

enum State {
    Unloaded,
    Loaded(Loaded),
    Failed(String),
}

struct Entry {
    spec: ModelSpec,
    state: Mutex<State>,
    last_used_ms: AtomicU64,
    requests: AtomicU64,
}

/// One model as `GET /v1/models` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub task: String,
    pub kind: ModelKind,
    pub architecture: String,
    pub path: String,
    pub dtype: &'static str,
    /// The precision of an encoder's linear layers (`f32`, `int8`, `bf16`: the loaded model's,
    /// else what `--quantize` asks for) or `gguf-quantized`.
    pub precision: &'static str,
    pub device: &'static str,
    /// The implementation running a loaded model (`fast-bert`, `fast-bert-int8`,
    /// `fast-bert-bf16`, `candle-bert`, `candle-deberta-v2`, `candle-gguf`); `null` until it is
    /// loaded.
    pub backend: Option<&'static str>,
    /// The kernel running a loaded encoder's linear layers (`amx-bf16`, `avx512-bf16`,
    /// `avx2-fma (bf16 widened)`, `avx512-vnni`, `avx512-f32 (packed)`, `candle`, ...) or
    /// `candle-gguf`; `null` until it is loaded.
    pub kernel: Option<&'static str>,
    pub loaded: bool,
    pub bytes: u64,
    pub error: Option<String>,
    /// Unix time in ms of the last request (0: never).
    pub last_used_ms: u64,
    pub requests: u64,
    pub queue_depth: usize,
    pub default_for: Vec<String>,
}

/// (classifier, embedder) → the classifier's head when it can read the embedder's output.
type SharedHeads = BTreeMap<(String, String), Option<Arc<SharedHead>>>;

pub struct Registry {
    entries: BTreeMap<String, Arc<Entry>>,
    defaults: BTreeMap<String, String>,
    batch: BatchConfig,
    budget: Option<u64>,
    stats: Arc<Stats>,
    load_lock: tokio::sync::Mutex<()>,
    preloaded: Vec<String>,
    max_input_tokens: Option<usize>,
    load_options: LoadOptions,
    /// `shared_head` answers per (classifier, embedder), probed once.
    shared_heads: Mutex<SharedHeads>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Registry {
    /// `defaults`: task → model name overrides; other tasks default to their first model.
    pub fn new(
        specs: Vec<ModelSpec>,
        defaults: BTreeMap<String, String>,
        batch: BatchConfig,
        budget: Option<u64>,
        stats: Arc<Stats>,
    ) -> std::result::Result<Self, String> {
        let mut entries = BTreeMap::new();
        let mut task_defaults: BTreeMap<String, String> = BTreeMap::new();
        for s in specs {
            task_defaults
                .entry(s.task.clone())
                .or_insert_with(|| s.name.clone());
            if s.kind == ModelKind::Generator {
                task_defaults
                    .entry("generate".into())
                    .or_insert_with(|| s.name.clone());
            }
            let name = s.name.clone();
            let e = Arc::new(Entry {
                spec: s,
                state: Mutex::new(State::Unloaded),
                last_used_ms: AtomicU64::new(0),
                requests: AtomicU64::new(0),
            });
            if entries.insert(name.clone(), e).is_some() {
                return Err(format!("model name `{name}` is used twice"));
            }
        }
        for (task, name) in defaults {
            if !TASKS.contains(&task.as_str()) {
                return Err(format!(
                    "--default-model: unknown task `{task}` (tasks: {})",
                    TASKS.join(", ")
                ));
            }
            if !entries.contains_key(&name) {
                return Err(format!(
                    "--default-model {task}={name}: no model is named `{name}`"
                ));
            }
            task_defaults.insert(task, name);
        }
        Ok(Registry {
            entries,
            defaults: task_defaults,
            batch,
            budget,
            stats,
            load_lock: tokio::sync::Mutex::new(()),
            preloaded: Vec::new(),
            max_input_tokens: None,
            load_options: LoadOptions::default(),
            shared_heads: Mutex::new(BTreeMap::new()),
        })
    }

    /// Caps tokens per input below each model's own limit (`--max-input-tokens`).
    pub fn set_max_input_tokens(&mut self, cap: Option<usize>) {
        self.max_input_tokens = cap;
    }

    /// How encoders load: implementation (`--backend`) and precision (`--quantize`).
    pub fn set_load_options(&mut self, opts: LoadOptions) {
        self.load_options = opts;
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn spec(&self, name: &str) -> Option<&ModelSpec> {
        self.entries.get(name).map(|e| &e.spec)
    }

    /// The model a request names, or the task's default.
    pub fn resolve(&self, model: Option<&str>, task: &str) -> Result<String> {
        match model {
            Some(m) if self.entries.contains_key(m) => Ok(m.to_string()),
            Some(m) => Err(RuntimeError::UnknownModel(m.to_string())),
            None => self
                .defaults
                .get(task)
                .cloned()
                .ok_or_else(|| RuntimeError::NoModelForTask(task.to_string())),
        }
    }

    pub fn default_for(&self, task: &str) -> Option<&str> {
        self.defaults.get(task).map(String::as_str)
    }

    /// The head of `classifier` when it can run on `embedder`'s embeddings (see `SharedHead`),
    /// probed on first use and remembered.
    pub fn shared_head(&self, classifier: &str, embedder: &str) -> Option<Arc<SharedHead>> {
        let key = (classifier.to_string(), embedder.to_string());
        let mut known = self.shared_heads.lock().unwrap_or_else(|p| p.into_inner());
        known
            .entry(key)
            .or_insert_with(|| {
                let c = self.spec(classifier)?;
                let e = self.spec(embedder)?;
                SharedHead::probe(c, e).map(Arc::new)
            })
            .clone()
    }

    fn entry(&self, name: &str) -> Result<&Arc<Entry>> {
        self.entries
            .get(name)
            .ok_or_else(|| RuntimeError::UnknownModel(name.to_string()))
    }

    /// The loaded model, loading it first when needed.
    pub async fn get(&self, name: &str) -> Result<Loaded> {
        let entry = self.entry(name)?;
        entry.last_used_ms.store(now_ms(), Ordering::Relaxed);
        entry.requests.fetch_add(1, Ordering::Relaxed);
        match &*entry.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Loaded(l) => return Ok(l.clone()),
            // A failed load is retried by an explicit POST /v1/models/{name}/load only.
            State::Failed(message) => {
                return Err(RuntimeError::LoadFailed {
                    name: name.to_string(),
                    message: message.clone(),
                })
            }
            State::Unloaded => {}
        }
        self.load(name).await
    }

    pub async fn encoder(&self, name: &str) -> Result<Arc<EncoderHandle>> {
        match self.get(name).await? {
            Loaded::Encoder(h) => Ok(h),
            Loaded::Generator(_) => Err(RuntimeError::WrongTask {
                name: name.to_string(),
                task: "encoder tasks (it is a generative model)",
            }),
        }
    }

    pub async fn generator(&self, name: &str) -> Result<Arc<GeneratorHandle>> {
        match self.get(name).await? {
            Loaded::Generator(h) => Ok(h),
            Loaded::Encoder(_) => Err(RuntimeError::WrongTask {
                name: name.to_string(),
                task: "generation (it is an encoder)",
            }),
        }
    }

    /// Loads (and warms up) a model; a no-op when it is loaded. Failures are remembered for
    /// `/v1/models` and `/health/ready`, and retried by the next explicit load.
    pub async fn load(&self, name: &str) -> Result<Loaded> {
        let entry = self.entry(name)?.clone();
        let _guard = self.load_lock.lock().await;
        if let State::Loaded(l) = &*entry.state.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(l.clone());
        }
        self.make_room(&entry.spec)?;
        let spec = entry.spec.clone();
        let batch = self.batch.clone();
        let stats = self.stats.clone();
        let cap = self.max_input_tokens;
        let opts = self.load_options.clone();
        let started = Instant::now();
        let result =
            tokio::task::spawn_blocking(move || load_and_warm(&spec, batch, stats, cap, &opts))
                .await
                .map_err(|e| RuntimeError::Internal(format!("loader panicked: {e}")))
                .and_then(|r| r);
        let mut state = entry.state.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(loaded) => {
                tracing::info!(
                    model = name,
                    bytes = entry.spec.bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "model loaded and warmed up"
                );
                metrics::gauge!(m::MODEL_LOADED, "model" => name.to_string()).set(1.0);
                metrics::gauge!(m::MODEL_BYTES, "model" => name.to_string())
                    .set(entry.spec.bytes as f64);
                *state = State::Loaded(loaded.clone());
                Ok(loaded)
            }
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(model = name, error = %message, "model failed to load");
                metrics::counter!(m::MODEL_LOAD_FAILURES, "model" => name.to_string()).increment(1);
                *state = State::Failed(message.clone());
                Err(RuntimeError::LoadFailed {
                    name: name.to_string(),
                    message,
                })
            }
        }
    }

    /// Unloads a model (its worker finishes queued work first). Returns whether it was loaded.
    pub fn unload(&self, name: &str) -> Result<bool> {
        let entry = self.entry(name)?;
        let old = std::mem::replace(
            &mut *entry.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::Unloaded,
        );
        metrics::gauge!(m::MODEL_LOADED, "model" => name.to_string()).set(0.0);
        metrics::gauge!(m::MODEL_BYTES, "model" => name.to_string()).set(0.0);
        let was = matches!(old, State::Loaded(_));
        if was {
            tracing::info!(model = name, "model unloaded");
        }
        Ok(was)
    }

    fn loaded_bytes(&self) -> u64 {
        self.entries
            .values()
            .filter(|e| {
                matches!(
                    &*e.state.lock().unwrap_or_else(|p| p.into_inner()),
                    State::Loaded(_)
                )
            })
            .map(|e| e.spec.bytes)
            .sum()
    }

    /// Unloads least recently used idle models until `spec` fits the budget.
    fn make_room(&self, spec: &ModelSpec) -> Result<()> {
        let Some(budget) = self.budget else {
            return Ok(());
        };
        if spec.bytes > budget {
            return Err(RuntimeError::NeverFits {
                name: spec.name.clone(),
                needed: spec.bytes,
                budget,
            });
        }
        while self.loaded_bytes() + spec.bytes > budget {
            let victim = self
                .entries
                .values()
                .filter(|e| e.spec.name != spec.name)
                .filter(|e| matches!(&*e.state.lock().unwrap_or_else(|p| p.into_inner()), State::Loaded(l) if l.idle()))
                .min_by_key(|e| e.last_used_ms.load(Ordering::Relaxed));
            match victim {
                Some(v) => {
                    tracing::info!(model = %v.spec.name, for_model = %spec.name, "unloading least recently used model to stay in the memory budget");
                    self.unload(&v.spec.name)?;
                }
                None => {
                    return Err(RuntimeError::BudgetBusy {
                        name: spec.name.clone(),
                        needed: spec.bytes,
                        budget,
                    })
                }
            }
        }
        Ok(())
    }

    /// Loads every model now (`--preload`); they then count for readiness. Failures are logged
    /// and reported by readiness, the server stays up.
    pub async fn preload_all(&mut self) {
        self.preloaded = self.entries.keys().cloned().collect();
        let names = self.preloaded.clone();
        for name in names {
            let _ = self.load(&name).await;
        }
    }

    /// Sets every model's gauges (loaded, bytes, queue depth) and its load-failure counter to
    /// their current values, so they are on `/metrics` from the start (the server calls this
    /// once its recorder is installed; `--preload` may have loaded models before that).
    pub fn publish_metrics(&self) {
        for (name, e) in &self.entries {
            let (loaded, depth) = match &*e.state.lock().unwrap_or_else(|p| p.into_inner()) {
                State::Loaded(l) => (true, l.queue_depth()),
                _ => (false, 0),
            };
            let bytes = if loaded { e.spec.bytes } else { 0 };
            metrics::gauge!(m::MODEL_LOADED, "model" => name.clone()).set(loaded as u8 as f64);
            metrics::gauge!(m::MODEL_BYTES, "model" => name.clone()).set(bytes as f64);
            metrics::gauge!(m::QUEUE_DEPTH, "model" => name.clone()).set(depth as f64);
            metrics::counter!(m::MODEL_LOAD_FAILURES, "model" => name.clone()).increment(0);
        }
    }

    /// Ready when every preloaded model is loaded; otherwise the reasons.
    pub fn readiness(&self) -> std::result::Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        for name in &self.preloaded {
            if let Some(e) = self.entries.get(name) {
                match &*e.state.lock().unwrap_or_else(|p| p.into_inner()) {
                    State::Loaded(_) => {}
                    State::Unloaded => reasons.push(format!("model `{name}` is not loaded yet")),
                    State::Failed(msg) => {
                        reasons.push(format!("model `{name}` failed to load: {msg}"))
                    }
                }
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    pub fn statuses(&self) -> Vec<ModelStatus> {
        self.entries
            .values()
            .map(|e| {
                let state = e.state.lock().unwrap_or_else(|p| p.into_inner());
                let (loaded, error, depth) = match &*state {
                    State::Loaded(l) => (true, None, l.queue_depth()),
                    State::Unloaded => (false, None, 0),
                    State::Failed(m) => (false, Some(m.clone()), 0),
                };
                let backend = match &*state {
                    State::Loaded(Loaded::Encoder(h)) => Some(h.info.backend),
                    State::Loaded(Loaded::Generator(_)) => Some("candle-gguf"),
                    _ => None,
                };
                let kernel = match &*state {
                    State::Loaded(Loaded::Encoder(h)) => Some(h.info.kernel),
                    _ => None,
                };
                let precision = match (e.spec.kind, kernel) {
                    (ModelKind::Generator, _) => "gguf-quantized",
                    (_, Some(k)) => k.precision().precision(),
                    (_, None) => self.load_options.quantize.precision(),
                };
                ModelStatus {
                    name: e.spec.name.clone(),
                    task: e.spec.task.clone(),
                    kind: e.spec.kind,
                    architecture: e.spec.architecture.clone(),
                    path: e.spec.path.display().to_string(),
                    dtype: precision,
                    precision,
                    device: "cpu",
                    backend,
                    kernel: match (kernel, backend) {
                        (Some(k), _) => Some(k.as_str()),
                        (None, Some(b)) => Some(b),
                        (None, None) => None,
                    },
                    loaded,
                    bytes: if loaded { e.spec.bytes } else { 0 },
                    error,
                    last_used_ms: e.last_used_ms.load(Ordering::Relaxed),
                    requests: e.requests.load(Ordering::Relaxed),
                    queue_depth: depth,
                    default_for: self
                        .defaults
                        .iter()
                        .filter(|(_, n)| **n == e.spec.name)
                        .map(|(t, _)| t.clone())
                        .collect(),
                }
            })
            .collect()
    }

    /// Closes every worker (used at shutdown after in-flight requests finished).
    pub fn shutdown(&self) {
        for name in self.entries.keys() {
            let _ = self.unload(name);
        }
    }
}

const WARMUP_TEXT: &str = "nlpd warms this model up with one forward pass at a typical sentence length of about thirty word pieces.";

fn load_and_warm(
    spec: &ModelSpec,
    batch: BatchConfig,
    stats: Arc<Stats>,
    cap: Option<usize>,
    opts: &LoadOptions,
) -> Result<Loaded> {
    let precision = match spec.kind {
        ModelKind::Encoder => opts.quantize.as_str(),
        ModelKind::Generator => "gguf",
    };
    let revision = crate::cache::revision_of(&spec.weights, cap, precision);
    match spec.kind {
        ModelKind::Encoder => {
            let mut model = EncoderModel::load_opts(&spec.path, opts)?;
            if let Some(cap) = cap {
                model.limit_tokens(cap)?;
            }
            let enc = model.encode(&[TextInput::Single(WARMUP_TEXT)], true)?;
            let op = match model.config().head {
                HeadKind::Base => EncoderOp::Embed {
                    normalize: false,
                    dimensions: None,
                },
                HeadKind::SequenceClassification => EncoderOp::Classify,
                HeadKind::TokenClassification => EncoderOp::Tokens,
            };
            let items: Vec<_> = (0..4).map(|_| (&enc[0], &op)).collect();
            model.run_batch(&items)?;
            Ok(Loaded::Encoder(EncoderHandle::spawn(
                &spec.name, revision, model, batch, stats,
            )?))
        }
        ModelKind::Generator => {
            let mut model = GenModel::load(&spec.path)?;
            let ids = model.encode(WARMUP_TEXT)?;
            model.next_token_logits(&ids)?;
            Ok(Loaded::Generator(GeneratorHandle::spawn(
                &spec.name,
                revision,
                model,
                batch.max_queue,
                stats,
            )?))
        }
    }
}
