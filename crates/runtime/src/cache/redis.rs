//! L2: Redis, shared by every replica. Reads happen after an L1 miss under a short timeout;
//! writes go through a bounded channel to one writer task that pipelines them (never on the
//! response path). Anything that goes wrong (refused, slow, a value that does not decode) is a
//! miss for the request and a failure for the circuit breaker, never an error.

use super::breaker::{Breaker, BreakerState, Permit};
use super::codec::CachedValue;
use super::key::CacheKey;
use crate::metrics as m;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// L2 settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    /// Prepended to every key (one per deployment).
    pub prefix: String,
    /// Longest wait for one Redis call (connect included) on the request path.
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe.
    pub breaker_cooldown: Duration,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: "nlpd:".into(),
            timeout: Duration::from_millis(20),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(5),
        }
    }

    /// The URL with any password hidden.
    pub fn redacted_url(&self) -> String {
        match (self.url.find("://"), self.url.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                format!("{}://***@{}", &self.url[..s], &self.url[at + 1..])
            }
            _ => self.url.clone(),
        }
    }
}

/// Encoded values of one request, waiting to be written.
type WriteBatch = Vec<(CacheKey, Vec<u8>)>;

/// Writes queued at most (batches of one request each); beyond it writes are dropped and counted.
const WRITE_QUEUE: usize = 1024;
/// Keys per pipelined write.
const WRITE_BATCH: usize = 256;

#[derive(Default)]
pub(crate) struct L2Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    pub skipped: AtomicU64,
    pub writes: AtomicU64,
    pub write_bytes: AtomicU64,
    pub writes_dropped: AtomicU64,
}

struct Shared {
    cfg: RedisConfig,
    ttl: Duration,
    client: Option<redis::Client>,
    conn: Mutex<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
    breaker: Breaker,
    counters: L2Counters,
}

pub(crate) struct L2 {
    shared: Arc<Shared>,
    writer: OnceLock<mpsc::Sender<WriteBatch>>,
}

#[derive(Debug, thiserror::Error)]
enum L2Error {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("invalid redis url")]
    NoClient,
}

impl L2Error {
    fn kind(&self) -> &'static str {
        match self {
            L2Error::Timeout(_) => "timeout",
            L2Error::Redis(_) | L2Error::NoClient => "redis",
        }
    }
}

impl L2 {
    /// A URL that does not parse leaves L2 permanently failing (logged), never the server down.
    pub fn new(cfg: RedisConfig, ttl: Duration) -> Self {
        let client = match redis::Client::open(cfg.url.as_str()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(url = %cfg.redacted_url(), error = %e, "--redis-url is not usable; L2 cache disabled");
                None
            }
        };
        metrics::gauge!(m::REDIS_BREAKER_STATE).set(BreakerState::Closed.gauge());
        L2 {
            shared: Arc::new(Shared {
                breaker: Breaker::new(cfg.breaker_failures, cfg.breaker_cooldown),
                cfg,
                ttl,
                client,
                conn: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                counters: L2Counters::default(),
            }),
            writer: OnceLock::new(),
        }
    }

    pub fn config(&self) -> &RedisConfig {
        &self.shared.cfg
    }

    pub fn counters(&self) -> &L2Counters {
        &self.shared.counters
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.shared.breaker.state()
    }

    pub fn breaker_opened_total(&self) -> u64 {
        self.shared.breaker.opened_total()
    }

    /// Looks every key up in one round trip. `None` for a key: a miss, or Redis unusable.
    pub async fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<CachedValue>> {
        // Starts the background tasks (writer, memory gauge) with the first use.
        let _ = self.writer();
        let s = &self.shared;
        let misses = || vec![None; keys.len()];
        let Some(permit) = s.permit() else {
            s.counters
                .skipped
                .fetch_add(keys.len() as u64, Ordering::Relaxed);
            return misses();
        };
        let names: Vec<String> = keys.iter().map(|k| s.redis_key(k)).collect();
        let result = s
            .call(s.cfg.timeout, |mut c| async move {
                let mut cmd = redis::cmd("MGET");
                cmd.arg(&names);
                cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut c).await
            })
            .await;
        let raw = match result {
            Ok(v) if v.len() == keys.len() => v,
            Ok(_) => {
                s.fail(permit, "get", "garbage");
                return misses();
            }
            Err(e) => {
                s.fail(permit, "get", e.kind());
                tracing::debug!(error = %e, "redis read failed");
                return misses();
            }
        };
        let mut garbage = false;
        let out: Vec<Option<CachedValue>> = raw
            .into_iter()
            .map(|v| match v.map(|b| CachedValue::decode(&b)) {
                None => {
                    s.counters.misses.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(m::CACHE_REQUESTS, "level" => "l2", "result" => "miss")
                        .increment(1);
                    None
                }
                Some(Ok(v)) => {
                    s.counters.hits.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(m::CACHE_REQUESTS, "level" => "l2", "result" => "hit")
                        .increment(1);
                    Some(v)
                }
                Some(Err(e)) => {
                    garbage = true;
                    tracing::debug!(error = %e, "redis value does not decode");
                    s.counters.misses.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(m::CACHE_REQUESTS, "level" => "l2", "result" => "miss")
                        .increment(1);
                    None
                }
            })
            .collect();
        if garbage {
            s.fail(permit, "get", "decode");
        } else {
            s.succeed(permit);
        }
        out
    }

    /// Queues values for writing (off the response path); a full queue drops them (counted).
    pub fn write(&self, items: WriteBatch) {
        if items.is_empty() {
            return;
        }
        let n = items.len() as u64;
        let Some(tx) = self.writer() else {
            self.shared
                .counters
                .writes_dropped
                .fetch_add(n, Ordering::Relaxed);
            return;
        };
        if tx.try_send(items).is_err() {
            self.shared
                .counters
                .writes_dropped
                .fetch_add(n, Ordering::Relaxed);
            metrics::counter!(m::CACHE_L2_WRITES_DROPPED).increment(n);
        }
    }

    /// The writer task, started on first use inside the server's runtime.
    fn writer(&self) -> Option<&mpsc::Sender<WriteBatch>> {
        if let Some(tx) = self.writer.get() {
            return Some(tx);
        }
        let rt = tokio::runtime::Handle::try_current().ok()?;
        Some(self.writer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(WRITE_QUEUE);
            rt.spawn(write_loop(self.shared.clone(), rx));
            rt.spawn(memory_loop(Arc::downgrade(&self.shared)));
            tx
        }))
    }

    /// Deletes every key under the prefix (SCAN + UNLINK); returns how many.
    pub async fn clear(&self) -> Result<u64, String> {
        let s = &self.shared;
        let pattern = format!("{}*", escape_glob(&s.cfg.prefix));
        s.call(Duration::from_secs(30), |mut c| async move {
            let mut cursor: u64 = 0;
            let mut deleted = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await?;
                if !keys.is_empty() {
                    let n: u64 = redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await?;
                    deleted += n;
                }
                if next == 0 {
                    return Ok(deleted);
                }
                cursor = next;
            }
        })
        .await
        .map_err(|e| e.to_string())
    }
}

fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Shared {
    fn redis_key(&self, k: &CacheKey) -> String {
        format!("{}{}", self.cfg.prefix, k.hex())
    }

    fn permit(&self) -> Option<Permit> {
        let (permit, change) = self.breaker.allow(Instant::now());
        self.report(change);
        permit
    }

    fn succeed(&self, permit: Permit) {
        let change = self.breaker.success(permit);
        self.report(change);
    }

    fn fail(&self, permit: Permit, op: &'static str, kind: &'static str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::CACHE_L2_ERRORS, "op" => op, "kind" => kind).increment(1);
        let change = self.breaker.failure(permit, Instant::now());
        self.report(change);
    }

    /// Logs a breaker state change (once per change) and sets the gauge.
    fn report(&self, change: Option<BreakerState>) {
        let Some(state) = change else { return };
        metrics::gauge!(m::REDIS_BREAKER_STATE).set(state.gauge());
        let url = self.cfg.redacted_url();
        match state {
            BreakerState::Open => tracing::warn!(
                %url,
                failures = self.cfg.breaker_failures,
                cooldown_ms = self.cfg.breaker_cooldown.as_millis() as u64,
                "redis circuit breaker open: serving from L1 and compute until a probe succeeds"
            ),
            BreakerState::HalfOpen => {
                tracing::info!(%url, "redis circuit breaker half-open: probing redis")
            }
            BreakerState::Closed => {
                tracing::info!(%url, "redis circuit breaker closed: L2 cache in use again")
            }
        }
    }

    /// Runs `f` on a connection (connecting first when there is none) under `timeout`. Any
    /// failure drops the connection so the next permitted call reconnects.
    async fn call<T, F, Fut>(&self, timeout: Duration, f: F) -> Result<T, L2Error>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let conn = self.connection().await?;
            f(conn).await.map_err(L2Error::from)
        };
        let r = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(L2Error::Timeout(timeout)),
        };
        if r.is_err() {
            self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        r
    }

    async fn connection(&self) -> Result<MultiplexedConnection, L2Error> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let client = self.client.as_ref().ok_or(L2Error::NoClient)?;
        let c = client.get_multiplexed_async_connection().await?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }
}

/// How often the `nlpd_cache_bytes{level="l2"}` gauge is refreshed.
const MEMORY_EVERY: Duration = Duration::from_secs(5);

/// Sets `nlpd_cache_bytes{level="l2"}` to the Redis server's `used_memory` every [`MEMORY_EVERY`]
/// (first at start), while the L2 exists. Skipped while the breaker is open; a failure counts
/// towards it like any other call. Redis reports its whole memory: every prefix and replica
/// sharing it, not only this server's entries.
async fn memory_loop(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        if let Some(permit) = s.permit() {
            let info = s
                .call(s.cfg.timeout * 5, |mut c| async move {
                    redis::cmd("INFO")
                        .arg("memory")
                        .query_async::<String>(&mut c)
                        .await
                })
                .await;
            match info {
                Ok(text) => {
                    if let Some(bytes) = used_memory(&text) {
                        metrics::gauge!(m::CACHE_BYTES, "level" => "l2").set(bytes as f64);
                    }
                    s.succeed(permit);
                }
                Err(e) => s.fail(permit, "info", e.kind()),
            }
        }
        drop(s);
        tokio::time::sleep(MEMORY_EVERY).await;
    }
}

/// `used_memory` from the text of `INFO memory`.
fn used_memory(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
}

async fn write_loop(s: Arc<Shared>, mut rx: mpsc::Receiver<WriteBatch>) {
    let ttl_ms = s.ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let Some(permit) = s.permit() else {
            s.counters.writes_dropped.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(m::CACHE_L2_WRITES_DROPPED).increment(n);
            continue;
        };
        let bytes: u64 = batch.iter().map(|(_, v)| v.len() as u64).sum();
        let mut pipe = redis::pipe();
        for (k, v) in &batch {
            pipe.cmd("SET")
                .arg(s.redis_key(k))
                .arg(v.as_slice())
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
        }
        // Writes are off the request path: they may take a little longer than reads.
        let timeout = s.cfg.timeout * 5;
        match s
            .call(timeout, |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await
        {
            Ok(()) => {
                s.counters.writes.fetch_add(n, Ordering::Relaxed);
                s.counters.write_bytes.fetch_add(bytes, Ordering::Relaxed);
                metrics::counter!(m::CACHE_L2_WRITES).increment(n);
                s.succeed(permit);
            }
            Err(e) => {
                tracing::debug!(error = %e, "redis write failed");
                s.counters.writes_dropped.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(m::CACHE_L2_WRITES_DROPPED).increment(n);
                s.fail(permit, "set", e.kind());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_memory_is_read_from_info() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n";
        assert_eq!(used_memory(info), Some(1_048_576));
        assert_eq!(used_memory("# Memory\r\n"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            RedisConfig::new("redis://:secret@cache:6379/2").redacted_url(),
            "redis://***@cache:6379/2"
        );
        assert_eq!(
            RedisConfig::new("redis://127.0.0.1:6379").redacted_url(),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn the_prefix_is_matched_literally() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
