//! Timing headers on the answers of model routes, in whole milliseconds as
//! text-embeddings-inference writes them: `x-queue-time`, `x-tokenize-time` (also as TEI's
//! `x-tokenization-time`), `x-inference-time` and `x-total-time`.
//!
//! The middleware runs each request inside a [`RequestTiming`] scope; the pipeline, the encoder
//! batcher and the generation worker add to it (see `nlpd_runtime::timing` for how batches and
//! several runs add up). Only answers that served a model (a [`Served`] naming one) carry the
//! headers: health, metrics, model lists, evidence reads and errors do not. Cached (and
//! coalesced) results add no queue, tokenize or inference time. A streamed answer's headers
//! leave before its body: it carries the queue and tokenize times of its generation (the stream
//! starts once the model took the request) and `x-total-time` up to then, never
//! `x-inference-time`.

use crate::state::{Served, Streamed};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use nlpd_runtime::RequestTiming;
use std::time::{Duration, Instant};

pub const QUEUE_TIME: HeaderName = HeaderName::from_static("x-queue-time");
pub const TOKENIZE_TIME: HeaderName = HeaderName::from_static("x-tokenize-time");
/// TEI's name of the tokenize time.
pub const TOKENIZATION_TIME: HeaderName = HeaderName::from_static("x-tokenization-time");
pub const INFERENCE_TIME: HeaderName = HeaderName::from_static("x-inference-time");
pub const TOTAL_TIME: HeaderName = HeaderName::from_static("x-total-time");

/// Every timing header a non-streamed answer carries.
pub const ALL: [HeaderName; 5] = [
    QUEUE_TIME,
    TOKENIZE_TIME,
    TOKENIZATION_TIME,
    INFERENCE_TIME,
    TOTAL_TIME,
];

pub async fn headers(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let timing = RequestTiming::new();
    let mut resp = RequestTiming::scope(timing.clone(), next.run(req)).await;
    let served_a_model = resp
        .extensions()
        .get::<Served>()
        .is_some_and(|s| !s.model.is_empty());
    if served_a_model {
        let streamed = resp.extensions().get::<Streamed>().is_some();
        let t = timing.times();
        let h = resp.headers_mut();
        put(h, QUEUE_TIME, t.queue);
        put(h, TOKENIZE_TIME, t.tokenize);
        put(h, TOKENIZATION_TIME, t.tokenize);
        if !streamed {
            put(h, INFERENCE_TIME, t.inference);
        }
        put(h, TOTAL_TIME, start.elapsed());
    }
    resp
}

fn put(h: &mut HeaderMap, name: HeaderName, d: Duration) {
    h.insert(name, HeaderValue::from(d.as_millis() as u64));
}
