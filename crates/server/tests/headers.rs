//! Timing headers (`x-queue-time`, `x-tokenize-time`, `x-inference-time`, `x-total-time`) on
//! encoder and generation answers, cache hits included, streams with what is known at their
//! first byte; W3C trace context continued, restarted when invalid, and in the JSON log lines.
//! Real models: the pack's MiniLM and SmolLM2 (skipped loudly off CI when missing), a tiny BERT.

mod common;

use common::*;
use nlpd_runtime::{BatchConfig, CacheConfig};
use nlpd_server::ServerConfig;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

const TIMING: [&str; 5] = [
    "x-queue-time",
    "x-tokenize-time",
    "x-tokenization-time",
    "x-inference-time",
    "x-total-time",
];

/// A timing header's value in ms (panics when absent or not an integer).
fn ms(r: &Resp, name: &str) -> u64 {
    let v = r
        .header(name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", r.headers));
    v.parse()
        .unwrap_or_else(|_| panic!("{name} is not whole ms: {v}"))
}

fn assert_no_timing(r: &Resp, what: &str) {
    for h in TIMING {
        assert!(r.header(h).is_none(), "{what} carries {h}: {:?}", r.headers);
    }
}

/// Texts long enough that MiniLM's forward pass takes whole milliseconds.
fn texts(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{tag} sentence number {i}: the committee reviewed the quarterly report, discussed \
                 the budget for the coming year and agreed to meet again after the holidays."
            )
        })
        .collect()
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encoder_answers_carry_timing_and_a_cache_hit_has_no_model_time() {
    let Some(minilm) = pack("all-MiniLM-L6-v2") else {
        return;
    };
    let config = ServerConfig {
        cache: Some(CacheConfig::default()),
        ..ServerConfig::default()
    };
    let s = TestServer::start(
        vec![spec("minilm", &minilm, None)],
        BatchConfig::default(),
        None,
        config,
    )
    .await;
    let inputs = texts(&unique("miss"), 48);
    let body = json!({"inputs": inputs});

    let miss = s.post_json("/v1/embed", body.clone()).await;
    assert_eq!(miss.status, 200, "{}", miss.body);
    let (q, t, i, total) = (
        ms(&miss, "x-queue-time"),
        ms(&miss, "x-tokenize-time"),
        ms(&miss, "x-inference-time"),
        ms(&miss, "x-total-time"),
    );
    assert_eq!(
        ms(&miss, "x-tokenization-time"),
        t,
        "TEI's name, same value"
    );
    assert!(
        i >= 1,
        "48 texts through MiniLM take whole ms: {:?}",
        miss.headers
    );
    assert!(
        q + t + i <= total,
        "stages within the total: {:?}",
        miss.headers
    );

    // The same inputs again: every one from the cache, no model time, the same vectors.
    let hit = s.post_json("/v1/embed", body).await;
    assert_eq!(hit.status, 200, "{}", hit.body);
    assert_eq!(hit.json(), miss.json());
    for h in ["x-queue-time", "x-tokenize-time", "x-inference-time"] {
        assert_eq!(ms(&hit, h), 0, "{h} of a cache hit: {:?}", hit.headers);
    }
    assert!(hit.header("x-total-time").is_some());

    // Other encoder shapes: OpenAI, TEI, tokenize (tokenizing is its only stage).
    let r = s
        .post_json(
            "/v1/embeddings",
            json!({"input": [unique("openai")], "model": "minilm"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    TIMING.iter().for_each(|h| {
        ms(&r, h);
    });
    let r = s
        .post_json("/embed", json!({"inputs": unique("tei")}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    TIMING.iter().for_each(|h| {
        ms(&r, h);
    });
    let r = s
        .post_json("/v1/tokenize", json!({"inputs": texts("tok", 200)}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ms(&r, "x-inference-time"), 0);
    assert_eq!(ms(&r, "x-queue-time"), 0);

    // No model work, no timing headers (but a trace).
    for path in ["/health", "/v1/models", "/metrics"] {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_no_timing(&r, path);
        assert!(r.header("traceparent").is_some(), "{path}");
    }
    // An error answer has none either.
    let r = s.post_json("/v1/embed", json!({"inputs": []})).await;
    assert!(r.status >= 400, "{}", r.body);
    assert_no_timing(&r, "an error");

    // Browsers may read them: CORS exposes every header.
    let r = request(
        s.addr,
        "POST",
        "/v1/embed",
        Some(&json!({"inputs": "cors"}).to_string()),
        &[("Origin", "http://example.test")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-expose-headers"), Some("*"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generation_answers_carry_timing_and_streams_what_is_known_at_first_byte() {
    let Some(smol) = pack("smollm2-135m-instruct") else {
        return;
    };
    let s = TestServer::start(
        vec![spec("smollm2", &smol, None)],
        BatchConfig::default(),
        None,
        generation_config(),
    )
    .await;
    let r = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["usage"]["completion_tokens"], 4);
    let (q, t, i, total) = (
        ms(&r, "x-queue-time"),
        ms(&r, "x-tokenize-time"),
        ms(&r, "x-inference-time"),
        ms(&r, "x-total-time"),
    );
    assert!(i >= 1, "4 tokens of SmolLM2 take whole ms: {:?}", r.headers);
    assert!(q + t + i <= total, "{:?}", r.headers);

    let r = s
        .post_json(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    let (q, t, total) = (
        ms(&r, "x-queue-time"),
        ms(&r, "x-tokenize-time"),
        ms(&r, "x-total-time"),
    );
    assert!(q + t <= total, "{:?}", r.headers);
    assert!(
        r.header("x-inference-time").is_none(),
        "the generation has not run when a stream's headers leave: {:?}",
        r.headers
    );
    s.stop().await;
}

/// Log lines of this test binary, as `nlpd serve --log-format json` writes them.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn,tower_http=debug"))
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The trace id and span id of an answer's `traceparent` (checking its format).
fn answered(r: &Resp) -> (String, String, String) {
    let tp = r
        .header("traceparent")
        .unwrap_or_else(|| panic!("no traceparent: {:?}", r.headers));
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    };
    assert!(hex(parts[1], 32) && parts[1] != "0".repeat(32), "{tp}");
    assert!(hex(parts[2], 16) && parts[2] != "0".repeat(16), "{tp}");
    assert!(hex(parts[3], 2), "{tp}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_context_is_continued_restarted_and_logged() {
    let logs = captured_logs();
    let s = TestServer::start(
        vec![spec("emb", &tiny("bert-base"), None)],
        BatchConfig::default(),
        None,
        ServerConfig::default(),
    )
    .await;
    let body = json!({"inputs": "trace me"}).to_string();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let sent = format!("00-{trace}-{parent}-01");

    // A valid traceparent: same trace, this server's new span, flags and tracestate echoed.
    let r = request(
        s.addr,
        "POST",
        "/v1/embed",
        Some(&body),
        &[("traceparent", &sent), ("tracestate", "vendor=abc,other=1")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (t, span, flags) = answered(&r);
    assert_eq!((t.as_str(), flags.as_str()), (trace, "01"));
    assert_ne!(span, parent);
    assert_eq!(r.header("tracestate"), Some("vendor=abc,other=1"));

    // Every log line of that request carries the trace id (and the span id it answered with).
    let line = {
        let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["span"]["trace_id"] == trace)
            .unwrap_or_else(|| panic!("no log line with trace_id {trace}:\n{text}"))
    };
    assert_eq!(line["span"]["name"], "request", "{line}");
    assert_eq!(line["span"]["span_id"], span.as_str(), "{line}");
    assert_eq!(line["span"]["parent_id"], parent, "{line}");

    // Invalid ones are ignored, never an error: a new trace starts, without the tracestate.
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    ] {
        let r = request(
            s.addr,
            "POST",
            "/v1/embed",
            Some(&body),
            &[("traceparent", bad), ("tracestate", "vendor=abc")],
        )
        .await;
        assert_eq!(r.status, 200, "{bad}: {}", r.body);
        let (t, _, flags) = answered(&r);
        assert_ne!(t, trace, "{bad}");
        assert_eq!(flags, "01", "{bad}");
        assert!(r.header("tracestate").is_none(), "{bad}");
    }

    // None: every request gets its own new trace, errors and open routes included.
    let a = answered(&s.post_json("/v1/embed", json!({"inputs": "a"})).await).0;
    let b = answered(&s.post_json("/v1/embed", json!({"inputs": []})).await).0;
    let c = answered(&s.get("/health/live").await).0;
    assert!(a != b && b != c && a != c);
    s.stop().await;
}
