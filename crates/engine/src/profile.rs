//! Off-by-default stage timing for `nlpd profile`: where an encoder's time goes (batch
//! assembly, the encoder by layer kind, pooling and heads, postprocessing).
//!
//! The switch is one process-wide relaxed atomic: while it is off (always, except under
//! `nlpd profile`) each probe on the hot path is a single load of a bool that stays in cache, and
//! no clock is read. While it is on, probes read a monotonic clock and add nanoseconds into
//! process-wide counters. The counters are shared by every model in the process, so profile one
//! model at a time.
//!
//! Times are wall-clock. Inside the fast encoder a batch may run as several groups of sequences
//! on several threads at once; there each group's per-stage thread times are scaled so that
//! together they fill the parallel section's wall time (so the stages of one call add up to the
//! time the caller waited, not to the CPU time spent).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// A stage of an encoder call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Padding the batch into id / type / mask tensors (and the flat copies the fast path reads).
    Batch,
    /// The whole encoder forward pass (wall time; the next three are parts of it).
    Encoder,
    /// Word + position + token-type embeddings and their LayerNorm.
    Embeddings,
    /// Q/K/V projections, attention, output projection, residual and LayerNorm (all layers).
    Attention,
    /// Up-projection, activation, down-projection, residual and LayerNorm (all layers).
    FeedForward,
    /// Pooling and the task heads' logits.
    PoolingHead,
    /// Per-input results: softmax, normalization, truncation.
    Postprocess,
}

pub const STAGES: [Stage; 7] = [
    Stage::Batch,
    Stage::Encoder,
    Stage::Embeddings,
    Stage::Attention,
    Stage::FeedForward,
    Stage::PoolingHead,
    Stage::Postprocess,
];

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Batch => "batch",
            Stage::Encoder => "encoder",
            Stage::Embeddings => "embeddings",
            Stage::Attention => "attention",
            Stage::FeedForward => "feed_forward",
            Stage::PoolingHead => "pooling_head",
            Stage::Postprocess => "postprocess",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

static NANOS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Turns the probes on or off (process-wide).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the probes record (one relaxed load).
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A probe's start: the time when profiling is on, `None` (no clock read) when it is off.
#[inline(always)]
pub fn start() -> Option<Instant> {
    if enabled() {
        Some(Instant::now())
    } else {
        None
    }
}

/// Adds the time since `t0` (from [`start`]) to `stage`; nothing when `t0` is `None`.
#[inline(always)]
pub fn stop(stage: Stage, t0: Option<Instant>) {
    if let Some(t0) = t0 {
        add(stage, t0.elapsed());
    }
}

/// Adds a measured time to `stage`.
pub fn add(stage: Stage, d: Duration) {
    NANOS[stage.index()].fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
}

/// Counts one encoder call (one `run_batch`).
pub fn count_call() {
    CALLS.fetch_add(1, Ordering::Relaxed);
}

/// What the probes recorded since the last [`take`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub nanos: [u64; 7],
    pub calls: u64,
}

impl Snapshot {
    pub fn get(&self, stage: Stage) -> Duration {
        Duration::from_nanos(self.nanos[stage.index()])
    }
}

/// Reads and resets the counters.
pub fn take() -> Snapshot {
    let mut s = Snapshot::default();
    for (dst, src) in s.nanos.iter_mut().zip(&NANOS) {
        *dst = src.swap(0, Ordering::Relaxed);
    }
    s.calls = CALLS.swap(0, Ordering::Relaxed);
    s
}

/// Per-thread times of the three layer stages of one fast-path group (embeddings, attention,
/// feed-forward), in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LayerTimes(pub [u64; 3]);

impl std::ops::Add for LayerTimes {
    type Output = LayerTimes;

    fn add(self, o: LayerTimes) -> LayerTimes {
        LayerTimes([self.0[0] + o.0[0], self.0[1] + o.0[1], self.0[2] + o.0[2]])
    }
}

impl LayerTimes {
    /// As wall time: scaled so they sum to `scale_to` (the wall time of a section where groups
    /// ran in parallel), as measured when `None`.
    pub fn scaled(self, scale_to: Option<Duration>) -> [u64; 3] {
        let sum: u64 = self.0.iter().sum();
        let factor = match scale_to {
            Some(w) if sum > 0 => w.as_nanos() as f64 / sum as f64,
            _ => 1.0,
        };
        self.0.map(|ns| (ns as f64 * factor).round() as u64)
    }

    /// Adds them to the counters, [`scaled`](Self::scaled).
    pub fn record(self, scale_to: Option<Duration>) {
        for (stage, ns) in [Stage::Embeddings, Stage::Attention, Stage::FeedForward]
            .into_iter()
            .zip(self.scaled(scale_to))
        {
            NANOS[stage.index()].fetch_add(ns, Ordering::Relaxed);
        }
    }
}

/// A clock for per-stage times inside a loop: each `lap` adds the time since the previous lap
/// (or the start) to one of the three layer stages. A no-op when profiling is off.
pub struct Laps {
    last: Option<Instant>,
    pub times: LayerTimes,
}

impl Laps {
    #[inline(always)]
    pub fn new() -> Laps {
        Laps {
            last: start(),
            times: LayerTimes::default(),
        }
    }

    /// `stage`: 0 embeddings, 1 attention, 2 feed-forward.
    #[inline(always)]
    pub fn lap(&mut self, stage: usize) {
        if let Some(last) = self.last {
            let now = Instant::now();
            self.times.0[stage] += (now - last).as_nanos() as u64;
            self.last = Some(now);
        }
    }
}

impl Default for Laps {
    fn default() -> Self {
        Laps::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_thread_times_are_scaled_to_the_wall_time() {
        let t = LayerTimes([1_000, 3_000, 6_000]);
        assert_eq!(
            t.scaled(Some(Duration::from_nanos(5_000))),
            [500, 1_500, 3_000]
        );
        assert_eq!(t.scaled(None), [1_000, 3_000, 6_000]);
        assert_eq!(
            LayerTimes::default().scaled(Some(Duration::from_nanos(9))),
            [0, 0, 0]
        );
        assert_eq!((t + t).0, [2_000, 6_000, 12_000]);
    }

    #[test]
    fn probes_record_only_while_enabled() {
        // The counters are process-wide and other tests may run encoders meanwhile (under
        // `cargo test`): only this test enables them, so while it is off nothing of ours counts,
        // and while it is on the counters hold at least what this test added.
        set_enabled(false);
        assert!(start().is_none());
        let mut laps = Laps::new();
        laps.lap(1);
        assert_eq!(laps.times, LayerTimes::default());

        set_enabled(true);
        let _ = take();
        let t0 = start();
        std::thread::sleep(Duration::from_millis(2));
        stop(Stage::Postprocess, t0);
        let mut laps = Laps::new();
        std::thread::sleep(Duration::from_millis(1));
        laps.lap(2);
        assert!(laps.times.0[2] >= 1_000_000 && laps.times.0[0] == 0);
        LayerTimes([10, 20, 30]).record(None);
        set_enabled(false);
        let s = take();
        assert!(s.get(Stage::Postprocess) >= Duration::from_millis(2));
        assert!(s.get(Stage::FeedForward) >= Duration::from_nanos(30));
    }
}
