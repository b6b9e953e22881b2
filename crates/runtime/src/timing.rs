//! Per-request stage times: how long a request's work waited in model queues, was tokenized and
//! ran on a model. The server opens a [`RequestTiming`] for each request and runs the request
//! inside [`RequestTiming::scope`]; the encoder batcher, the generation worker and the server's
//! tokenization add to the record of the request they serve (found with
//! [`RequestTiming::current`]), and the server writes it as response headers. Work done outside
//! a scope (cache warming, index rebuilds) records nothing.
//!
//! One model run (the inputs of a request queued together, in one batch or split over several)
//! adds its queue time, from queueing until the first forward pass that carried one of its
//! inputs began, and its inference time, from then until the last of those passes ended (other
//! requests' passes in between included). The runs of one request (analyze and verify make
//! several) add up: for runs one after another queue + tokenize + inference stays within the
//! request's total time; runs at once can add up to more.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

tokio::task_local! {
    static CURRENT: Arc<RequestTiming>;
}

/// The stage times of one request, in microseconds (atomics: workers on other threads add to it).
#[derive(Debug, Default)]
pub struct RequestTiming {
    queue_us: AtomicU64,
    tokenize_us: AtomicU64,
    inference_us: AtomicU64,
}

/// The three stage times of a [`RequestTiming`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    pub queue: Duration,
    pub tokenize: Duration,
    pub inference: Duration,
}

impl RequestTiming {
    pub fn new() -> Arc<Self> {
        Arc::new(RequestTiming::default())
    }

    /// Runs `f` with `timing` as the current record of its task.
    pub async fn scope<F: Future>(timing: Arc<Self>, f: F) -> F::Output {
        CURRENT.scope(timing, f).await
    }

    /// The record of the request the calling task serves, if it runs in a scope.
    pub fn current() -> Option<Arc<Self>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    pub fn add_queue(&self, d: Duration) {
        add(&self.queue_us, d);
    }

    pub fn add_tokenize(&self, d: Duration) {
        add(&self.tokenize_us, d);
    }

    pub fn add_inference(&self, d: Duration) {
        add(&self.inference_us, d);
    }

    pub fn times(&self) -> StageTimes {
        let get = |a: &AtomicU64| Duration::from_micros(a.load(Ordering::Relaxed));
        StageTimes {
            queue: get(&self.queue_us),
            tokenize: get(&self.tokenize_us),
            inference: get(&self.inference_us),
        }
    }
}

fn add(a: &AtomicU64, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    // Saturating: a wrapped total would be worse than a capped one.
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_add(us))
    });
}

/// Adds `d` to the tokenize time of the current request, if any.
pub fn record_tokenize(d: Duration) {
    if let Some(t) = RequestTiming::current() {
        t.add_tokenize(d);
    }
}

/// The span of one model run: its first queueing, the first forward pass that began on one of
/// its inputs and the last one that ended.
#[derive(Debug, Default)]
pub(crate) struct RunTimes {
    span: Option<(Instant, Instant, Instant)>,
}

impl RunTimes {
    /// One input: queued at `enqueued`, run by the pass from `started` to `ended`.
    pub(crate) fn input(&mut self, enqueued: Instant, started: Instant, ended: Instant) {
        self.span = Some(match self.span {
            None => (enqueued, started, ended),
            Some((q, s, e)) => (q.min(enqueued), s.min(started), e.max(ended)),
        });
    }

    /// Adds the run to `timing`.
    pub(crate) fn record(&self, timing: &RequestTiming) {
        if let Some((q, s, e)) = self.span {
            timing.add_queue(s.saturating_duration_since(q));
            timing.add_inference(e.saturating_duration_since(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_split_over_batches_spans_its_first_start_to_its_last_end() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut r = RunTimes::default();
        // Two inputs in a pass from 3 to 10 ms, one in a later pass from 14 to 20 ms.
        r.input(t0, t0 + ms(3), t0 + ms(10));
        r.input(t0, t0 + ms(3), t0 + ms(10));
        r.input(t0, t0 + ms(14), t0 + ms(20));
        let t = RequestTiming::new();
        r.record(&t);
        // A second run of the same request adds up.
        r.record(&t);
        RunTimes::default().record(&t);
        assert_eq!(
            t.times(),
            StageTimes {
                queue: ms(6),
                tokenize: Duration::ZERO,
                inference: ms(34),
            }
        );
    }

    #[tokio::test]
    async fn current_is_the_scope_record_and_none_outside() {
        assert!(RequestTiming::current().is_none());
        let t = RequestTiming::new();
        RequestTiming::scope(t.clone(), async {
            record_tokenize(Duration::from_millis(3));
        })
        .await;
        record_tokenize(Duration::from_millis(100));
        assert_eq!(t.times().tokenize, Duration::from_millis(3));
    }
}
