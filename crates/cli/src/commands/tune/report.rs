//! One row per measured setting: the table, the JSON, and what the choice reads of it.

use super::choose::{self, Constraints, Measure, Violation};
use super::grid::Setting;
use crate::commands::bench::report::{Latency, LevelReport, ServerSplit};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub setting: Setting,
    /// Successful replies and their inputs; failed requests (non-2xx or no reply).
    pub requests: u64,
    pub inputs: u64,
    pub errors: u64,
    pub duration_s: f64,
    pub requests_per_s: f64,
    pub inputs_per_s: f64,
    pub latency: Option<Latency>,
    /// The server's peak resident memory over its whole life (start, model load, the level):
    /// `VmHWM` of the child process. `null` where it could not be read.
    pub peak_rss_bytes: Option<u64>,
    /// The server's own split and batching during the level (from `/v1/stats`).
    pub server: Option<ServerSplit>,
    pub meets_constraints: bool,
    /// Why not, in short (empty when it meets them).
    pub violations: Vec<String>,
}

impl Row {
    pub fn new(setting: Setting, l: &LevelReport, peak: Option<u64>, c: &Constraints) -> Row {
        let mut row = Row {
            setting,
            requests: l.requests,
            inputs: l.inputs,
            errors: l.errors,
            duration_s: l.duration_s,
            requests_per_s: l.requests_per_s,
            inputs_per_s: l.inputs_per_s,
            latency: l.latency.clone(),
            peak_rss_bytes: peak,
            server: l.server.clone(),
            meets_constraints: false,
            violations: Vec::new(),
        };
        let v = choose::violations(&row.measure(), c);
        row.meets_constraints = v.is_empty();
        row.violations = v.iter().map(Violation::tag).collect();
        row
    }

    pub fn measure(&self) -> Measure {
        Measure {
            inputs_per_s: self.inputs_per_s,
            p99_ms: self.latency.as_ref().map(|l| l.p99_ms),
            peak_rss_bytes: self.peak_rss_bytes,
            ok: self.requests,
            errors: self.errors,
        }
    }
}

fn ms(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

pub fn table_header() -> String {
    format!(
        "{:>3} {:>7} {:>5} {:>8} {:>9} {:>8} {:>7} {:>7} {:>8} {:>6} {:>6}  {}",
        "#",
        "tokens",
        "size",
        "wait_us",
        "inputs/s",
        "req/s",
        "p50 ms",
        "p99 ms",
        "peak MiB",
        "batch",
        "errors",
        "constraints"
    )
}

pub fn table_row(i: usize, r: &Row) -> String {
    let l = r.latency.as_ref();
    format!(
        "{:>3} {:>7} {:>5} {:>8} {:>9.1} {:>8.1} {:>7} {:>7} {:>8} {:>6} {:>6}  {}",
        i + 1,
        r.setting.max_batch_tokens,
        r.setting.max_batch_size,
        r.setting.max_wait_us,
        r.inputs_per_s,
        r.requests_per_s,
        ms(l.map(|l| l.p50_ms)),
        ms(l.map(|l| l.p99_ms)),
        r.peak_rss_bytes
            .map(|b| format!("{:.0}", b as f64 / 1048576.0))
            .unwrap_or_else(|| "n/a".into()),
        r.server
            .as_ref()
            .and_then(|s| s.avg_batch_size)
            .map(|b| format!("{b:.1}"))
            .unwrap_or_else(|| "-".into()),
        r.errors,
        if r.meets_constraints {
            "ok".to_string()
        } else {
            r.violations.join(", ")
        }
    )
}
