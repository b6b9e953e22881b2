//! Turning measurements into the report: per-level numbers, the server-side split from
//! `/v1/stats`, the table, CSV and JSON.

use super::load::{Level, Measured};
use super::scenario::Scenario;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The settings a report was made with (in the JSON).
#[derive(Debug, Serialize)]
pub struct Settings {
    pub nlpd_version: &'static str,
    pub started_unix_s: u64,
    pub url: String,
    /// bench started this server itself.
    pub own_server: bool,
    pub scenario: Scenario,
    pub mix: Option<BTreeMap<&'static str, u32>>,
    pub model: Option<String>,
    pub batch: usize,
    pub cache: bool,
    /// `closed` (--concurrency) or `open` (--rate).
    pub mode: &'static str,
    pub levels: Vec<f64>,
    pub duration_s: Option<f64>,
    pub requests_per_level: Option<u64>,
    pub warmup_s: f64,
    pub timeout_s: f64,
    pub max_in_flight: Option<usize>,
    pub corpus: String,
    pub corpus_lines: usize,
    pub open_files_limit: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// `None` for an empty histogram (microseconds in, milliseconds out).
    pub fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
    }
}

/// Totals from one `/v1/stats` document, summed over every (task, model) series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerSnapshot {
    /// queue, tokenize, inference, postprocess: items timed and their summed time.
    stage_count: [u64; 4],
    stage_sum_ms: [f64; 4],
    requests: u64,
    errors: u64,
    forward_passes: u64,
    inferences: u64,
}

const STAGES: [&str; 4] = ["queue", "tokenize", "inference", "postprocess"];

impl ServerSnapshot {
    /// Reads nlpd's `/v1/stats`; `None` when the document does not have its shape.
    pub fn parse(v: &Value) -> Option<ServerSnapshot> {
        // `/v1/stats` lists the (task, model) series under `requests`.
        let series = v.get("requests").or_else(|| v.get("series"))?.as_array()?;
        let mut s = ServerSnapshot::default();
        for x in series {
            s.requests += x.get("requests").and_then(Value::as_u64).unwrap_or(0);
            s.errors += x.get("errors").and_then(Value::as_u64).unwrap_or(0);
            for (i, name) in STAGES.iter().enumerate() {
                let Some(st) = x.get(*name).filter(|v| v.is_object()) else {
                    continue;
                };
                let count = st.get("count").and_then(Value::as_u64).unwrap_or(0);
                let mean = st.get("mean_ms").and_then(Value::as_f64).unwrap_or(0.0);
                s.stage_count[i] += count;
                s.stage_sum_ms[i] += count as f64 * mean;
            }
        }
        for b in v
            .get("batching")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            s.forward_passes += b.get("forward_passes").and_then(Value::as_u64).unwrap_or(0);
            s.inferences += b.get("inferences").and_then(Value::as_u64).unwrap_or(0);
        }
        Some(s)
    }

    /// What the server did between two snapshots.
    pub fn delta(before: &ServerSnapshot, after: &ServerSnapshot) -> ServerSplit {
        let stage = |i: usize| {
            let n = after.stage_count[i].saturating_sub(before.stage_count[i]);
            (n > 0).then(|| (after.stage_sum_ms[i] - before.stage_sum_ms[i]).max(0.0) / n as f64)
        };
        let passes = after.forward_passes.saturating_sub(before.forward_passes);
        let items = after.inferences.saturating_sub(before.inferences);
        ServerSplit {
            requests: after.requests.saturating_sub(before.requests),
            errors: after.errors.saturating_sub(before.errors),
            queue_ms: stage(0),
            tokenize_ms: stage(1),
            inference_ms: stage(2),
            postprocess_ms: stage(3),
            forward_passes: passes,
            avg_batch_size: (passes > 0).then(|| items as f64 / passes as f64),
        }
    }
}

/// The server's own view of a level: mean time per input in each stage (from the deltas of
/// `/v1/stats` totals, so exact for the level), and its batching.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerSplit {
    pub requests: u64,
    pub errors: u64,
    pub queue_ms: Option<f64>,
    pub tokenize_ms: Option<f64>,
    pub inference_ms: Option<f64>,
    pub postprocess_ms: Option<f64>,
    pub forward_passes: u64,
    pub avg_batch_size: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: Scenario,
    pub requests: u64,
    pub errors: u64,
    pub latency: Option<Latency>,
}

#[derive(Debug, Serialize)]
pub struct LevelReport {
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    /// Successful (2xx) replies.
    pub requests: u64,
    pub inputs: u64,
    /// Non-2xx replies + requests without a reply (+ skipped in open loop).
    pub errors: u64,
    pub skipped: u64,
    pub duration_s: f64,
    pub requests_per_s: f64,
    pub inputs_per_s: f64,
    /// Of successful replies (closed loop --duration: of requests sent after the warm-up);
    /// `null` when there were none.
    pub latency: Option<Latency>,
    pub errors_by_status: BTreeMap<String, u64>,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// User + system CPU of bench itself over the level, in % of one core.
    pub client_cpu_percent: Option<f64>,
    pub server: Option<ServerSplit>,
    /// Per scenario (mixed only).
    pub scenarios: Vec<ScenarioReport>,
}

impl LevelReport {
    pub fn new(
        level: Level,
        m: &Measured,
        kinds: &[Scenario],
        cpu: Option<f64>,
        server: Option<ServerSplit>,
    ) -> LevelReport {
        let secs = m.elapsed.as_secs_f64().max(1e-9);
        let errors =
            m.by_status.values().sum::<u64>() + m.by_kind.values().sum::<u64>() + m.skipped;
        let (concurrency, rate) = match level {
            Level::Concurrency(c) => (Some(c), None),
            Level::Rate(r) => (None, Some(r)),
        };
        LevelReport {
            concurrency,
            rate,
            requests: m.ok,
            inputs: m.inputs,
            errors,
            skipped: m.skipped,
            duration_s: m.elapsed.as_secs_f64(),
            requests_per_s: m.ok as f64 / secs,
            inputs_per_s: m.inputs as f64 / secs,
            latency: Latency::of(&m.hist),
            errors_by_status: m
                .by_status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors_by_kind: m.by_kind.clone(),
            client_cpu_percent: cpu,
            server,
            scenarios: if kinds.len() > 1 {
                kinds
                    .iter()
                    .zip(&m.per_kind)
                    .zip(m.per_kind_ok.iter().zip(&m.per_kind_errors))
                    .map(|((s, h), (ok, e))| ScenarioReport {
                        scenario: *s,
                        requests: *ok,
                        errors: *e,
                        latency: Latency::of(h),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    pub fn label(&self) -> String {
        match (self.concurrency, self.rate) {
            (Some(c), _) => format!("c={c}"),
            (_, Some(r)) => format!("{}/s", num(r)),
            _ => String::new(),
        }
    }

    /// x of the plot: concurrency or rate.
    pub fn x(&self) -> f64 {
        self.concurrency
            .map(|c| c as f64)
            .or(self.rate)
            .unwrap_or(0.0)
    }

    /// "429×3, connect: connection refused×2, skipped×1" (empty without errors).
    pub fn error_summary(&self) -> String {
        let mut parts: Vec<String> = self
            .errors_by_status
            .iter()
            .map(|(s, n)| format!("HTTP {s}×{n}"))
            .collect();
        parts.extend(self.errors_by_kind.iter().map(|(k, n)| format!("{k}×{n}")));
        if self.skipped > 0 {
            parts.push(format!("skipped (--max-in-flight)×{}", self.skipped));
        }
        parts.join(", ")
    }
}

/// A rate or level value without a needless fraction.
pub fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn ms(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The table's header line.
pub fn table_header() -> String {
    format!(
        "{:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6}  {:<27} {:>6}",
        "level",
        "req/s",
        "inputs/s",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
        "cpu%",
        "server ms queue/tok/inf/post",
        "batch"
    )
}

/// One row of the table, plus an indented error line when the level had errors.
pub fn table_row(r: &LevelReport) -> String {
    let l = r.latency.as_ref();
    let server = match &r.server {
        None => "n/a".to_string(),
        Some(s) => format!(
            "{}/{}/{}/{}",
            ms(s.queue_ms),
            ms(s.tokenize_ms),
            ms(s.inference_ms),
            ms(s.postprocess_ms)
        ),
    };
    let batch = r
        .server
        .as_ref()
        .and_then(|s| s.avg_batch_size)
        .map(|b| format!("{b:.1}"))
        .unwrap_or_else(|| "-".into());
    let mut line = format!(
        "{:>9} {:>9.1} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6}  {:<27} {:>6}",
        r.label(),
        r.requests_per_s,
        r.inputs_per_s,
        ms(l.map(|l| l.p50_ms)),
        ms(l.map(|l| l.p90_ms)),
        ms(l.map(|l| l.p95_ms)),
        ms(l.map(|l| l.p99_ms)),
        ms(l.map(|l| l.max_ms)),
        r.errors,
        r.client_cpu_percent
            .map(|c| format!("{c:.0}"))
            .unwrap_or_else(|| "n/a".into()),
        server,
        batch
    );
    if r.errors > 0 {
        let _ = write!(line, "\n{:>9} errors: {}", "", r.error_summary());
    }
    for s in &r.scenarios {
        let _ = write!(
            line,
            "\n{:>9} {:<12} {:>7} ok {:>6} errors  p50 {} ms  p99 {} ms",
            "",
            s.scenario.name(),
            s.requests,
            s.errors,
            ms(s.latency.as_ref().map(|l| l.p50_ms)),
            ms(s.latency.as_ref().map(|l| l.p99_ms))
        );
    }
    line
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV: a header and one row per level.
pub fn csv(levels: &[LevelReport]) -> String {
    let mut out = String::from(
        "concurrency,rate,requests,inputs,errors,skipped,duration_s,requests_per_s,inputs_per_s,\
mean_ms,p50_ms,p90_ms,p95_ms,p99_ms,max_ms,client_cpu_percent,server_queue_ms,server_tokenize_ms,\
server_inference_ms,server_postprocess_ms,server_avg_batch_size,errors_detail\n",
    );
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_default();
    for r in levels {
        let l = r.latency.as_ref();
        let s = r.server.as_ref();
        let fields = [
            r.concurrency.map(|c| c.to_string()).unwrap_or_default(),
            r.rate.map(num).unwrap_or_default(),
            r.requests.to_string(),
            r.inputs.to_string(),
            r.errors.to_string(),
            r.skipped.to_string(),
            format!("{:.3}", r.duration_s),
            format!("{:.3}", r.requests_per_s),
            format!("{:.3}", r.inputs_per_s),
            opt(l.map(|l| l.mean_ms)),
            opt(l.map(|l| l.p50_ms)),
            opt(l.map(|l| l.p90_ms)),
            opt(l.map(|l| l.p95_ms)),
            opt(l.map(|l| l.p99_ms)),
            opt(l.map(|l| l.max_ms)),
            opt(r.client_cpu_percent),
            opt(s.and_then(|s| s.queue_ms)),
            opt(s.and_then(|s| s.tokenize_ms)),
            opt(s.and_then(|s| s.inference_ms)),
            opt(s.and_then(|s| s.postprocess_ms)),
            opt(s.and_then(|s| s.avg_batch_size)),
            csv_field(&r.error_summary()),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stats(queue: (u64, f64), passes: u64, items: u64) -> Value {
        json!({"uptime_s": 1.0, "requests": [
            {"task": "embed", "model": "m", "requests": 10, "errors": 1, "inputs": 9,
             "queue": {"count": queue.0, "mean_ms": queue.1}, "tokenize": null,
             "inference": {"count": queue.0, "mean_ms": 2.0}, "postprocess": null}],
            "batching": [{"model": "m", "forward_passes": passes, "inferences": items}]})
    }

    #[test]
    fn the_server_split_is_the_mean_of_the_level_only() {
        let a = ServerSnapshot::parse(&stats((10, 1.0), 5, 10)).unwrap();
        // 10 more items at 4 ms each: the cumulative mean is 2.5, the level's is 4.
        let b = ServerSnapshot::parse(&stats((20, 2.5), 7, 20)).unwrap();
        let d = ServerSnapshot::delta(&a, &b);
        assert!((d.queue_ms.unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(d.tokenize_ms, None);
        assert_eq!(d.avg_batch_size, Some(5.0));
        assert!(ServerSnapshot::parse(&json!({"error": "nope"})).is_none());
    }

    #[test]
    fn csv_quotes_fields_that_need_it() {
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("x\"y"), "\"x\"\"y\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
