//! Driving one load level: a closed loop (N senders, each sends its next request when the last
//! reply arrives) or an open loop (requests sent on a fixed schedule whatever the replies; latency
//! counted from the scheduled time, so a stalled server cannot hide its queue: no coordinated
//! omission).

use super::client::{Client, Outcome};
use super::scenario::Workload;
use hdrhistogram::Histogram;
use hyper::Uri;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Closed loop: how long a sender waits after a request that got no reply at all.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);

/// One load level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Level {
    Concurrency(usize),
    Rate(f64),
}

/// How long a level measures.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    Duration(Duration),
    Requests(u64),
}

/// Everything the senders share.
pub struct Ctx {
    pub client: Client,
    pub workload: Workload,
    /// One URI per workload kind.
    pub uris: Vec<Uri>,
    pub warmup: Duration,
    pub stop: Stop,
    pub max_in_flight: usize,
    pub progress: bool,
}

/// Latency histogram in microseconds, 1 µs to 1 h at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// What a level measured: closed loop, the replies that arrived after the warm-up (--duration)
/// or the requests sent after it (--requests); open loop, the requests scheduled after it.
pub struct Measured {
    pub hist: Histogram<u64>,
    /// Per workload kind: latency histogram, successful and failed requests.
    pub per_kind: Vec<Histogram<u64>>,
    pub per_kind_ok: Vec<u64>,
    pub per_kind_errors: Vec<u64>,
    pub ok: u64,
    pub inputs: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub by_kind: BTreeMap<String, u64>,
    /// Open loop: requests not sent because --max-in-flight were outstanding.
    pub skipped: u64,
    /// From the end of the warm-up to the last counted reply.
    pub elapsed: Duration,
    /// From the end of the warm-up to the end of the level (for the client CPU share).
    pub wall: Duration,
}

struct Recorder {
    m: Measured,
    last_done: Option<Instant>,
}

impl Recorder {
    fn new(kinds: usize) -> Recorder {
        Recorder {
            m: Measured {
                hist: new_histogram(),
                per_kind: (0..kinds).map(|_| new_histogram()).collect(),
                per_kind_ok: vec![0; kinds],
                per_kind_errors: vec![0; kinds],
                ok: 0,
                inputs: 0,
                by_status: BTreeMap::new(),
                by_kind: BTreeMap::new(),
                skipped: 0,
                elapsed: Duration::ZERO,
                wall: Duration::ZERO,
            },
            last_done: None,
        }
    }

    fn record(
        &mut self,
        kind: usize,
        inputs: usize,
        outcome: Outcome,
        latency: Option<Duration>,
        done: Instant,
    ) {
        let ok = outcome == Outcome::Ok;
        match outcome {
            Outcome::Ok => {
                if let Some(latency) = latency {
                    let us = (latency.as_micros() as u64).max(1);
                    self.m.hist.saturating_record(us);
                    if let Some(h) = self.m.per_kind.get_mut(kind) {
                        h.saturating_record(us);
                    }
                }
                if let Some(n) = self.m.per_kind_ok.get_mut(kind) {
                    *n += 1;
                }
                self.m.ok += 1;
                self.m.inputs += inputs as u64;
            }
            Outcome::Status(s) => *self.m.by_status.entry(s).or_default() += 1,
            Outcome::Failed(k) => *self.m.by_kind.entry(k).or_default() += 1,
        }
        if let (Some(e), false) = (self.m.per_kind_errors.get_mut(kind), ok) {
            *e += 1;
        }
        self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
    }
}

/// Shared counters for the progress bar.
#[derive(Default)]
struct Counters {
    done: AtomicU64,
    errors: AtomicU64,
}

fn progress_bar(ctx: &Ctx, label: &str) -> ProgressBar {
    if !ctx.progress {
        return ProgressBar::hidden();
    }
    let (len, unit) = match ctx.stop {
        Stop::Duration(d) => ((ctx.warmup + d).as_millis() as u64, "ms"),
        Stop::Requests(n) => (n, "req"),
    };
    let pb = ProgressBar::new(len.max(1));
    let template = format!("{{prefix:>9}} [{{bar:24}}] {{pos}}/{{len}} {unit} {{wide_msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label.to_string());
    pb
}

/// Runs one level and returns what it measured. `at_measure_start` runs when the warm-up ends
/// (the server stats snapshot); its output comes back (`None` if that task failed).
pub async fn run_level<F>(
    ctx: Arc<Ctx>,
    level: Level,
    label: &str,
    at_measure_start: F,
) -> (Measured, Option<F::Output>)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let start = Instant::now();
    let measure_start = start + ctx.warmup;
    let rec = Arc::new(Mutex::new(Recorder::new(ctx.workload.kinds.len())));
    let counters = Arc::new(Counters::default());
    let snapshot = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start).await;
        at_measure_start.await
    });

    let pb = progress_bar(&ctx, label);
    let ticker = {
        let (pb, counters, ctx) = (pb.clone(), counters.clone(), ctx.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = Instant::now();
                let done = counters.done.load(Ordering::Relaxed);
                let errors = counters.errors.load(Ordering::Relaxed);
                match ctx.stop {
                    Stop::Duration(_) => {
                        pb.set_position(now.duration_since(start).as_millis() as u64)
                    }
                    Stop::Requests(_) => pb.set_position(done),
                }
                let phase = if now < measure_start {
                    "warm-up"
                } else {
                    "measuring"
                };
                pb.set_message(format!("{phase}: {done} done, {errors} err"));
            }
        })
    };

    let skipped = match level {
        Level::Concurrency(c) => {
            closed_loop(&ctx, c, measure_start, &rec, &counters).await;
            0
        }
        Level::Rate(r) => open_loop(&ctx, r, measure_start, &rec, &counters).await,
    };
    ticker.abort();
    pb.finish_and_clear();
    let end = Instant::now();
    let snap = snapshot.await.ok();
    let mut r = std::mem::replace(
        &mut *rec.lock().unwrap_or_else(|p| p.into_inner()),
        Recorder::new(0),
    );
    r.m.skipped = skipped;
    r.m.elapsed = match (r.last_done, ctx.stop) {
        (Some(d), _) if d > measure_start => d.duration_since(measure_start),
        (_, Stop::Duration(d)) => d,
        _ => end.saturating_duration_since(measure_start),
    };
    r.m.wall = end.saturating_duration_since(measure_start);
    (r.m, snap)
}

async fn closed_loop(
    ctx: &Arc<Ctx>,
    concurrency: usize,
    measure_start: Instant,
    rec: &Arc<Mutex<Recorder>>,
    counters: &Arc<Counters>,
) {
    let end = match ctx.stop {
        Stop::Duration(d) => Some(measure_start + d),
        Stop::Requests(_) => None,
    };
    let issued = Arc::new(AtomicU64::new(0));
    let mut senders = JoinSet::new();
    for _ in 0..concurrency {
        let (ctx, rec, counters, issued) =
            (ctx.clone(), rec.clone(), counters.clone(), issued.clone());
        senders.spawn(async move {
            loop {
                let now = Instant::now();
                if end.is_some_and(|e| now >= e) {
                    break;
                }
                let sent_measuring = now >= measure_start;
                if sent_measuring {
                    if let Stop::Requests(n) = ctx.stop {
                        if issued.fetch_add(1, Ordering::Relaxed) >= n {
                            break;
                        }
                    }
                }
                let req = ctx.workload.next();
                let t0 = Instant::now();
                let outcome = ctx.client.post(ctx.uris[req.kind].clone(), req.body).await;
                let done = Instant::now();
                let no_reply = matches!(outcome, Outcome::Failed(_));
                // --duration: every reply that arrives after the warm-up (from a request sent
                // before the end) counts toward throughput, so a server slower than the warm-up
                // still shows it; latency is of the requests sent after the warm-up only (a
                // warm-up request's wait is partly warm-up time). --requests: the N requests
                // sent after the warm-up.
                let counted = match ctx.stop {
                    Stop::Duration(_) => done >= measure_start,
                    Stop::Requests(_) => sent_measuring,
                };
                let latency = sent_measuring.then(|| done - t0);
                if counted {
                    if outcome != Outcome::Ok {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    counters.done.fetch_add(1, Ordering::Relaxed);
                    rec.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(req.kind, req.inputs, outcome, latency, done);
                }
                if no_reply {
                    // A server that is down or refusing connections is not hammered with
                    // reconnects in a tight loop.
                    tokio::time::sleep(FAILURE_PAUSE).await;
                }
            }
        });
    }
    while senders.join_next().await.is_some() {}
}

/// Returns the number of scheduled requests skipped because --max-in-flight were outstanding.
async fn open_loop(
    ctx: &Arc<Ctx>,
    rate: f64,
    measure_start: Instant,
    rec: &Arc<Mutex<Recorder>>,
    counters: &Arc<Counters>,
) -> u64 {
    let start = measure_start - ctx.warmup;
    let end = match ctx.stop {
        Stop::Duration(d) => Some(measure_start + d),
        Stop::Requests(_) => None,
    };
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut requests = JoinSet::new();
    let mut skipped = 0u64;
    let mut counted_sent = 0u64;
    for i in 0u64.. {
        let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
        if end.is_some_and(|e| scheduled >= e) {
            break;
        }
        let counted = scheduled >= measure_start;
        if counted {
            if let Stop::Requests(n) = ctx.stop {
                if counted_sent >= n {
                    break;
                }
            }
            counted_sent += 1;
        }
        tokio::time::sleep_until(scheduled).await;
        while requests.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= ctx.max_in_flight as u64 {
            if counted {
                skipped += 1;
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (ctx, rec, counters, in_flight) = (
            ctx.clone(),
            rec.clone(),
            counters.clone(),
            in_flight.clone(),
        );
        requests.spawn(async move {
            let req = ctx.workload.next();
            let outcome = ctx.client.post(ctx.uris[req.kind].clone(), req.body).await;
            let done = Instant::now();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            if counted {
                if outcome != Outcome::Ok {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                }
                counters.done.fetch_add(1, Ordering::Relaxed);
                // Latency from the scheduled send time, not from when it went out.
                rec.lock().unwrap_or_else(|p| p.into_inner()).record(
                    req.kind,
                    req.inputs,
                    outcome,
                    Some(done - scheduled),
                    done,
                );
            }
        });
    }
    while requests.join_next().await.is_some() {}
    skipped
}
