//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): every request gets a trace id,
//! the caller's when its `traceparent` header is valid, else a new one (an invalid header is
//! ignored and the trace restarts, as the specification asks of a receiver; never a 4xx). The
//! request's log span carries `trace_id`, `span_id` (this server's span) and `parent_id`, and the
//! answer carries `traceparent` with the trace id and this server's span id, plus the caller's
//! `tracestate` when its `traceparent` was valid. Nothing is exported (no OTLP).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The trace flags of a trace this server starts: sampled (every request's log lines carry it).
const SAMPLED: u8 = 0x01;

/// The caller's position in a trace, from a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: u128,
    pub parent_id: u64,
    pub flags: u8,
}

/// The trace context of one request (in its extensions).
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub trace_id: u128,
    /// This server's span.
    pub span_id: u64,
    /// The caller's span, when its `traceparent` was valid.
    pub parent_id: Option<u64>,
    pub flags: u8,
    /// The caller's `tracestate`, kept only with a valid `traceparent`.
    pub tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// Continues the caller's trace, or starts one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        match traceparent(headers) {
            Some(p) => TraceContext {
                trace_id: p.trace_id,
                span_id: new_span_id(),
                parent_id: Some(p.parent_id),
                flags: p.flags,
                tracestate: tracestate(headers),
            },
            None => TraceContext {
                trace_id: new_trace_id(),
                span_id: new_span_id(),
                parent_id: None,
                flags: SAMPLED,
                tracestate: None,
            },
        }
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The `traceparent` of this server's span (version 00).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// The request's `traceparent` when there is exactly one and it is valid.
fn traceparent(headers: &HeaderMap) -> Option<Parent> {
    let mut all = headers.get_all(TRACEPARENT).iter();
    let one = all.next()?;
    if all.next().is_some() {
        return None;
    }
    parse_traceparent(one.to_str().ok()?)
}

/// Every `tracestate` header joined with commas (as the specification combines them).
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let parts: Vec<&str> = headers
        .get_all(TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if parts.is_empty() {
        return None;
    }
    HeaderValue::from_str(&parts.join(",")).ok()
}

/// Parses `version-trace_id-parent_id-flags`: lowercase hex, trace id and parent id not all
/// zeros, version `ff` invalid. Version 00 is exactly 55 characters; a later version may append
/// `-...` fields, which are ignored (the specification's forward compatibility).
pub fn parse_traceparent(value: &str) -> Option<Parent> {
    let b = value.trim().as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = hex(&b[0..2])? as u8;
    match version {
        0xff => return None,
        0 if b.len() != 55 => return None,
        _ if b.len() > 55 && b[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = hex(&b[3..35])?;
    let parent_id = hex(&b[36..52])? as u64;
    let flags = hex(&b[53..55])? as u8;
    (trace_id != 0 && parent_id != 0).then_some(Parent {
        trace_id,
        parent_id,
        flags,
    })
}

/// Lowercase hex digits (at most 32) as a number.
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u128::from(d))
    })
}

fn new_trace_id() -> u128 {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

fn new_span_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// Middleware (outside the request's log span): reads or starts the trace, puts it in the
/// request's extensions for the span, and answers with `traceparent` (and `tracestate`).
pub async fn propagate(mut req: Request, next: Next) -> Response {
    let ctx = TraceContext::from_headers(req.headers());
    req.extensions_mut().insert(ctx.clone());
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.traceparent()) {
        h.insert(TRACEPARENT, v);
    }
    if let Some(state) = ctx.tracestate {
        h.insert(TRACESTATE, state);
    }
    resp
}

/// The request's log span, with its trace ids. Its level is ERROR so that it is enabled under
/// any `--log` filter: the level of a span only decides whether it exists, and every line logged
/// during the request (warnings included) then carries `trace_id`.
pub fn make_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let ctx = req.extensions().get::<TraceContext>();
    tracing::error_span!(
        "request",
        method = %req.method(),
        uri = %req.uri(),
        version = ?req.version(),
        trace_id = ctx.map(TraceContext::trace_id_hex),
        span_id = ctx.map(TraceContext::span_id_hex),
        parent_id = ctx.and_then(|c| c.parent_id).map(|p| format!("{p:016x}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_parses() {
        let p = parse_traceparent(VALID).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.parent_id, 0x00f067aa0ba902b7);
        assert_eq!(p.flags, 1);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_later_version_may_add_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert!(parse_traceparent(later).is_some());
    }

    #[test]
    fn the_answer_continues_the_trace_with_a_new_span() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        h.append(TRACESTATE, HeaderValue::from_static("a=1"));
        h.append(TRACESTATE, HeaderValue::from_static("b=2"));
        let c = TraceContext::from_headers(&h);
        let tp = c.traceparent();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(tp.ends_with("-01"), "{tp}");
        assert_ne!(c.span_id, 0x00f067aa0ba902b7);
        assert_eq!(c.tracestate.unwrap(), "a=1,b=2");
    }

    #[test]
    fn two_traceparents_or_none_start_a_new_trace_without_tracestate() {
        let mut h = HeaderMap::new();
        h.append(TRACEPARENT, HeaderValue::from_static(VALID));
        h.append(TRACEPARENT, HeaderValue::from_static(VALID));
        h.insert(TRACESTATE, HeaderValue::from_static("a=1"));
        let c = TraceContext::from_headers(&h);
        assert_ne!(c.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert!(c.tracestate.is_none());
        let p = parse_traceparent(&c.traceparent()).unwrap();
        assert_eq!(
            (p.trace_id, p.parent_id, p.flags),
            (c.trace_id, c.span_id, 1)
        );
    }
}
