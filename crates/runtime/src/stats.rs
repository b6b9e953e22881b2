//! In-process performance statistics for `/v1/stats`: request counts, latency percentiles per
//! stage, batch sizes and throughput windows, per (task, model). Prometheus gets the same events
//! through the `metrics` crate (see `metrics.rs`).

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Log-spaced histogram of durations (1 µs … ~100 s, ~4.5% relative resolution).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_us: f64,
    max_us: f64,
}

const BUCKETS_PER_DOUBLING: f64 = 16.0;
const N_BUCKETS: usize = 16 * 27;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; N_BUCKETS],
            total: 0,
            sum_us: 0.0,
            max_us: 0.0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        let idx = if us <= 1.0 {
            0
        } else {
            ((us.log2()) * BUCKETS_PER_DOUBLING) as usize
        };
        self.counts[idx.min(N_BUCKETS - 1)] += 1;
        self.total += 1;
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
    }

    /// The value at quantile `q` (0..=1) in milliseconds (upper edge of its bucket).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = (q * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let upper_us = 2f64.powf((i as f64 + 1.0) / BUCKETS_PER_DOUBLING);
                return (upper_us.min(self.max_us)) / 1000.0;
            }
        }
        self.max_us / 1000.0
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.total,
            mean_ms: if self.total == 0 {
                0.0
            } else {
                self.sum_us / self.total as f64 / 1000.0
            },
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p95_ms: self.quantile_ms(0.95),
            p99_ms: self.quantile_ms(0.99),
            max_ms: self.max_us / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Pipeline stages timed per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Queue,
    Tokenize,
    Inference,
    Postprocess,
}

#[derive(Default)]
struct Series {
    requests: u64,
    errors: u64,
    inputs: u64,
    total: Histogram,
    stages: BTreeMap<Stage, Histogram>,
    /// Inputs completed per second over the last 15 minutes: (second since start, count).
    /// Bounded at 900 entries whatever the request rate.
    recent: VecDeque<(u64, u64)>,
}

#[derive(Default)]
struct ModelSeries {
    forward_passes: u64,
    batched_items: u64,
    batch_tokens: u64,
}

/// Thread-safe statistics store.
pub struct Stats {
    started: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    series: BTreeMap<(String, String), Series>,
    models: BTreeMap<String, ModelSeries>,
}

const WINDOW_15M: Duration = Duration::from_secs(15 * 60);

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }
}

impl Stats {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// A finished request: its task, model, number of inputs, outcome and total latency.
    pub fn request(&self, task: &str, model: &str, inputs: usize, ok: bool, latency: Duration) {
        let now = Instant::now();
        self.with(|i| {
            let s = i
                .series
                .entry((task.to_string(), model.to_string()))
                .or_default();
            s.requests += 1;
            if !ok {
                s.errors += 1;
                return;
            }
            s.inputs += inputs as u64;
            s.total.record(latency);
            let sec = now.duration_since(self.started).as_secs();
            match s.recent.back_mut() {
                Some((last, count)) if *last == sec => *count += inputs as u64,
                _ => s.recent.push_back((sec, inputs as u64)),
            }
            while s
                .recent
                .front()
                .is_some_and(|(t, _)| sec.saturating_sub(*t) >= WINDOW_15M.as_secs())
            {
                s.recent.pop_front();
            }
        });
    }

    /// One item's time in a stage.
    pub fn stage(&self, task: &str, model: &str, stage: Stage, d: Duration) {
        self.with(|i| {
            i.series
                .entry((task.to_string(), model.to_string()))
                .or_default()
                .stages
                .entry(stage)
                .or_default()
                .record(d)
        });
    }

    /// One forward pass of `items` inputs padded to `tokens` tokens.
    pub fn batch(&self, model: &str, items: usize, tokens: usize) {
        self.with(|i| {
            let m = i.models.entry(model.to_string()).or_default();
            m.forward_passes += 1;
            m.batched_items += items as u64;
            m.batch_tokens += tokens as u64;
        });
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The JSON report.
    pub fn report(&self) -> StatsReport {
        let now = Instant::now();
        self.with(|i| StatsReport {
            uptime_s: self.started.elapsed().as_secs_f64(),
            series: i
                .series
                .iter()
                .map(|((task, model), s)| {
                    let now_sec = now.duration_since(self.started).as_secs();
                    let per_s = |w: Duration| {
                        let n: u64 = s
                            .recent
                            .iter()
                            .filter(|(t, _)| now_sec.saturating_sub(*t) < w.as_secs())
                            .map(|(_, c)| c)
                            .sum();
                        n as f64
                            / w.as_secs_f64()
                                .min(self.started.elapsed().as_secs_f64().max(1.0))
                    };
                    SeriesReport {
                        task: task.clone(),
                        model: model.clone(),
                        requests: s.requests,
                        errors: s.errors,
                        inputs: s.inputs,
                        latency: s.total.summary(),
                        queue: s.stages.get(&Stage::Queue).map(Histogram::summary),
                        tokenize: s.stages.get(&Stage::Tokenize).map(Histogram::summary),
                        inference: s.stages.get(&Stage::Inference).map(Histogram::summary),
                        postprocess: s.stages.get(&Stage::Postprocess).map(Histogram::summary),
                        inputs_per_s_1m: per_s(Duration::from_secs(60)),
                        inputs_per_s_5m: per_s(Duration::from_secs(300)),
                        inputs_per_s_15m: per_s(WINDOW_15M),
                    }
                })
                .collect(),
            batching: i
                .models
                .iter()
                .map(|(model, m)| BatchReport {
                    model: model.clone(),
                    forward_passes: m.forward_passes,
                    inferences: m.batched_items,
                    avg_batch_size: if m.forward_passes == 0 {
                        0.0
                    } else {
                        m.batched_items as f64 / m.forward_passes as f64
                    },
                    avg_batch_tokens: if m.forward_passes == 0 {
                        0.0
                    } else {
                        m.batch_tokens as f64 / m.forward_passes as f64
                    },
                })
                .collect(),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct StatsReport {
    pub uptime_s: f64,
    pub series: Vec<SeriesReport>,
    pub batching: Vec<BatchReport>,
}

#[derive(Debug, Serialize)]
pub struct SeriesReport {
    pub task: String,
    pub model: String,
    pub requests: u64,
    pub errors: u64,
    pub inputs: u64,
    pub latency: LatencySummary,
    pub queue: Option<LatencySummary>,
    pub tokenize: Option<LatencySummary>,
    pub inference: Option<LatencySummary>,
    pub postprocess: Option<LatencySummary>,
    pub inputs_per_s_1m: f64,
    pub inputs_per_s_5m: f64,
    pub inputs_per_s_15m: f64,
}

#[derive(Debug, Serialize)]
pub struct BatchReport {
    pub model: String,
    pub forward_passes: u64,
    pub inferences: u64,
    /// Inferences ÷ forward passes.
    pub avg_batch_size: f64,
    pub avg_batch_tokens: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_bucket_resolution() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        for (got, want) in [(s.p50_ms, 50.0), (s.p90_ms, 90.0), (s.p99_ms, 99.0)] {
            assert!((got - want).abs() / want < 0.05, "{got} vs {want}");
        }
        assert!((s.max_ms - 100.0).abs() < 1e-9);
        assert!((s.mean_ms - 50.5).abs() < 1e-6);
    }

    #[test]
    fn average_batch_size_is_inferences_over_passes() {
        let st = Stats::default();
        st.batch("m", 8, 100);
        st.batch("m", 2, 20);
        let r = st.report();
        assert_eq!(r.batching[0].avg_batch_size, 5.0);
        st.request("embed", "m", 3, true, Duration::from_millis(2));
        st.request("embed", "m", 1, false, Duration::from_millis(2));
        let r = st.report();
        assert_eq!(
            (r.series[0].requests, r.series[0].errors, r.series[0].inputs),
            (2, 1, 3)
        );
        // Throughput counts inputs (within the first second the window is one second long).
        assert!(
            (r.series[0].inputs_per_s_1m - 3.0).abs() < 1e-9,
            "{}",
            r.series[0].inputs_per_s_1m
        );
    }
}
