//! L1: the in-process cache (moka), weighted by each value's bytes, with TinyLFU or LRU eviction
//! and a time to live. Evictions are counted by cause.

use super::codec::CachedValue;
use super::key::CacheKey;
use crate::metrics as m;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Eviction policy of L1: the vocabulary of `--cache-policy` ([`str::parse`], any case) and the
/// config file's `cache-policy` (serde).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Admission by frequency (TinyLFU), eviction of the least recently used: resists scans.
    #[serde(alias = "tiny-lfu", alias = "tiny_lfu")]
    TinyLfu,
    /// Plain least recently used.
    Lru,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use serde::de::IntoDeserializer;
        use serde::Deserialize;
        let lower = s.trim().to_ascii_lowercase();
        Policy::deserialize(lower.as_str().into_deserializer())
            .map_err(|e: serde::de::value::Error| format!("cache policy `{s}`: {e}"))
    }
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::TinyLfu => "tinylfu",
            Policy::Lru => "lru",
        }
    }
}

#[derive(Default)]
pub(crate) struct Evictions {
    pub size: AtomicU64,
    pub expired: AtomicU64,
}

pub(crate) struct L1 {
    cache: moka::sync::Cache<CacheKey, Arc<CachedValue>>,
    pub evictions: Arc<Evictions>,
    pub capacity: u64,
}

impl L1 {
    pub fn new(capacity: u64, policy: Policy, ttl: Duration) -> Self {
        let evictions = Arc::new(Evictions::default());
        let ev = evictions.clone();
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_k: &CacheKey, v: &Arc<CachedValue>| v.weight())
            .time_to_live(ttl)
            .eviction_policy(match policy {
                Policy::TinyLfu => EvictionPolicy::tiny_lfu(),
                Policy::Lru => EvictionPolicy::lru(),
            })
            .eviction_listener(move |_k, _v, cause| {
                let label = match cause {
                    RemovalCause::Size => {
                        ev.size.fetch_add(1, Ordering::Relaxed);
                        "size"
                    }
                    RemovalCause::Expired => {
                        ev.expired.fetch_add(1, Ordering::Relaxed);
                        "expired"
                    }
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                metrics::counter!(m::CACHE_EVICTIONS, "cause" => label).increment(1);
            })
            .build();
        L1 {
            cache,
            evictions,
            capacity,
        }
    }

    pub fn get(&self, k: &CacheKey) -> Option<Arc<CachedValue>> {
        self.cache.get(k)
    }

    pub fn contains(&self, k: &CacheKey) -> bool {
        self.cache.contains_key(k)
    }

    pub fn insert(&self, k: CacheKey, v: Arc<CachedValue>) {
        self.cache.insert(k, v);
    }

    /// Applies pending evictions and expirations, then reports (entries, weighted bytes).
    pub fn settle(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        let bytes = self.cache.weighted_size();
        metrics::gauge!(m::CACHE_BYTES, "level" => "l1").set(bytes as f64);
        (self.cache.entry_count(), bytes)
    }

    pub fn clear(&self) {
        self.cache.invalidate_all();
        self.settle();
    }
}
