//! Shared server state and the settings the routes read.

use metrics_exporter_prometheus::PrometheusHandle;
use nlpd_runtime::evidence::Corpus;
use nlpd_runtime::store::PredictionLog;
use nlpd_runtime::{Cache, CacheConfig, Registry, Stats, Store, StoreConfig};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer tokens accepted; empty = no authentication.
    pub api_keys: HashSet<String>,
    pub max_request_bytes: usize,
    pub max_inputs_per_request: usize,
    /// Most tokens one generation request may ask for; more get 400.
    pub max_new_tokens: usize,
    pub request_timeout: Duration,
    /// Lists longer than this go to the bulk lane.
    pub bulk_threshold: usize,
    /// Requests per second per API key (per client IP without keys); `None`: unlimited.
    pub rate_limit: Option<f64>,
    /// The result cache; `None`: off (the library default; `nlpd serve` turns it on).
    pub cache: Option<CacheConfig>,
    /// The prediction store; `None`: off (the library default; `nlpd serve` turns it on with a
    /// SQLite file in the data dir).
    pub store: Option<StoreConfig>,
    /// How often the evidence index checks the store for documents another replica added,
    /// replaced or deleted (and rebuilds when there are); `None`: never after start.
    pub evidence_refresh: Option<Duration>,
    /// After the stop signal: how long to keep serving while `/health/ready` answers 503, so
    /// load balancers take the replica out first (`nlpd serve` default 5 s; 0 here).
    pub shutdown_delay: Duration,
    /// Then: how long in-flight requests may take to finish before they are cut off.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_keys: HashSet::new(),
            max_request_bytes: 8 * 1024 * 1024,
            max_inputs_per_request: 2048,
            max_new_tokens: 4096,
            request_timeout: Duration::from_secs(30),
            bulk_threshold: 8,
            rate_limit: None,
            cache: None,
            store: None,
            evidence_refresh: Some(Duration::from_secs(10)),
            shutdown_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub config: Arc<ServerConfig>,
    pub prometheus: PrometheusHandle,
    /// Unix seconds when the server started (OpenAI's `created` of each model).
    pub started_unix_s: u64,
    pub limiter: Option<Arc<crate::ratelimit::RateLimiter>>,
    pub cache: Option<Arc<Cache>>,
    pub store: Option<Arc<Store>>,
    /// The evidence corpus of `/v1/verify` (with the store; `None` without one).
    pub corpus: Option<Arc<Corpus>>,
    /// Draining after the stop signal, and the requests in flight.
    pub drain: Arc<crate::drain::Drain>,
}

impl AppState {
    pub fn stats(&self) -> &Arc<Stats> {
        self.registry.stats()
    }

    /// The prediction log, when the store is on and logging.
    pub fn predictions(&self) -> Option<&PredictionLog> {
        self.store.as_ref().and_then(|s| s.log())
    }
}

/// What a handler tells the metrics middleware about the request it served.
#[derive(Debug, Clone)]
pub struct Served {
    pub task: &'static str,
    pub model: String,
    pub inputs: usize,
}

/// Marks a streamed response: its latency is recorded when the stream ends, not at the headers.
#[derive(Debug, Clone, Copy)]
pub struct Streamed;
