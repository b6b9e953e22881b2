//! Prometheus metric names and the helpers that record them (through the `metrics` facade; the
//! server installs the exporter). `/v1/stats` is fed from the same call sites via [`crate::stats`].

use std::time::Duration;

pub const REQUESTS: &str = "nlpd_requests_total";
pub const REQUEST_DURATION: &str = "nlpd_request_duration_seconds";
pub const QUEUE_DURATION: &str = "nlpd_queue_duration_seconds";
pub const TOKENIZE_DURATION: &str = "nlpd_tokenize_duration_seconds";
pub const INFERENCE_DURATION: &str = "nlpd_inference_duration_seconds";
pub const POSTPROCESS_DURATION: &str = "nlpd_postprocess_duration_seconds";
pub const BATCH_SIZE: &str = "nlpd_batch_size";
pub const BATCH_TOKENS: &str = "nlpd_batch_tokens";
pub const QUEUE_DEPTH: &str = "nlpd_queue_depth";
pub const MODEL_LOADED: &str = "nlpd_model_loaded";
pub const MODEL_BYTES: &str = "nlpd_model_bytes";
pub const RESIDENT_BYTES: &str = "nlpd_process_resident_bytes";
pub const DROPPED: &str = "nlpd_items_dropped_total";
pub const CACHE_REQUESTS: &str = "nlpd_cache_requests_total";
pub const CACHE_BYTES: &str = "nlpd_cache_bytes";
pub const CACHE_EVICTIONS: &str = "nlpd_cache_evictions_total";
pub const CACHE_COALESCED: &str = "nlpd_cache_coalesced_total";
pub const CACHE_BYPASS: &str = "nlpd_cache_bypass_total";
pub const CACHE_L2_ERRORS: &str = "nlpd_cache_l2_errors_total";
pub const CACHE_L2_WRITES: &str = "nlpd_cache_l2_writes_total";
pub const CACHE_L2_WRITES_DROPPED: &str = "nlpd_cache_l2_writes_dropped_total";
pub const REDIS_BREAKER_STATE: &str = "nlpd_redis_breaker_state";
pub const STORE_ROWS_WRITTEN: &str = "nlpd_store_rows_written_total";
pub const STORE_DROPPED: &str = "nlpd_store_dropped_rows_total";
pub const STORE_FLUSH_DURATION: &str = "nlpd_store_flush_duration_seconds";
pub const STORE_QUEUE_DEPTH: &str = "nlpd_store_queue_depth";
pub const MODEL_LOAD_FAILURES: &str = "nlpd_model_load_failures_total";
pub const MEMORY_LIMIT: &str = "nlpd_memory_limit_bytes";
pub const DRAINING: &str = "nlpd_draining";
pub const IN_FLIGHT: &str = "nlpd_requests_in_flight";

/// Histogram buckets for durations: 0.1 ms … 30 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];
/// Buckets for batch sizes (items).
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Buckets for batch tokens (padded).
pub const BATCH_TOKEN_BUCKETS: &[f64] = &[16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0];

/// Registers help texts (call once after installing a recorder).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(REQUESTS, "HTTP requests by route, model and status");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "End-to-end request latency"
    );
    describe_histogram!(
        QUEUE_DURATION,
        Unit::Seconds,
        "Time items wait in a model's queue"
    );
    describe_histogram!(
        TOKENIZE_DURATION,
        Unit::Seconds,
        "Tokenization time per request"
    );
    describe_histogram!(
        INFERENCE_DURATION,
        Unit::Seconds,
        "Forward pass time per batch"
    );
    describe_histogram!(
        POSTPROCESS_DURATION,
        Unit::Seconds,
        "Post-processing time per request"
    );
    describe_histogram!(BATCH_SIZE, "Items per forward pass");
    describe_histogram!(BATCH_TOKENS, "Padded tokens per forward pass");
    describe_gauge!(QUEUE_DEPTH, "Items waiting per model");
    describe_gauge!(MODEL_LOADED, "1 when the model is loaded");
    describe_gauge!(MODEL_BYTES, Unit::Bytes, "Weight bytes of a loaded model");
    describe_gauge!(
        RESIDENT_BYTES,
        Unit::Bytes,
        "Resident memory of the process"
    );
    describe_counter!(
        DROPPED,
        "Items dropped before compute (deadline passed or client gone)"
    );
    describe_counter!(
        CACHE_REQUESTS,
        "Cache lookups per input by level (l1, l2) and result (hit, miss)"
    );
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "Bytes of cached values held by a level (l1)"
    );
    describe_counter!(
        CACHE_EVICTIONS,
        "L1 entries evicted, by cause (size, expired)"
    );
    describe_counter!(
        CACHE_COALESCED,
        "Inputs answered by waiting for an identical computation in flight"
    );
    describe_counter!(CACHE_BYPASS, "Inputs of requests with \"cache\": false");
    describe_counter!(
        CACHE_L2_ERRORS,
        "Failed Redis calls by op (get, set) and kind (timeout, redis, decode, garbage)"
    );
    describe_counter!(CACHE_L2_WRITES, "Values written to Redis");
    describe_counter!(
        CACHE_L2_WRITES_DROPPED,
        "Values not written to Redis (queue full, breaker open, write failed)"
    );
    describe_gauge!(
        REDIS_BREAKER_STATE,
        "Redis circuit breaker: 0 closed, 1 open, 2 half-open"
    );
    describe_counter!(
        STORE_ROWS_WRITTEN,
        "Prediction log rows (served inputs) written to the store"
    );
    describe_counter!(
        STORE_DROPPED,
        "Prediction log rows dropped, by reason (queue_full, db_error, shutdown)"
    );
    describe_histogram!(
        STORE_FLUSH_DURATION,
        Unit::Seconds,
        "Time to write one batch of the prediction log, by result (ok, error)"
    );
    describe_gauge!(
        STORE_QUEUE_DEPTH,
        "Prediction log rows waiting to be written"
    );
    describe_counter!(
        MODEL_LOAD_FAILURES,
        "Model loads (at start, on first use or by POST /v1/models/{name}/load) that failed"
    );
    describe_gauge!(
        MEMORY_LIMIT,
        Unit::Bytes,
        "Memory the process may use: its cgroup (container) limit, else the machine's total"
    );
    describe_gauge!(
        DRAINING,
        "1 from the stop signal until exit: /health/ready answers 503"
    );
    describe_gauge!(
        IN_FLIGHT,
        "HTTP requests whose handlers are running (streams count until their headers)"
    );
}

pub fn stage(name: &'static str, model: &str, d: Duration) {
    metrics::histogram!(name, "model" => model.to_string()).record(d.as_secs_f64());
}

/// The memory this process may use, in bytes: its cgroup limit (a container's memory limit),
/// else the machine's total memory; `None` off Linux.
pub fn memory_limit_bytes() -> Option<u64> {
    cgroup_memory_limit().or_else(|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib = info
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kib * 1024)
    })
}

/// The cgroup memory limit (cgroup v2 `memory.max`, else v1 `memory.limit_in_bytes`); `None`
/// when unlimited.
fn cgroup_memory_limit() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let v2 = read("/proc/self/cgroup").and_then(|c| {
        // cgroup v2: one line `0::/path`.
        c.lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            .and_then(|path| {
                read(&format!(
                    "/sys/fs/cgroup{}/memory.max",
                    path.trim_end_matches('/')
                ))
            })
            .or_else(|| read("/sys/fs/cgroup/memory.max"))
    });
    let raw = v2.or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?;
    // "max" (v2) or a page-rounded i64::MAX (v1) mean no limit.
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|&b| b > 0 && b < 1 << 60)
}

/// Resident set size of this process in bytes (Linux; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn memory_limit_is_the_cgroup_limit_or_the_machine() {
        let limit = super::memory_limit_bytes().expect("a limit on Linux");
        let rss = super::resident_bytes();
        assert!(rss > 0 && limit > rss, "limit {limit} rss {rss}");
        // Never the "unlimited" sentinel of cgroup v1 (a page-rounded i64::MAX).
        assert!(limit < 1 << 60);
    }
}
