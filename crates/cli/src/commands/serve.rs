//! `nlpd serve`: every model of the pack (or the models named with --model) over HTTP.

use anyhow::{bail, Context, Result};
use nlpd_runtime::cache::{Policy, RedisConfig};
use nlpd_runtime::config::{parse_bytes, parse_duration};
use nlpd_runtime::{BatchConfig, ModelSpec, Registry, Stats, PACK};
use nlpd_runtime::{CacheConfig, StoreConfig};
use nlpd_server::ServerConfig;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub mod config;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Every setting is a flag, an NLPD_* environment variable ([env: ...]) and a key of \
the --config TOML file (the flag's name: `max-batch-size = 32`, `cache-ttl = \"10m\"`). \
Precedence: defaults < --config file < NLPD_* environment < flags."
)]
pub struct Args {
    /// TOML file with any of these settings, keys as the flag names (`max-batch-tokens = 8192`,
    /// `cache-ttl = "10m"`, `model = ["a=DIR", "b=DIR"]`); an unknown key or a badly typed value
    /// stops the start, naming the key and the line. Precedence: defaults < this file < NLPD_*
    /// environment < flags.
    #[arg(long, env = "NLPD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "NLPD_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, env = "NLPD_PORT", default_value_t = 8080)]
    pub port: u16,
    /// A model to serve, NAME=PATH or NAME=PATH:TASK (repeatable or comma-separated). PATH is a
    /// Hugging Face model directory or a GGUF file; the task (embed, classify, entities, generate,
    /// nli, rerank) is inferred from the config. Without any, the installed pack is served.
    #[arg(long = "model", env = "NLPD_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,
    /// The default model of a task, TASK=NAME (repeatable or comma-separated).
    #[arg(
        long = "default-model",
        env = "NLPD_DEFAULT_MODELS",
        value_delimiter = ','
    )]
    pub default_models: Vec<String>,
    /// The prompt an embedding model puts before every input when a request names none,
    /// MODEL=PROMPT_NAME (repeatable or comma-separated): one of the prompts in the model's
    /// config_sentence_transformers.json (it overrides the file's `default_prompt_name`).
    #[arg(
        long = "default-prompt",
        env = "NLPD_DEFAULT_PROMPTS",
        value_delimiter = ','
    )]
    pub default_prompts: Vec<String>,
    #[command(flatten)]
    pub engine: super::EngineArgs,
    /// Load and warm up every model at start (otherwise each loads on first use).
    #[arg(long, env = "NLPD_PRELOAD")]
    pub preload: bool,
    /// Most bytes of model weights loaded at once (e.g. 2GiB); least recently used idle models unload.
    #[arg(long, env = "NLPD_MEMORY_BUDGET", value_parser = parse_bytes)]
    pub memory_budget: Option<u64>,
    /// Most padded tokens in one forward pass.
    #[arg(long, env = "NLPD_MAX_BATCH_TOKENS", default_value_t = 16384)]
    pub max_batch_tokens: usize,
    /// Most inputs in one forward pass.
    #[arg(long, env = "NLPD_MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,
    /// Microseconds a free worker waits for a batch to fill (0: never delay).
    #[arg(long, env = "NLPD_MAX_WAIT_US", default_value_t = 0)]
    pub max_wait_us: u64,
    /// Most inputs waiting per model; beyond it requests get 429 with Retry-After.
    #[arg(long, env = "NLPD_MAX_QUEUE", default_value_t = 4096)]
    pub max_queue: usize,
    /// Accepted API key (repeatable or comma-separated); clients send `Authorization: Bearer KEY`.
    #[arg(
        long = "api-key",
        env = "NLPD_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// File with one API key per line.
    #[arg(long, env = "NLPD_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Most tokens per input (below the model's own limit); longer inputs are truncated, or refused
    /// with 422 when the request sets `truncate: false`.
    #[arg(long, env = "NLPD_MAX_INPUT_TOKENS")]
    pub max_input_tokens: Option<usize>,
    /// Largest request body (e.g. 8MiB); larger bodies get 413.
    #[arg(long, env = "NLPD_MAX_REQUEST_BYTES", default_value = "8MiB", value_parser = parse_bytes)]
    pub max_request_bytes: u64,
    /// Most inputs in one request; more get 413.
    #[arg(long, env = "NLPD_MAX_INPUTS_PER_REQUEST", default_value_t = 2048)]
    pub max_inputs_per_request: usize,
    /// Most tokens one generation request may ask for (`max_tokens`, `max_completion_tokens`,
    /// `max_new_tokens`); more get 400 naming the field, and /openapi.json states the limit.
    #[arg(long, env = "NLPD_MAX_NEW_TOKENS", default_value_t = 4096)]
    pub max_new_tokens: usize,
    /// Requests per second allowed per API key (per client IP without keys), with bursts of the
    /// same size; beyond it 429 with Retry-After. Unlimited when unset.
    #[arg(long, env = "NLPD_RATE_LIMIT")]
    pub rate_limit: Option<f64>,
    /// How long a request may take (queue + compute) before 504, in seconds or as a duration
    /// (`30`, `2m`); requests can lower it with `timeout_ms`.
    #[arg(long, env = "NLPD_REQUEST_TIMEOUT", default_value = "30", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Bytes of results the in-process (L1) cache holds (e.g. 256MiB, 1GiB). Results are keyed by
    /// model, model revision, operation, every output-affecting parameter and the input; a
    /// repeated input is answered without running the model. 0 turns L1 off (with no
    /// --redis-url, the cache is off altogether).
    #[arg(long, env = "NLPD_CACHE_L1_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub cache_l1_bytes: u64,
    /// L1 eviction policy: `tinylfu` (admits by frequency, resists one-off scans) or `lru`.
    #[arg(long, env = "NLPD_CACHE_POLICY", default_value = "tinylfu", value_parser = parse_policy)]
    pub cache_policy: Policy,
    /// How long a cached result lives, in L1 and in Redis (e.g. 10m, 1h, 1d).
    #[arg(long, env = "NLPD_CACHE_TTL", default_value = "1h", value_parser = parse_duration)]
    pub cache_ttl: Duration,
    /// Redis for the shared L2 cache, e.g. redis://127.0.0.1:6379/0 (off when unset). Read after
    /// an L1 miss, written after compute in the background. A Redis that is down, slow or returns
    /// garbage never fails a request: a circuit breaker skips it and nlpd serves from L1 + compute.
    #[arg(long, env = "NLPD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key: one per deployment, so deployments sharing a Redis never mix
    /// results (and `POST /v1/cache/clear` deletes only this prefix).
    #[arg(long, env = "NLPD_CACHE_PREFIX", default_value = "nlpd:")]
    pub cache_prefix: String,
    /// Longest wait for a Redis read on the request path (ms); a slower Redis counts as a miss.
    #[arg(long, env = "NLPD_REDIS_TIMEOUT_MS", default_value_t = 20)]
    pub redis_timeout_ms: u64,
    /// Consecutive Redis failures (refused, timed out, undecodable) that open the circuit breaker.
    #[arg(long, env = "NLPD_REDIS_BREAKER_FAILURES", default_value_t = 5)]
    pub redis_breaker_failures: u32,
    /// How long the open breaker skips Redis before one probe (e.g. 5s); a successful probe
    /// closes it.
    #[arg(long, env = "NLPD_REDIS_BREAKER_COOLDOWN", default_value = "5s", value_parser = parse_duration)]
    pub redis_breaker_cooldown: Duration,
    /// Directory of nlpd's own files: the default prediction store (`nlpd.db`). Created if
    /// missing.
    #[arg(long, env = "NLPD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The prediction store: `sqlite://PATH` or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
    /// (PostgreSQL without TLS), or `off`. Default: the SQLite file `nlpd.db` in --data-dir.
    /// Migrations run at start. A PostgreSQL that is down does not stop nlpd: log rows are
    /// dropped (and counted) until it answers.
    #[arg(long, env = "NLPD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Log every served encoder result (cache hits included) to the store: input hash, model,
    /// task, parameters, the compact result, latency and a count per distinct input. Written in
    /// batches in the background; never slows or fails a request. `--log-predictions=false`
    /// turns it off.
    #[arg(long, env = "NLPD_LOG_PREDICTIONS", default_value_t = true, action = clap::ArgAction::Set,
        num_args = 0..=1, default_missing_value = "true")]
    pub log_predictions: bool,
    /// Also keep each input's text in the prediction log (without it: only a hash of the input,
    /// privacy by default). Cache warming can only recompute inputs whose text was kept.
    #[arg(long, env = "NLPD_LOG_INPUTS")]
    pub log_inputs: bool,
    /// At start, compute the N most served logged inputs of each model (those logged with
    /// --log-inputs) into the result cache, so a restart does not start cold. Runs in the bulk
    /// lane once the server is ready (it never delays readiness); progress is logged.
    #[arg(long, env = "NLPD_WARM_CACHE", default_value_t = 0)]
    pub warm_cache: usize,
    /// Write the prediction log when this many rows wait...
    #[arg(long, env = "NLPD_STORE_FLUSH_ROWS", default_value_t = 256)]
    pub store_flush_rows: usize,
    /// ...or this long after the first waiting row (e.g. 200ms, 1s).
    #[arg(long, env = "NLPD_STORE_FLUSH_INTERVAL", default_value = "200ms", value_parser = parse_duration)]
    pub store_flush_interval: Duration,
    /// Rows the prediction log's queue holds; when it is full (a slow or unreachable database)
    /// rows are dropped and counted in nlpd_store_dropped_rows_total.
    #[arg(long, env = "NLPD_STORE_QUEUE_ROWS", default_value_t = 16384)]
    pub store_queue_rows: usize,
    /// How often the evidence index (of /v1/verify) asks the store whether another replica on
    /// the same database added, replaced or deleted documents, and rebuilds itself if so
    /// (e.g. 10s; 0 = only at start).
    #[arg(long, env = "NLPD_EVIDENCE_REFRESH", default_value = "10s", value_parser = parse_duration)]
    pub evidence_refresh: Duration,
    /// On SIGTERM or SIGINT, how long to keep serving while /health/ready answers 503
    /// `draining` (e.g. 5s, 0), so load balancers and Kubernetes take the replica out of rotation
    /// before it stops accepting. A second signal stops at once.
    #[arg(long, env = "NLPD_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// After the delay: how long in-flight requests may take to finish before they are cut off
    /// (the queued prediction log is then written, up to 10 s more). Orchestrators should allow
    /// delay + timeout + 10 s before killing the process.
    #[arg(long, env = "NLPD_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// `--cache-policy`: `tinylfu` (also `tiny-lfu`) or `lru`, any case.
pub(crate) fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse()
}

/// The prediction store settings from the flags (`None`: `--database-url off`).
fn store_config(args: &Args) -> Result<Option<StoreConfig>> {
    let url = match args.database_url.as_deref().map(str::trim) {
        Some("off") | Some("none") => {
            if args.warm_cache > 0 {
                bail!("--warm-cache needs the prediction store (--database-url is off)");
            }
            return Ok(None);
        }
        Some(u) if !u.is_empty() => u.to_string(),
        _ => nlpd_runtime::store::sqlite_url(&args.data_dir.join("nlpd.db")),
    };
    nlpd_runtime::store::Backend::of(&url)
        .map_err(anyhow::Error::msg)
        .context("--database-url")?;
    Ok(Some(StoreConfig {
        log_predictions: args.log_predictions,
        log_inputs: args.log_inputs,
        warm_cache: args.warm_cache,
        flush_rows: args.store_flush_rows.max(1),
        flush_interval: args.store_flush_interval,
        queue_rows: args.store_queue_rows.max(1),
        ..StoreConfig::new(url)
    }))
}

/// The result cache settings from the flags (`None`: off).
fn cache_config(args: &Args) -> Result<Option<CacheConfig>> {
    let (l1_bytes, policy, ttl) = (args.cache_l1_bytes, args.cache_policy, args.cache_ttl);
    if ttl.is_zero() {
        bail!("--cache-ttl must be longer than 0 (turn the cache off with --cache-l1-bytes 0)");
    }
    let redis = match args.redis_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => {
            if args.redis_timeout_ms == 0 {
                bail!("--redis-timeout-ms must be at least 1");
            }
            Some(RedisConfig {
                url: url.to_string(),
                prefix: args.cache_prefix.clone(),
                timeout: Duration::from_millis(args.redis_timeout_ms),
                breaker_failures: args.redis_breaker_failures.max(1),
                breaker_cooldown: args.redis_breaker_cooldown,
            })
        }
    };
    if l1_bytes == 0 && redis.is_none() {
        return Ok(None);
    }
    Ok(Some(CacheConfig {
        l1_bytes,
        policy,
        ttl,
        redis,
    }))
}

fn model_specs(args: &Args, models_dir: &Path) -> Result<Vec<ModelSpec>> {
    let mut specs = Vec::new();
    if args.models.is_empty() {
        for m in PACK {
            let dir = models_dir.join(m.dir);
            if dir.exists() {
                let task = if m.task == "explain" {
                    "generate"
                } else {
                    m.task
                };
                specs
                    .push(ModelSpec::inspect(m.dir, &dir, Some(task)).map_err(anyhow::Error::msg)?);
            }
        }
        if specs.is_empty() {
            bail!(
                "no --model given and no pack model is installed in {}: run `make models`",
                models_dir.display()
            );
        }
        return Ok(specs);
    }
    for raw in &args.models {
        let (name, rest) = raw
            .split_once('=')
            .with_context(|| format!("--model `{raw}`: expected NAME=PATH or NAME=PATH:TASK"))?;
        let (path, task) = match rest.rsplit_once(':') {
            Some((p, t)) if nlpd_runtime::spec::TASKS.contains(&t) => (p, Some(t)),
            _ => (rest, None),
        };
        let path = nlpd_runtime::resolve_model(path, models_dir)?;
        specs.push(
            ModelSpec::inspect(name, &path, task)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--model {raw}"))?,
        );
    }
    Ok(specs)
}

/// `--default-prompt MODEL=PROMPT_NAME`: the prompt must be one of the model's.
fn set_default_prompts(specs: &mut [ModelSpec], flags: &[String]) -> Result<()> {
    for d in flags {
        let (model, prompt) = d
            .split_once('=')
            .with_context(|| format!("--default-prompt `{d}`: expected MODEL=PROMPT_NAME"))?;
        let spec = specs
            .iter_mut()
            .find(|s| s.name == model)
            .with_context(|| format!("--default-prompt {d}: no model is named `{model}`"))?;
        spec.prompts
            .set_default(prompt)
            .map_err(|e| anyhow::anyhow!("--default-prompt {d}: {e}"))?;
        eprintln!("nlpd: model {model}: default prompt `{prompt}`");
    }
    Ok(())
}

pub fn run(args: Args, models_dir: &Path) -> Result<usize> {
    let cache = cache_config(&args)?;
    let store = store_config(&args)?;
    if store.as_ref().is_some_and(|s| s.warm_cache > 0) && cache.is_none() {
        bail!("--warm-cache fills the result cache, which is off (--cache-l1-bytes 0 and no --redis-url)");
    }
    let mut specs = model_specs(&args, models_dir)?;
    set_default_prompts(&mut specs, &args.default_prompts)?;
    let mut defaults = BTreeMap::new();
    for d in &args.default_models {
        let (task, name) = d
            .split_once('=')
            .with_context(|| format!("--default-model `{d}`: expected TASK=NAME"))?;
        defaults.insert(task.to_string(), name.to_string());
    }
    let budget = args.memory_budget;
    let max_request_bytes = usize::try_from(args.max_request_bytes)
        .context("--max-request-bytes is larger than this machine's address space")?;
    if args.request_timeout.is_zero() {
        bail!("--request-timeout must be longer than 0");
    }
    if let Some(r) = args.rate_limit {
        if !(r > 0.0 && r.is_finite()) {
            bail!("--rate-limit must be a positive number of requests per second");
        }
    }
    let mut keys: HashSet<String> = args
        .api_keys
        .iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(f) = &args.api_key_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read --api-key-file {}", f.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    let batch = BatchConfig {
        max_batch_tokens: args.max_batch_tokens.max(1),
        max_batch_size: args.max_batch_size.max(1),
        max_wait: Duration::from_micros(args.max_wait_us),
        max_queue: args.max_queue.max(1),
    };
    let config = ServerConfig {
        cache: cache.clone(),
        store: store.clone(),
        api_keys: keys,
        max_request_bytes,
        max_inputs_per_request: args.max_inputs_per_request.max(1),
        max_new_tokens: args.max_new_tokens.max(1),
        request_timeout: args.request_timeout,
        rate_limit: args.rate_limit,
        evidence_refresh: Some(args.evidence_refresh),
        shutdown_delay: args.shutdown_delay,
        shutdown_timeout: args.shutdown_timeout,
        ..ServerConfig::default()
    };
    tracing::info!(
        host = %args.host, port = args.port, preload = args.preload, memory_budget = ?budget,
        max_batch_tokens = batch.max_batch_tokens, max_batch_size = batch.max_batch_size,
        max_wait_us = args.max_wait_us, max_queue = batch.max_queue, api_keys = config.api_keys.len(),
        max_input_tokens = ?args.max_input_tokens, max_request_bytes, max_inputs_per_request = config.max_inputs_per_request,
        request_timeout_s = args.request_timeout.as_secs_f64(), "effective configuration (API keys redacted)"
    );
    eprintln!("nlpd: configuration: backend={} quantize={} host={} port={} preload={} memory_budget={} max_batch_tokens={} max_batch_size={} max_wait_us={} max_queue={} api_keys={} max_input_tokens={} max_request_bytes={} max_inputs_per_request={} request_timeout={}s rate_limit={} shutdown_delay={}s shutdown_timeout={}s",
        args.engine.backend.as_str(), args.engine.quantize.as_str(), args.host, args.port, args.preload, budget.map(|b| b.to_string()).unwrap_or_else(|| "none".into()), batch.max_batch_tokens, batch.max_batch_size,
        args.max_wait_us, batch.max_queue, if config.api_keys.is_empty() { "none".to_string() } else { format!("{} (redacted)", config.api_keys.len()) },
        args.max_input_tokens.map(|n| n.to_string()).unwrap_or_else(|| "model limit".into()), max_request_bytes, config.max_inputs_per_request, args.request_timeout.as_secs_f64(),
        args.rate_limit.map(|r| format!("{r}/s per client")).unwrap_or_else(|| "none".into()),
        config.shutdown_delay.as_secs_f64(), config.shutdown_timeout.as_secs_f64());
    match &cache {
        None => eprintln!("nlpd: cache: off"),
        Some(c) => eprintln!(
            "nlpd: cache: l1={} bytes policy={} ttl={}s l2={}",
            c.l1_bytes,
            c.policy.as_str(),
            c.ttl.as_secs_f64(),
            c.redis
                .as_ref()
                .map(|r| format!(
                    "{} prefix={} timeout={}ms breaker={} failures/{}s",
                    r.redacted_url(),
                    r.prefix,
                    r.timeout.as_millis(),
                    r.breaker_failures,
                    r.breaker_cooldown.as_secs_f64()
                ))
                .unwrap_or_else(|| "off".into())
        ),
    }
    match &store {
        None => eprintln!("nlpd: store: off"),
        Some(s) => eprintln!(
            "nlpd: store: {} log_predictions={} log_inputs={} warm_cache={} flush={} rows/{}ms queue={} rows",
            s.redacted_url(),
            s.log_predictions,
            s.log_inputs,
            s.warm_cache,
            s.flush_rows,
            s.flush_interval.as_millis(),
            s.queue_rows
        ),
    }
    for s in &specs {
        eprintln!(
            "nlpd: model {} task={} kind={:?} arch={} bytes={} path={}",
            s.name,
            s.task,
            s.kind,
            s.architecture,
            s.bytes,
            s.path.display()
        );
    }
    let stats = Arc::new(Stats::default());
    let mut registry =
        Registry::new(specs, defaults, batch, budget, stats).map_err(anyhow::Error::msg)?;
    registry.set_max_input_tokens(args.max_input_tokens);
    registry.set_load_options(args.engine.load_options());
    // Before anything records a metric (--preload does): the recorder drops what comes earlier.
    nlpd_server::app::prometheus();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        if args.preload {
            registry.preload_all().await;
        }
        let registry = Arc::new(registry);
        // Caught from here on (a Ctrl-C during a long --preload still stops at once).
        let signals = StopSignals::new()?;
        eprintln!("nlpd: listening on http://{addr}");
        println!("listening on http://{addr}");
        nlpd_server::serve(listener, registry, config, signals.first_then_force())
            .await
            .context("server error")?;
        eprintln!("nlpd: stopped");
        Ok(0)
    })
}

/// SIGTERM and SIGINT, caught from creation on: made before the server says it listens, so a
/// signal that comes at once drains too instead of killing the process.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// The name of the next signal.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }

    /// Resolves at the first signal (the server then drains); from then on a second one exits
    /// the process at once (status 1), without draining.
    async fn first_then_force(mut self) {
        let first = self.next().await;
        eprintln!(
            "nlpd: {first}: draining (/health/ready answers 503), then finishing in-flight requests; \
             a second signal stops at once"
        );
        tokio::spawn(async move {
            let second = self.next().await;
            eprintln!("nlpd: {second} again: stopping now, without draining");
            std::process::exit(1);
        });
    }
}
