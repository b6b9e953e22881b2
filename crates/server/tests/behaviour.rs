//! Errors with their statuses and bodies, limits, overload, deadlines, batching under concurrency,
//! lazy load under a memory budget, readiness, authentication and graceful shutdown.

mod common;

use common::*;
use nlpd_runtime::BatchConfig;
use nlpd_server::ServerConfig;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_statuses_and_bodies() {
    let specs = vec![
        spec("cls", &tiny("bert-seqcls"), None),
        spec("emb", &tiny("bert-base"), None),
    ];
    let config = ServerConfig {
        max_request_bytes: 4096,
        max_inputs_per_request: 4,
        ..ServerConfig::default()
    };
    let batch = BatchConfig {
        max_queue: 3,
        ..BatchConfig::default()
    };
    let s = TestServer::start(specs, batch, None, config).await;

    s.post("/v1/embed", "{\"inputs\": ")
        .await
        .assert_error(400, None);
    let m = s.post("/v1/embed", "").await.assert_error(400, None);
    assert!(m.contains("empty"));
    s.post_json("/v1/embed", json!({"inputs": ["a", 7]}))
        .await
        .assert_error(400, Some("inputs[1]"));
    s.post_json("/v1/embed", json!({"inputs": "a", "normalize": "yes"}))
        .await
        .assert_error(400, Some("normalize"));
    s.post_json("/v1/embed", json!({"inputs": "a", "bogus": 1}))
        .await
        .assert_error(400, None);
    s.post_json("/v1/classify", json!({"inputs": "a", "top_k": 0}))
        .await
        .assert_error(400, Some("top_k"));
    s.post_json(
        "/v1/embeddings",
        json!({"input": "a", "encoding_format": "hex"}),
    )
    .await
    .assert_error(400, Some("encoding_format"));
    s.post_json("/v1/embeddings", json!({"input": [1, 2, 3]}))
        .await
        .assert_error(400, Some("input"));

    s.post(
        "/v1/embed",
        &format!("{{\"inputs\": \"{}\"}}", "x".repeat(5000)),
    )
    .await
    .assert_error(413, None);
    s.post_json("/v1/embed", json!({"inputs": ["a", "b", "c", "d", "e"]}))
        .await
        .assert_error(413, Some("inputs"));

    s.post_json("/v1/embed", json!({"inputs": ["ok", "  "]}))
        .await
        .assert_error(422, Some("inputs[1]"));
    s.post_json("/v1/embed", json!({"inputs": []}))
        .await
        .assert_error(422, Some("inputs"));
    let long = "word ".repeat(100);
    let m = s
        .post_json(
            "/v1/embed",
            json!({"inputs": ["short", long], "truncate": false}),
        )
        .await
        .assert_error(422, Some("inputs[1]"));
    assert!(m.contains("limit of 64"), "{m}");
    assert_eq!(
        s.post_json("/v1/embed", json!({"inputs": long}))
            .await
            .status,
        200,
        "truncation is the default"
    );
    s.post_json("/v1/classify", json!({"model": "emb", "inputs": "a"}))
        .await
        .assert_error(422, Some("model"));
    s.post_json("/v1/entities", json!({"inputs": "a"}))
        .await
        .assert_error(404, Some("model"));
    s.post_json("/v1/analyze", json!({"inputs": "a", "tasks": ["entities"]}))
        .await
        .assert_error(404, Some("tasks"));
    s.post_json("/v1/embed", json!({"model": "nope", "inputs": "a"}))
        .await
        .assert_error(404, Some("model"));
    s.get("/nowhere").await.assert_error(404, None);

    // More inputs than a whole queue holds can never be accepted: 413, not 429.
    s.post_json("/v1/embed", json!({"inputs": ["a", "b", "c", "d"]}))
        .await
        .assert_error(413, Some("inputs"));
    s.post_json("/v1/embed", json!({"inputs": "a", "dimensions": 999}))
        .await
        .assert_error(400, Some("dimensions"));
    let r = s.get("/v1/embed").await;
    r.assert_error(405, None);
    // A deadline of 0 ms (already past) or beyond a day is a bad value, not a 504 (the
    // deadline itself answers 504 in `expired_items_are_dropped_before_compute`).
    for ms in [json!(0), json!(86_400_001u64), json!(u64::MAX), json!(-5)] {
        s.post_json("/v1/embed", json!({"inputs": ["a"], "timeout_ms": ms}))
            .await
            .assert_error(400, Some("timeout_ms"));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_429_with_retry_after() {
    // A long max_wait holds the first request's items in the queue while the second arrives.
    let batch = BatchConfig {
        max_queue: 3,
        max_wait: Duration::from_millis(800),
        ..BatchConfig::default()
    };
    let s = TestServer::start(
        vec![spec("emb", &tiny("bert-base"), None)],
        batch,
        None,
        ServerConfig::default(),
    )
    .await;
    assert_eq!(s.post("/v1/models/emb/load", "").await.status, 200);
    let addr = s.addr;
    let first = tokio::spawn(async move {
        let body = json!({"inputs": ["a", "b"]}).to_string();
        request(addr, "POST", "/v1/embed", Some(&body), &[]).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s
        .post_json("/v1/embed", json!({"inputs": ["c", "d"]}))
        .await;
    r.assert_error(429, None);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        first.await.unwrap().status,
        200,
        "the queued request is still served"
    );
    assert_eq!(
        s.post_json("/v1/embed", json!({"inputs": ["c", "d"]}))
            .await
            .status,
        200,
        "room again"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_items_are_dropped_before_compute() {
    // A long max_wait holds the batch open past the request's deadline.
    let batch = BatchConfig {
        max_wait: Duration::from_millis(400),
        max_batch_size: 64,
        ..BatchConfig::default()
    };
    let s = TestServer::start(
        vec![spec("emb", &tiny("bert-base"), None)],
        batch,
        None,
        ServerConfig::default(),
    )
    .await;
    assert_eq!(s.post("/v1/models/emb/load", "").await.status, 200);
    let before = s.get("/v1/stats").await.json()["batching"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["inferences"].as_u64().unwrap())
        .sum::<u64>();
    let r = s
        .post_json("/v1/embed", json!({"inputs": "late", "timeout_ms": 100}))
        .await;
    r.assert_error(504, None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = s.get("/v1/stats").await.json()["batching"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["inferences"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(before, after, "the expired item must not be computed");
    let metrics = s.get("/metrics").await.body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("nlpd_items_dropped_total") && l.contains("emb")),
        "dropped counter"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_batched() {
    let Some(minilm) = pack("all-MiniLM-L6-v2") else {
        return;
    };
    let s = TestServer::start(
        vec![spec("minilm", &minilm, None)],
        BatchConfig::default(),
        None,
        ServerConfig::default(),
    )
    .await;
    assert_eq!(s.post("/v1/models/minilm/load", "").await.status, 200);
    let addr = s.addr;
    let mut tasks = Vec::new();
    for c in 0..32 {
        tasks.push(tokio::spawn(async move {
            for i in 0..4 {
                let body = json!({"inputs": format!("client {c} sends sentence number {i} about batching")}).to_string();
                let r = request(addr, "POST", "/v1/embed", Some(&body), &[]).await;
                assert_eq!(r.status, 200, "{}", r.body);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = s.get("/v1/stats").await.json();
    let b = stats["batching"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["model"] == "minilm")
        .unwrap()
        .clone();
    let avg = b["avg_batch_size"].as_f64().unwrap();
    eprintln!(
        "average batch size under 32 clients: {avg:.2} ({} passes)",
        b["forward_passes"]
    );
    assert!(
        avg > 1.0,
        "average batch size {avg} must exceed 1 under 32 concurrent clients"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lazy_load_under_a_memory_budget_evicts_lru() {
    let a = spec("a", &tiny("bert-base"), None);
    let b = spec("b", &tiny("roberta-base"), None);
    let budget = a.bytes.max(b.bytes) + 1;
    assert!(a.bytes + b.bytes > budget);
    let s = TestServer::start(
        vec![a, b],
        BatchConfig::default(),
        Some(budget),
        ServerConfig::default(),
    )
    .await;
    let loaded = |v: serde_json::Value, n: &str| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == n)
            .unwrap()["loaded"]
            .as_bool()
            .unwrap()
    };
    assert!(!loaded(s.get("/v1/models").await.json(), "a"));
    // Concurrent first requests load once.
    let (r1, r2) = tokio::join!(
        s.post_json("/v1/embed", json!({"model": "a", "inputs": "x"})),
        s.post_json("/v1/embed", json!({"model": "a", "inputs": "y"}))
    );
    assert_eq!((r1.status, r2.status), (200, 200));
    assert!(loaded(s.get("/v1/models").await.json(), "a"));
    assert_eq!(
        s.post_json("/v1/embed", json!({"model": "b", "inputs": "x"}))
            .await
            .status,
        200
    );
    let v = s.get("/v1/models").await.json();
    assert!(
        loaded(v.clone(), "b") && !loaded(v, "a"),
        "a (least recently used) must have been unloaded"
    );
    s.stop().await;

    // A model bigger than the whole budget is refused with a clear error; the server stays up.
    let a = spec("a", &tiny("bert-base"), None);
    let small = a.bytes / 2;
    let s = TestServer::start(
        vec![a],
        BatchConfig::default(),
        Some(small),
        ServerConfig::default(),
    )
    .await;
    let m = s
        .post_json("/v1/embed", json!({"inputs": "x"}))
        .await
        .assert_error(422, Some("model"));
    assert!(m.contains("memory budget"), "{m}");
    assert_eq!(s.get("/health/live").await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_reports_failed_preloads() {
    let broken = std::env::temp_dir().join(format!("nlpd-broken-{}", std::process::id()));
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny("bert-base").join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("model.safetensors"), b"not safetensors").unwrap();
    let specs = vec![
        spec("good", &tiny("bert-base"), None),
        spec("broken", &broken, None),
    ];
    let s = TestServer::start_with(
        specs,
        Default::default(),
        BatchConfig::default(),
        None,
        ServerConfig::default(),
        true,
    )
    .await;
    let r = s.get("/health/ready").await;
    assert_eq!(r.status, 503);
    let reasons = r.json()["reasons"].to_string();
    assert!(
        reasons.contains("broken") && reasons.contains("failed to load"),
        "{reasons}"
    );
    assert_eq!(s.get("/health/live").await.status, 200);
    assert_eq!(
        s.post_json("/v1/embed", json!({"model": "good", "inputs": "x"}))
            .await
            .status,
        200
    );
    s.post_json("/v1/embed", json!({"model": "broken", "inputs": "x"}))
        .await
        .assert_error(503, None);
    let v = s.get("/v1/models").await.json();
    let b = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "broken")
        .unwrap()
        .clone();
    assert!(
        b["error"].as_str().unwrap().contains("cannot read weights"),
        "{b}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_guard_the_api_but_not_health_or_metrics() {
    let config = ServerConfig {
        api_keys: ["s3cret".to_string()].into_iter().collect(),
        ..ServerConfig::default()
    };
    let s = TestServer::start(
        vec![spec("emb", &tiny("bert-base"), None)],
        BatchConfig::default(),
        None,
        config,
    )
    .await;
    let body = json!({"inputs": "x"}).to_string();
    request(s.addr, "POST", "/v1/embed", Some(&body), &[])
        .await
        .assert_error(401, None);
    request(
        s.addr,
        "POST",
        "/v1/embed",
        Some(&body),
        &[("Authorization", "Bearer wrong")],
    )
    .await
    .assert_error(401, None);
    assert_eq!(
        request(
            s.addr,
            "POST",
            "/v1/embed",
            Some(&body),
            &[("Authorization", "Bearer s3cret")]
        )
        .await
        .status,
        200
    );
    assert_eq!(s.get("/health/live").await.status, 200);
    assert_eq!(s.get("/health/ready").await.status, 200);
    assert_eq!(s.get("/metrics").await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let Some(smol) = pack("smollm2-135m-instruct") else {
        return;
    };
    // This test is about shutdown, not deadlines: a loaded CI machine must not turn it into a 504.
    let config = common::generation_config();
    let mut s = TestServer::start(
        vec![spec("smol", &smol, None)],
        BatchConfig::default(),
        None,
        config,
    )
    .await;
    assert_eq!(s.post("/v1/models/smol/load", "").await.status, 200);
    let addr = s.addr;
    let body = json!({"code": "def f(x):\n    return x * 2", "max_tokens": 48}).to_string();
    let inflight =
        tokio::spawn(async move { request(addr, "POST", "/v1/explain", Some(&body), &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = s.trigger_stop();
    let r = inflight.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()["usage"]["completion_tokens"].as_u64().unwrap() > 10,
        "{}",
        r.body
    );
    server.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_apply_per_api_key() {
    let config = ServerConfig {
        api_keys: ["k1".to_string(), "k2".to_string()].into_iter().collect(),
        rate_limit: Some(2.0),
        ..ServerConfig::default()
    };
    let s = TestServer::start(
        vec![spec("emb", &tiny("bert-base"), None)],
        BatchConfig::default(),
        None,
        config,
    )
    .await;
    let body = json!({"inputs": "x"}).to_string();
    let call = |key: &'static str| {
        let body = body.clone();
        let addr = s.addr;
        async move {
            request(
                addr,
                "POST",
                "/v1/embed",
                Some(&body),
                &[("Authorization", &format!("Bearer {key}"))],
            )
            .await
        }
    };
    assert_eq!(call("k1").await.status, 200);
    assert_eq!(call("k1").await.status, 200);
    let r = call("k1").await;
    r.assert_error(429, None);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(call("k2").await.status, 200, "each key has its own bucket");
    assert_eq!(
        s.get("/health/live").await.status,
        200,
        "health is never limited"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(call("k1").await.status, 200, "the bucket refills");
    s.stop().await;
}
