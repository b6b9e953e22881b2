//! The profile's report: stages in order (they do not overlap, so they add up to the total with
//! `unattributed`), memory and allocations; a table and JSON.

use super::Task;
use crate::alloc::Counts;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct StageTime {
    pub name: &'static str,
    pub ms: f64,
    /// A part of the encoder's forward pass.
    pub in_encoder: bool,
}

impl StageTime {
    pub fn new(name: &'static str, d: Duration, in_encoder: bool) -> StageTime {
        StageTime {
            name,
            ms: d.as_secs_f64() * 1000.0,
            in_encoder,
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.ms / 1000.0)
    }
}

#[derive(Debug, Serialize)]
pub struct Memory {
    pub rss_before_load_bytes: Option<u64>,
    pub rss_after_load_bytes: Option<u64>,
    /// VmHWM at the end: the process's peak resident memory.
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Allocations {
    pub load: Counts,
    /// Tokenization, forward passes and postprocessing.
    pub run: Counts,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub backend: &'static str,
    /// The linear layers' precision: `f32`, `int8` or `bf16`.
    pub precision: &'static str,
    /// The kernel running them, e.g. `avx512-vnni`, `avx2-fma (bf16 widened)`.
    pub kernel: &'static str,
    pub task: Task,
    pub threads: usize,
    pub inputs: usize,
    pub tokens: usize,
    pub batch: usize,
    pub forward_passes: u64,
    pub corpus: String,
    /// From the start of the load to the end of the run.
    pub total_ms: f64,
    /// The forward passes (the sum of the `in_encoder` stages).
    pub encoder_ms: f64,
    /// `total_ms` minus the stages: the command's own loop.
    pub unattributed_ms: f64,
    pub stages: Vec<StageTime>,
    pub memory: Memory,
    pub allocations: Allocations,
}

pub fn task_name(t: Task) -> &'static str {
    match t {
        Task::Embed => "embed",
        Task::Classify => "classify",
        Task::Entities => "entities",
    }
}

fn mib(b: Option<u64>) -> String {
    b.map(|b| format!("{:.0} MiB", b as f64 / 1048576.0))
        .unwrap_or_else(|| "n/a".into())
}

fn label(name: &str) -> &str {
    match name {
        "batch" => "batch assembly",
        "feed_forward" => "feed-forward",
        "encoder_other" => "other",
        "pooling_head" => "pooling / head",
        other => other,
    }
}

pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "nlpd profile: {} ({}, precision {}, kernel {}, {} threads), {}: {} inputs ({} corpus), {:.1} word pieces on average, {} forward passes of up to {}",
        r.model,
        r.backend,
        r.precision,
        r.kernel,
        r.threads,
        task_name(r.task),
        r.inputs,
        r.corpus,
        r.tokens as f64 / r.inputs.max(1) as f64,
        r.forward_passes,
        r.batch
    );
    let _ = writeln!(
        out,
        "{:<20} {:>10} {:>7} {:>12}",
        "stage", "ms", "%", "µs/input"
    );
    let pct = |ms: f64| 100.0 * ms / r.total_ms.max(1e-9);
    let per = |ms: f64| 1000.0 * ms / r.inputs.max(1) as f64;
    let row = |out: &mut String, name: &str, ms: f64| {
        let _ = writeln!(
            out,
            "{name:<20} {ms:>10.1} {:>6.1}% {:>12.1}",
            pct(ms),
            per(ms)
        );
    };
    let mut encoder_shown = false;
    for s in &r.stages {
        if s.in_encoder {
            if !encoder_shown {
                row(&mut out, "encoder", r.encoder_ms);
                encoder_shown = true;
            }
            row(&mut out, &format!("  {}", label(s.name)), s.ms);
        } else {
            row(&mut out, label(s.name), s.ms);
        }
    }
    row(&mut out, "unattributed", r.unattributed_ms);
    row(&mut out, "total", r.total_ms);
    let _ = writeln!(
        out,
        "memory: RSS {} before load, {} after load, peak {} (VmHWM)",
        mib(r.memory.rss_before_load_bytes),
        mib(r.memory.rss_after_load_bytes),
        mib(r.memory.peak_rss_bytes)
    );
    let a = &r.allocations;
    let _ = writeln!(
        out,
        "allocations: load {} ({:.1} MiB), run {} ({:.1} MiB, {:.0} per input)",
        a.load.count,
        a.load.bytes as f64 / 1048576.0,
        a.run.count,
        a.run.bytes as f64 / 1048576.0,
        a.run.count as f64 / r.inputs.max(1) as f64
    );
    out
}
