//! The two-level result cache: L1 in process (moka), L2 Redis (optional, shared by replicas).
//!
//! A request with N inputs looks up N keys: L1 first, then (for the L1 misses) L2 in one round
//! trip, and only what is still missing is computed, in one call, so the model's batcher sees
//! only the misses. Identical misses in flight at the same time are computed once: the first
//! request to miss a key leads (it looks the key up in L2 and computes it), later ones wait for
//! its result through a `watch` channel; if the leader fails or goes away they compute it
//! themselves. Errors are never stored. Results fill L1 at once and L2 in the background.

mod breaker;
mod codec;
mod flight;
mod key;
mod l1;
mod redis;

pub use breaker::BreakerState;
pub use codec::{CachedValue, CodecError, EncoderResult, GenResult};
pub use key::{
    encoder_key, generation_is_deterministic, generation_key, input_hash, params_hash, revision_of,
    CacheKey, GenPrompt,
};
pub use l1::Policy;
pub use redis::RedisConfig;

use crate::metrics as m;
use flight::{Flight, Role};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// L1 capacity in bytes of cached values (0: no L1).
    pub l1_bytes: u64,
    pub policy: Policy,
    /// Time to live of an entry in both levels.
    pub ttl: Duration,
    /// L2; `None`: L1 only.
    pub redis: Option<RedisConfig>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            l1_bytes: 256 * 1024 * 1024,
            policy: Policy::TinyLfu,
            ttl: Duration::from_secs(3600),
            redis: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache: the computation returned {got} results for {want} inputs")]
    Mismatch { got: usize, want: usize },
}

#[derive(Default, Clone, Copy)]
struct ModelCounters {
    l1_hits: u64,
    l1_misses: u64,
    l2_hits: u64,
    l2_misses: u64,
    coalesced: u64,
    computed: u64,
    bypassed: u64,
    warmed: u64,
}

pub struct Cache {
    cfg: CacheConfig,
    l1: Option<l1::L1>,
    l2: Option<redis::L2>,
    flight: Flight,
    models: Mutex<BTreeMap<String, ModelCounters>>,
}

impl Cache {
    /// `None` when neither level is configured.
    pub fn new(cfg: CacheConfig) -> Option<Arc<Self>> {
        if cfg.l1_bytes == 0 && cfg.redis.is_none() {
            return None;
        }
        let l1 = (cfg.l1_bytes > 0).then(|| l1::L1::new(cfg.l1_bytes, cfg.policy, cfg.ttl));
        let l2 = cfg
            .redis
            .clone()
            .map(|r| redis::L2::new(r, cfg.ttl.max(Duration::from_millis(1))));
        // On /metrics from the start (a hit-rate alert needs both series before the first hit).
        let levels = [("l1", l1.is_some()), ("l2", l2.is_some())];
        for (level, _) in levels.iter().filter(|(_, on)| *on) {
            for result in ["hit", "miss"] {
                metrics::counter!(crate::metrics::CACHE_REQUESTS, "level" => *level, "result" => result)
                    .increment(0);
            }
        }
        Some(Arc::new(Cache {
            cfg,
            l1,
            l2,
            flight: Flight::default(),
            models: Mutex::new(BTreeMap::new()),
        }))
    }

    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    fn count(&self, model: &str, f: impl FnOnce(&mut ModelCounters)) {
        let mut g = self.models.lock().unwrap_or_else(|p| p.into_inner());
        match g.get_mut(model) {
            Some(c) => f(c),
            None => f(g.entry(model.to_string()).or_default()),
        }
    }

    /// Counts inputs of a request that asked not to use the cache (`"cache": false`).
    pub fn bypassed(&self, model: &str, n: usize) {
        metrics::counter!(m::CACHE_BYPASS).increment(n as u64);
        self.count(model, |c| c.bypassed += n as u64);
    }

    /// The value of every key, in order: from L1, L2, another request computing the same key, or
    /// `compute`. `compute` gets the indices (into `keys`) to compute and returns their values in
    /// that order; it is called at most twice (the second time for keys whose leading request
    /// failed or went away while this one waited).
    pub async fn get_or_compute<E, F, Fut>(
        &self,
        model: &str,
        keys: &[CacheKey],
        compute: F,
    ) -> Result<Vec<Arc<CachedValue>>, E>
    where
        E: From<CacheError>,
        F: Fn(Vec<usize>) -> Fut,
        Fut: Future<Output = Result<Vec<CachedValue>, E>>,
    {
        let n = keys.len();
        let mut out: Vec<Option<Arc<CachedValue>>> = vec![None; n];
        // L1, and the misses grouped by key (one list may repeat an input).
        let mut groups: Vec<(CacheKey, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<CacheKey, usize> = HashMap::new();
        let mut hits = 0u64;
        for (i, k) in keys.iter().enumerate() {
            if let Some(v) = self.l1.as_ref().and_then(|l1| l1.get(k)) {
                out[i] = Some(v);
                hits += 1;
                continue;
            }
            match group_of.get(k) {
                Some(&g) => groups[g].1.push(i),
                None => {
                    group_of.insert(*k, groups.len());
                    groups.push((*k, vec![i]));
                }
            }
        }
        let misses = n as u64 - hits;
        if self.l1.is_some() {
            metrics::counter!(m::CACHE_REQUESTS, "level" => "l1", "result" => "hit")
                .increment(hits);
            metrics::counter!(m::CACHE_REQUESTS, "level" => "l1", "result" => "miss")
                .increment(misses);
            self.count(model, |c| {
                c.l1_hits += hits;
                c.l1_misses += misses;
            });
        }
        if groups.is_empty() {
            return Ok(out.into_iter().flatten().collect());
        }
        // Lead the keys nobody is computing; wait for the others.
        let mut led: Vec<(usize, flight::Lead<'_>)> = Vec::new();
        let mut waits: Vec<(usize, flight::Wait)> = Vec::new();
        for (g, (k, _)) in groups.iter().enumerate() {
            match self.flight.join(*k) {
                Role::Lead(l) => led.push((g, l)),
                Role::Wait(w) => waits.push((g, w)),
            }
        }
        // A leader that finished between this request's L1 lookup and its join left its value in
        // L1 (it fills L1 before it ends its flight): look again before computing.
        let mut values: Vec<(usize, Arc<CachedValue>)> = Vec::new();
        let mut coalesced = 0u64;
        if let Some(l1) = &self.l1 {
            let mut still = Vec::with_capacity(led.len());
            for (g, lead) in led {
                match l1.get(&groups[g].0) {
                    Some(v) => {
                        lead.publish(v.clone());
                        coalesced += groups[g].1.len() as u64;
                        values.push((g, v));
                    }
                    None => still.push((g, lead)),
                }
            }
            led = still;
        }
        let lead = async {
            let mut led = led;
            let mut values: Vec<(usize, Arc<CachedValue>)> = Vec::new();
            // L2 for everything this request leads.
            if let Some(l2) = &self.l2 {
                let ks: Vec<CacheKey> = led.iter().map(|(g, _)| groups[*g].0).collect();
                let found = l2.get_many(&ks).await;
                let (h, mut rest) = (found.iter().filter(|v| v.is_some()).count() as u64, vec![]);
                self.count(model, |c| {
                    c.l2_hits += h;
                    c.l2_misses += ks.len() as u64 - h;
                });
                for ((g, lead), v) in led.into_iter().zip(found) {
                    match v {
                        Some(v) => {
                            let v = Arc::new(v);
                            self.fill_l1(groups[g].0, &v);
                            lead.publish(v.clone());
                            values.push((g, v));
                        }
                        None => rest.push((g, lead)),
                    }
                }
                led = rest;
            }
            if !led.is_empty() {
                let idx: Vec<usize> = led.iter().map(|(g, _)| groups[*g].1[0]).collect();
                let computed = compute(idx).await?;
                if computed.len() != led.len() {
                    return Err(E::from(CacheError::Mismatch {
                        got: computed.len(),
                        want: led.len(),
                    }));
                }
                self.count(model, |c| c.computed += led.len() as u64);
                let mut to_l2 = Vec::new();
                for ((g, lead), v) in led.into_iter().zip(computed) {
                    if self.l2.is_some() {
                        to_l2.push((groups[g].0, v.encode()));
                    }
                    let v = Arc::new(v);
                    self.fill_l1(groups[g].0, &v);
                    lead.publish(v.clone());
                    values.push((g, v));
                }
                if let Some(l2) = &self.l2 {
                    l2.write(to_l2);
                }
            }
            Ok::<_, E>(values)
        };
        let follow = async {
            let mut got = Vec::new();
            for (g, w) in waits {
                got.push((g, w.result().await));
            }
            got
        };
        let (led_values, followed) = tokio::join!(lead, follow);
        values.extend(led_values?);
        let mut orphans: Vec<usize> = Vec::new();
        for (g, v) in followed {
            match v {
                Some(v) => {
                    coalesced += groups[g].1.len() as u64;
                    values.push((g, v));
                }
                None => orphans.push(g),
            }
        }
        if coalesced > 0 {
            metrics::counter!(m::CACHE_COALESCED).increment(coalesced);
            self.count(model, |c| c.coalesced += coalesced);
        }
        if !orphans.is_empty() {
            // Their leaders failed or left: compute them here (without leading; rare).
            let idx: Vec<usize> = orphans.iter().map(|g| groups[*g].1[0]).collect();
            let computed = compute(idx).await?;
            if computed.len() != orphans.len() {
                return Err(E::from(CacheError::Mismatch {
                    got: computed.len(),
                    want: orphans.len(),
                }));
            }
            self.count(model, |c| c.computed += orphans.len() as u64);
            for (g, v) in orphans.into_iter().zip(computed) {
                let v = Arc::new(v);
                self.fill_l1(groups[g].0, &v);
                values.push((g, v));
            }
        }
        for (g, v) in values {
            for &i in &groups[g].1 {
                out[i] = Some(v.clone());
            }
        }
        let out: Vec<Arc<CachedValue>> = out.into_iter().flatten().collect();
        if out.len() != n {
            return Err(E::from(CacheError::Mismatch {
                got: out.len(),
                want: n,
            }));
        }
        Ok(out)
    }

    /// Whether L1 holds `key` (cache warming skips what is there already).
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.l1.as_ref().is_some_and(|l1| l1.contains(key))
    }

    /// Stores values computed outside a request (cache warming): L1 at once, L2 in the
    /// background, counted as `warmed` for the model (not as lookups, so hit rates stay those
    /// of real traffic).
    pub fn fill(&self, model: &str, entries: Vec<(CacheKey, CachedValue)>) {
        let n = entries.len() as u64;
        let mut to_l2 = Vec::new();
        for (k, v) in entries {
            if self.l2.is_some() {
                to_l2.push((k, v.encode()));
            }
            self.fill_l1(k, &Arc::new(v));
        }
        if let Some(l2) = &self.l2 {
            l2.write(to_l2);
        }
        self.count(model, |c| c.warmed += n);
    }

    fn fill_l1(&self, k: CacheKey, v: &Arc<CachedValue>) {
        if let Some(l1) = &self.l1 {
            l1.insert(k, v.clone());
        }
    }

    /// Empties L1 (`l1`) and/or deletes this deployment's keys from Redis (`l2`).
    pub async fn clear(&self, l1: bool, l2: bool) -> ClearReport {
        let mut r = ClearReport::default();
        if l1 {
            if let Some(c) = &self.l1 {
                r.l1_entries = Some(c.settle().0);
                c.clear();
            }
        }
        if l2 {
            if let Some(c) = &self.l2 {
                match c.clear().await {
                    Ok(n) => r.l2_keys = Some(n),
                    Err(e) => r.l2_error = Some(e),
                }
            }
        }
        tracing::info!(l1 = ?r.l1_entries, l2 = ?r.l2_keys, l2_error = ?r.l2_error, "cache cleared");
        r
    }

    /// Brings the gauges up to date (`nlpd_cache_bytes`): call before rendering metrics.
    pub fn refresh_metrics(&self) {
        if let Some(l1) = &self.l1 {
            l1.settle();
        }
    }

    /// Statistics for `GET /v1/cache` and `/v1/stats`.
    pub fn stats(&self) -> CacheStats {
        let models = self
            .models
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, c)| ModelCacheStats {
                model: name.clone(),
                l1_hits: c.l1_hits,
                l1_misses: c.l1_misses,
                l1_hit_rate: rate(c.l1_hits, c.l1_misses),
                l2_hits: c.l2_hits,
                l2_misses: c.l2_misses,
                l2_hit_rate: rate(c.l2_hits, c.l2_misses),
                coalesced: c.coalesced,
                computed: c.computed,
                bypassed: c.bypassed,
                warmed: c.warmed,
            })
            .collect::<Vec<_>>();
        let sum = |f: fn(&ModelCacheStats) -> u64| models.iter().map(f).sum::<u64>();
        let l1 = self.l1.as_ref().map(|c| {
            let (entries, bytes) = c.settle();
            let (hits, misses) = (sum(|m| m.l1_hits), sum(|m| m.l1_misses));
            L1Stats {
                policy: self.cfg.policy.as_str(),
                capacity_bytes: c.capacity,
                bytes,
                entries,
                hits,
                misses,
                hit_rate: rate(hits, misses),
                evictions_size: c.evictions.size.load(Ordering::Relaxed),
                evictions_expired: c.evictions.expired.load(Ordering::Relaxed),
            }
        });
        let l2 = self.l2.as_ref().map(|c| {
            let k = c.counters();
            let (hits, misses) = (
                k.hits.load(Ordering::Relaxed),
                k.misses.load(Ordering::Relaxed),
            );
            L2Stats {
                url: c.config().redacted_url(),
                prefix: c.config().prefix.clone(),
                timeout_ms: c.config().timeout.as_millis() as u64,
                breaker: c.breaker_state().as_str(),
                breaker_opened_total: c.breaker_opened_total(),
                hits,
                misses,
                hit_rate: rate(hits, misses),
                errors: k.errors.load(Ordering::Relaxed),
                skipped: k.skipped.load(Ordering::Relaxed),
                writes: k.writes.load(Ordering::Relaxed),
                write_bytes: k.write_bytes.load(Ordering::Relaxed),
                writes_dropped: k.writes_dropped.load(Ordering::Relaxed),
            }
        });
        CacheStats {
            ttl_s: self.cfg.ttl.as_secs_f64(),
            in_flight: self.flight.len(),
            waiting: self.flight.waiters(),
            l1,
            l2,
            models,
        }
    }
}

fn rate(hits: u64, misses: u64) -> f64 {
    if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ClearReport {
    /// Entries removed from L1 (`None`: not asked or no L1).
    pub l1_entries: Option<u64>,
    /// Keys deleted from Redis under this deployment's prefix.
    pub l2_keys: Option<u64>,
    pub l2_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CacheStats {
    pub ttl_s: f64,
    /// Keys being computed right now that other requests may wait for.
    pub in_flight: usize,
    /// Requests waiting for one of those.
    pub waiting: usize,
    pub l1: Option<L1Stats>,
    pub l2: Option<L2Stats>,
    pub models: Vec<ModelCacheStats>,
}

#[derive(Debug, Serialize)]
pub struct L1Stats {
    pub policy: &'static str,
    pub capacity_bytes: u64,
    pub bytes: u64,
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub evictions_size: u64,
    pub evictions_expired: u64,
}

#[derive(Debug, Serialize)]
pub struct L2Stats {
    pub url: String,
    pub prefix: String,
    pub timeout_ms: u64,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    pub breaker_opened_total: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    /// Failed calls (refused, timed out, undecodable value).
    pub errors: u64,
    /// Lookups not sent because the breaker was open.
    pub skipped: u64,
    pub writes: u64,
    pub write_bytes: u64,
    /// Values not written (queue full, breaker open, write failed).
    pub writes_dropped: u64,
}

#[derive(Debug, Serialize)]
pub struct ModelCacheStats {
    pub model: String,
    pub l1_hits: u64,
    pub l1_misses: u64,
    pub l1_hit_rate: f64,
    pub l2_hits: u64,
    pub l2_misses: u64,
    pub l2_hit_rate: f64,
    /// Inputs answered by waiting for another request computing the same key.
    pub coalesced: u64,
    /// Inputs computed by the model.
    pub computed: u64,
    /// Inputs of requests with `"cache": false`.
    pub bypassed: u64,
    /// Entries filled by cache warming (`--warm-cache`).
    pub warmed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlpd_engine::OpOutput;
    use std::sync::atomic::AtomicUsize;

    fn value(x: f32) -> CachedValue {
        CachedValue::Encoder(EncoderResult {
            tokens: 1,
            output: OpOutput::Embedding(vec![x]),
            encoding: None,
        })
    }

    fn key(s: &str) -> CacheKey {
        encoder_key("m", "r", &nlpd_engine::EncoderOp::Classify, true, s, None)
    }

    #[tokio::test]
    async fn hits_repeats_and_order() {
        let cache = Cache::new(CacheConfig::default()).unwrap();
        let calls = AtomicUsize::new(0);
        let compute = |idx: Vec<usize>| {
            calls.fetch_add(idx.len(), Ordering::SeqCst);
            async move { Ok::<_, CacheError>(idx.iter().map(|&i| value(i as f32)).collect()) }
        };
        let keys = [key("a"), key("b"), key("a")];
        let v = cache.get_or_compute("m", &keys, compute).await.unwrap();
        // "a" twice in one list is computed once; results land in input order.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(*v[0], value(0.0));
        assert_eq!(*v[1], value(1.0));
        assert_eq!(*v[2], value(0.0));
        let keys = [key("b"), key("c")];
        let v = cache.get_or_compute("m", &keys, compute).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(*v[0], value(1.0));
        assert_eq!(*v[1], value(1.0));
        let s = cache.stats();
        assert_eq!((s.models[0].l1_hits, s.models[0].l1_misses), (1, 4));
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = Cache::new(CacheConfig::default()).unwrap();
        let r: Result<Vec<_>, CacheError> = cache
            .get_or_compute("m", &[key("x")], |_| async {
                Err(CacheError::Mismatch { got: 0, want: 1 })
            })
            .await;
        assert!(r.is_err());
        let v = cache
            .get_or_compute("m", &[key("x")], |idx| async move {
                Ok::<_, CacheError>(idx.iter().map(|_| value(7.0)).collect())
            })
            .await
            .unwrap();
        assert_eq!(*v[0], value(7.0));
        assert_eq!(cache.stats().in_flight, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_identical_misses_compute_once() {
        let cache = Cache::new(CacheConfig::default()).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute("m", &[key("same")], |idx| {
                        let (calls, gate) = (calls.clone(), gate.clone());
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            gate.notified().await;
                            Ok::<_, CacheError>(idx.iter().map(|_| value(1.0)).collect())
                        }
                    })
                    .await
            }));
        }
        // Let every task reach the cache, then release the one computation.
        while cache.stats().waiting < 7 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for t in tasks {
            assert_eq!(*t.await.unwrap().unwrap()[0], value(1.0));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().models[0].coalesced, 7);
    }

    #[tokio::test]
    async fn a_leader_that_leaves_does_not_strand_its_followers() {
        let cache = Cache::new(CacheConfig::default()).unwrap();
        let k = key("orphan");
        let leader = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_compute("m", &[k], |_| async {
                        std::future::pending::<Result<Vec<CachedValue>, CacheError>>().await
                    })
                    .await
            })
        };
        while cache.stats().in_flight == 0 {
            tokio::task::yield_now().await;
        }
        let follower = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_compute("m", &[k], |idx| async move {
                        Ok::<_, CacheError>(idx.iter().map(|_| value(2.0)).collect())
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        leader.abort();
        assert_eq!(*follower.await.unwrap().unwrap()[0], value(2.0));
    }
}
