//! The result cache end to end over HTTP with real (tiny) models: L1 hits skip the model and
//! return identical results, `"cache": false` bypasses, errors are not cached, TTL expiry,
//! byte-capacity eviction, identical concurrent misses computed once, L2 shared by two servers
//! through the machine's Redis, and a Redis killed and restarted under load (own redis-server).
//!
//! Tests that need Redis fail under CI (`CI=true`) when it is missing, and skip loudly otherwise.

mod common;

use common::*;
use nlpd_runtime::cache::{encoder_key, Policy, RedisConfig};
use nlpd_runtime::{BatchConfig, CacheConfig};
use nlpd_server::ServerConfig;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn specs() -> Vec<nlpd_runtime::ModelSpec> {
    vec![
        spec("emb", &tiny("bert-base"), None),
        spec("cls", &tiny("bert-seqcls"), None),
        spec("ner", &tiny("bert-tokcls"), None),
    ]
}

async fn start(cache: CacheConfig) -> TestServer {
    let config = ServerConfig {
        cache: Some(cache),
        ..ServerConfig::default()
    };
    TestServer::start(specs(), BatchConfig::default(), None, config).await
}

/// Inputs the model computed so far (batched items over all forward passes).
async fn inferences(s: &TestServer, model: &str) -> u64 {
    let stats = s.get("/v1/stats").await.json();
    stats["batching"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["model"] == model)
        .map(|b| b["inferences"].as_u64().unwrap())
        .unwrap_or(0)
}

async fn cache_report(s: &TestServer) -> Value {
    let r = s.get("/v1/cache").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// One model's counters in `GET /v1/cache`.
async fn model_counters(s: &TestServer, model: &str) -> Value {
    cache_report(s).await["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == model)
        .cloned()
        .unwrap_or_else(|| json!({}))
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

async fn ok(s: &TestServer, path: &str, body: Value) -> Value {
    let r = s.post_json(path, body).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn l1_hits_are_identical_and_skip_the_model() {
    let s = start(CacheConfig::default()).await;
    let first = s
        .post_json("/v1/embed", json!({"inputs": ["alpha text", "beta text"]}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(inferences(&s, "emb").await, 2);
    let again = s
        .post_json("/v1/embed", json!({"inputs": ["alpha text", "beta text"]}))
        .await;
    assert_eq!(again.body, first.body, "a hit returns the identical body");
    assert_eq!(
        inferences(&s, "emb").await,
        2,
        "a hit does not run the model"
    );

    // A list mixing hits and a miss: only the miss goes to the batcher, results in input order.
    let mixed = ok(
        &s,
        "/v1/embed",
        json!({"inputs": ["beta text", "gamma text", "alpha text"]}),
    )
    .await;
    assert_eq!(inferences(&s, "emb").await, 3);
    let f = first.json();
    assert_eq!(mixed["embeddings"][0], f["embeddings"][1]);
    assert_eq!(mixed["embeddings"][2], f["embeddings"][0]);
    let gamma_alone = ok(
        &s,
        "/v1/embed",
        json!({"inputs": "gamma text", "cache": false}),
    )
    .await;
    assert_eq!(mixed["embeddings"][1], gamma_alone["embeddings"][0]);

    // Output-affecting parameters are part of the key: unnormalized is another entry.
    let raw = ok(
        &s,
        "/v1/embed",
        json!({"inputs": "alpha text", "normalize": false}),
    )
    .await;
    assert_ne!(raw["embeddings"][0], f["embeddings"][0]);

    let c = model_counters(&s, "emb").await;
    assert_eq!(c["l1_hits"], 4, "{c}");
    assert_eq!(c["computed"], 4, "{c}");
    assert_eq!(c["bypassed"], 1, "{c}");

    // Classification: post-processing (top_k, raw_scores) applies to the cached model output,
    // so another top_k is a hit with the right answer.
    let all = ok(&s, "/v1/classify", json!({"inputs": "a fine day"})).await;
    let before = inferences(&s, "cls").await;
    let top1 = ok(
        &s,
        "/v1/classify",
        json!({"inputs": "a fine day", "top_k": 1}),
    )
    .await;
    assert_eq!(inferences(&s, "cls").await, before);
    assert_eq!(top1["results"][0][0], all["results"][0][0]);
    assert_eq!(top1["results"][0].as_array().unwrap().len(), 1);

    // Entities: the cached token predictions and offsets aggregate to the identical spans.
    let text = "John Smith lives in Berlin";
    let spans = ok(&s, "/v1/entities", json!({"inputs": text})).await;
    let n = inferences(&s, "ner").await;
    assert_eq!(ok(&s, "/v1/entities", json!({"inputs": text})).await, spans);
    let tokens = ok(
        &s,
        "/v1/entities",
        json!({"inputs": text, "aggregation": "none"}),
    )
    .await;
    assert_eq!(inferences(&s, "ner").await, n);
    let fresh = ok(
        &s,
        "/v1/entities",
        json!({"inputs": text, "aggregation": "none", "cache": false}),
    )
    .await;
    assert_eq!(tokens, fresh);

    // OpenAI embeddings share the entry of /v1/embed with normalize (same model operation),
    // and usage still counts the cached input's tokens.
    let e = ok(&s, "/v1/embeddings", json!({"input": "alpha text"})).await;
    assert_eq!(e["data"][0]["embedding"], f["embeddings"][0]);
    assert!(e["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        inferences(&s, "emb").await,
        5,
        "only the bypass and normalize=false ran"
    );

    let report = cache_report(&s).await;
    assert_eq!(report["enabled"], true);
    assert!(report["l1"]["entries"].as_u64().unwrap() >= 5, "{report}");
    assert!(report["l1"]["bytes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["l2"].is_null());
    let stats = s.get("/v1/stats").await.json();
    assert!(stats["cache"]["models"].as_array().unwrap().len() >= 3);
    let metrics = s.get("/metrics").await.body;
    assert!(metrics.contains("nlpd_cache_requests_total"), "{metrics}");
    assert!(metrics.contains("nlpd_cache_bytes"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_false_bypasses_both_reading_and_filling() {
    let s = start(CacheConfig::default()).await;
    for _ in 0..3 {
        ok(
            &s,
            "/v1/embed",
            json!({"inputs": "bypass me", "cache": false}),
        )
        .await;
    }
    assert_eq!(inferences(&s, "emb").await, 3);
    // Nothing was filled: the first cached request is a miss.
    ok(&s, "/v1/embed", json!({"inputs": "bypass me"})).await;
    assert_eq!(inferences(&s, "emb").await, 4);
    let c = model_counters(&s, "emb").await;
    assert_eq!(
        (c["l1_hits"].as_u64(), c["bypassed"].as_u64()),
        (Some(0), Some(3)),
        "{c}"
    );
    // Now cached, and still bypassed on request.
    ok(
        &s,
        "/v1/embed",
        json!({"inputs": "bypass me", "cache": false}),
    )
    .await;
    assert_eq!(inferences(&s, "emb").await, 5);
    // The flag is validated like any field.
    s.post_json("/v1/embed", json!({"inputs": "x", "cache": "no"}))
        .await
        .assert_error(400, Some("cache"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_are_not_cached() {
    let s = start(CacheConfig::default()).await;
    let long = "word ".repeat(100);
    for _ in 0..2 {
        s.post_json(
            "/v1/embed",
            json!({"inputs": ["fine input", long], "truncate": false}),
        )
        .await
        .assert_error(422, Some("inputs[1]"));
    }
    s.post_json("/v1/embed", json!({"inputs": ["fine input", " "]}))
        .await
        .assert_error(422, Some("inputs[1]"));
    assert_eq!(inferences(&s, "emb").await, 0);
    let report = cache_report(&s).await;
    assert_eq!(report["l1"]["entries"], 0, "{report}");
    assert_eq!(report["in_flight"], 0, "failed leaders end their flights");
    // The input that failed with its neighbour is computed when asked alone: nothing was stored.
    ok(
        &s,
        "/v1/embed",
        json!({"inputs": "fine input", "truncate": false}),
    )
    .await;
    assert_eq!(inferences(&s, "emb").await, 1);
    let c = model_counters(&s, "emb").await;
    assert_eq!(c["l1_hits"], 0, "{c}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_expire_after_the_ttl() {
    let s = start(CacheConfig {
        ttl: Duration::from_millis(300),
        ..CacheConfig::default()
    })
    .await;
    let a = ok(&s, "/v1/embed", json!({"inputs": "short lived"})).await;
    // Waits past the TTL (asserts the expiry, not any timing).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let b = ok(&s, "/v1/embed", json!({"inputs": "short lived"})).await;
    assert_eq!(a, b);
    assert_eq!(
        inferences(&s, "emb").await,
        2,
        "an expired entry is computed again"
    );
    let c = model_counters(&s, "emb").await;
    assert_eq!(c["l1_hits"], 0, "{c}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn byte_capacity_evicts() {
    // A tiny-model embedding (32 floats) weighs about 300 bytes: room for about three.
    let capacity = 1000;
    let s = start(CacheConfig {
        l1_bytes: capacity,
        policy: Policy::Lru,
        ..CacheConfig::default()
    })
    .await;
    for i in 0..10 {
        ok(
            &s,
            "/v1/embed",
            json!({"inputs": format!("text number {i}")}),
        )
        .await;
    }
    let report = cache_report(&s).await;
    let l1 = &report["l1"];
    assert_eq!(l1["policy"], "lru");
    assert!(l1["bytes"].as_u64().unwrap() <= capacity, "{report}");
    assert!(l1["entries"].as_u64().unwrap() < 10, "{report}");
    assert!(l1["evictions_size"].as_u64().unwrap() >= 6, "{report}");
    // The most recent input is still there; the first was evicted and is computed again.
    let before = inferences(&s, "emb").await;
    ok(&s, "/v1/embed", json!({"inputs": "text number 9"})).await;
    assert_eq!(inferences(&s, "emb").await, before);
    ok(&s, "/v1/embed", json!({"inputs": "text number 0"})).await;
    assert_eq!(inferences(&s, "emb").await, before + 1);
    assert!(s
        .get("/metrics")
        .await
        .body
        .contains("nlpd_cache_evictions_total"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_concurrent_misses_are_computed_once() {
    let s = start(CacheConfig::default()).await;
    // Load the model first so the requests meet while the first computes, not while it loads.
    ok(&s, "/v1/embed", json!({"inputs": "warm", "cache": false})).await;
    let before = inferences(&s, "emb").await;
    let body = json!({"inputs": ["the same sentence", "the same sentence"]}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (addr, body) = (s.addr, body.clone());
        tasks.push(tokio::spawn(async move {
            request(addr, "POST", "/v1/embed", Some(&body), &[]).await
        }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        bodies.push(r.body);
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(
        inferences(&s, "emb").await,
        before + 1,
        "32 identical inputs in 16 concurrent requests: one computation"
    );
    let c = model_counters(&s, "emb").await;
    assert_eq!(c["computed"], 1, "{c}");
    // Every input was an L1 hit, or waited for the one computation, or was in its request.
    assert_eq!(
        c["l1_hits"].as_u64().unwrap() + c["coalesced"].as_u64().unwrap() + 2,
        32,
        "{c}"
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

async fn redis_ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut c).await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Some(_))
    )
}

/// The machine's shared Redis (127.0.0.1:6379, or NLPD_TEST_REDIS_URL).
async fn shared_redis() -> Option<String> {
    let url = std::env::var("NLPD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    if redis_ping(&url).await {
        Some(url)
    } else {
        missing(&format!("no Redis reachable at {url}"));
        None
    }
}

fn l2(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig {
        prefix: prefix.to_string(),
        // Generous: the machine is shared and tests run in parallel; no test asserts timing.
        timeout: Duration::from_millis(500),
        ..RedisConfig::new(url)
    }
}

/// Polls `GET /v1/cache` until `done` holds (at most 20 s), returning the report.
async fn wait_for(s: &TestServer, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    common::wait_until(s, "/v1/cache", |v| v, what, 20, done).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn l2_is_shared_by_two_servers() {
    let Some(url) = shared_redis().await else {
        return;
    };
    let prefix = format!("{}:", unique("nlpd-test-l2"));
    let cfg = CacheConfig {
        redis: Some(l2(&url, &prefix)),
        ..CacheConfig::default()
    };
    let a = start(cfg.clone()).await;
    let b = start(cfg).await;
    let first = a
        .post_json("/v1/embed", json!({"inputs": ["shared one", "shared two"]}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    wait_for(&a, "the background L2 write", |r| r["l2"]["writes"] == 2).await;
    // The L2 memory gauge reports the Redis server's used_memory (refreshed every 5 s).
    let mut l2_bytes = 0f64;
    for _ in 0..40 {
        let metrics = a.get("/metrics").await.body;
        l2_bytes = metrics
            .lines()
            .find_map(|l| l.strip_prefix("nlpd_cache_bytes{level=\"l2\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        if l2_bytes > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        l2_bytes > 0.0,
        "nlpd_cache_bytes{{level=\"l2\"}} never appeared"
    );

    let second = b
        .post_json("/v1/embed", json!({"inputs": ["shared one", "shared two"]}))
        .await;
    assert_eq!(
        second.body, first.body,
        "L2 hits return the identical result"
    );
    assert_eq!(
        inferences(&b, "emb").await,
        0,
        "server B never ran the model"
    );
    let c = model_counters(&b, "emb").await;
    assert_eq!(
        (c["l2_hits"].as_u64(), c["computed"].as_u64()),
        (Some(2), Some(0)),
        "{c}"
    );
    // L2 hits fill B's L1.
    b.post_json("/v1/embed", json!({"inputs": "shared one"}))
        .await;
    assert_eq!(model_counters(&b, "emb").await["l1_hits"], 1);

    // A value that does not decode is a miss (and counted), never a failed request.
    let handle = b.registry.encoder("emb").await.unwrap();
    let op = nlpd_engine::EncoderOp::Embed {
        normalize: true,
        dimensions: None,
    };
    let k = encoder_key("emb", &handle.revision, &op, true, "poisoned", None);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg(format!("{prefix}{}", k.hex()))
        .arg("not a cached value")
        .arg("PX")
        .arg(60_000)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    drop(handle);
    let r = ok(&b, "/v1/embed", json!({"inputs": "poisoned"})).await;
    assert_eq!(r["embeddings"][0].as_array().unwrap().len(), 32);
    let report = cache_report(&b).await;
    assert!(report["l2"]["errors"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["l2"]["breaker"], "closed");

    // Clearing deletes this deployment's keys only (its prefix).
    let cleared = a.post("/v1/cache/clear", "").await.json();
    assert!(cleared["l2_keys"].as_u64().unwrap() >= 2, "{cleared}");
    assert!(cleared["l1_entries"].as_u64().unwrap() >= 2, "{cleared}");
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    a.post("/v1/cache/clear?level=bogus", "")
        .await
        .assert_error(400, Some("level"));
    a.stop().await;
    b.stop().await;
}

/// A redis-server of this test's own on a free port, without persistence.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(OwnRedis { port, child })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn ready(&self) -> bool {
        for _ in 0..100 {
            if redis_ping(&self.url()).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_never_fails_a_request_and_the_breaker_recovers() {
    let port = free_port();
    let Some(mut redis) = OwnRedis::start_on(port) else {
        missing("the redis-server binary");
        return;
    };
    if !redis.ready().await {
        missing(&format!("redis-server did not start on port {port}"));
        return;
    }
    let s = start(CacheConfig {
        redis: Some(RedisConfig {
            breaker_failures: 2,
            breaker_cooldown: Duration::from_secs(1),
            ..l2(&redis.url(), "nlpd-test-breaker:")
        }),
        ..CacheConfig::default()
    })
    .await;

    // L2 works: computed, written in the background, found again after L1 is cleared.
    ok(&s, "/v1/embed", json!({"inputs": "before the outage"})).await;
    wait_for(&s, "the first L2 write", |r| r["l2"]["writes"] == 1).await;
    s.post("/v1/cache/clear?level=l1", "").await;
    ok(&s, "/v1/embed", json!({"inputs": "before the outage"})).await;
    assert_eq!(model_counters(&s, "emb").await["l2_hits"], 1);

    // Redis dies: every request still succeeds, the breaker opens.
    redis.kill();
    for i in 0..10 {
        ok(
            &s,
            "/v1/embed",
            json!({"inputs": format!("during the outage {i}")}),
        )
        .await;
    }
    let down = cache_report(&s).await;
    // Open, or half-open while a probe (a background write, say) is failing right now.
    assert_ne!(down["l2"]["breaker"], "closed", "{down}");
    assert!(down["l2"]["errors"].as_u64().unwrap() >= 2, "{down}");
    assert!(down["l2"]["breaker_opened_total"].as_u64().unwrap() >= 1);
    assert!(
        down["l2"]["skipped"].as_u64().unwrap() >= 1,
        "an open breaker skips Redis: {down}"
    );
    assert!(s
        .get("/metrics")
        .await
        .body
        .contains("nlpd_redis_breaker_state"));
    // L1 still answers during the outage.
    let before = inferences(&s, "emb").await;
    ok(&s, "/v1/embed", json!({"inputs": "during the outage 3"})).await;
    assert_eq!(inferences(&s, "emb").await, before);

    // Redis is back on the same port: a probe after the cool-down closes the breaker.
    let redis = OwnRedis::start_on(port).expect("restart redis-server");
    assert!(redis.ready().await, "redis-server restarted on {port}");
    let mut i = 0;
    let up = loop {
        ok(
            &s,
            "/v1/embed",
            json!({"inputs": format!("after the outage {i}")}),
        )
        .await;
        let r = cache_report(&s).await;
        if r["l2"]["breaker"] == "closed" {
            break r;
        }
        assert!(i < 200, "the breaker never closed: {r}");
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // And L2 is used again: a new result is written and read back after L1 is cleared.
    let writes = up["l2"]["writes"].as_u64().unwrap();
    ok(&s, "/v1/embed", json!({"inputs": "after the recovery"})).await;
    wait_for(&s, "an L2 write after recovery", |r| {
        r["l2"]["writes"].as_u64().unwrap() > writes
    })
    .await;
    s.post("/v1/cache/clear?level=l1", "").await;
    let hits = model_counters(&s, "emb").await["l2_hits"].as_u64().unwrap();
    let before = inferences(&s, "emb").await;
    ok(&s, "/v1/embed", json!({"inputs": "after the recovery"})).await;
    assert_eq!(inferences(&s, "emb").await, before, "served from L2");
    assert_eq!(
        model_counters(&s, "emb").await["l2_hits"].as_u64().unwrap(),
        hits + 1
    );
    s.stop().await;
    drop(redis);
}

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deterministic_generations_are_cached_and_sampled_ones_are_not() {
    let Some(smol) = pack("smollm2-135m-instruct") else {
        return;
    };
    let config = ServerConfig {
        cache: Some(CacheConfig::default()),
        ..ServerConfig::default()
    };
    let s = TestServer::start(
        vec![spec("smol", &smol, None)],
        BatchConfig::default(),
        None,
        config,
    )
    .await;
    let greedy = json!({"code": "fn add(a: i32, b: i32) -> i32 { a + b }", "max_tokens": 6});
    let a = ok(&s, "/v1/explain", greedy.clone()).await;
    let b = ok(&s, "/v1/explain", greedy.clone()).await;
    assert_eq!(a, b);
    let c = model_counters(&s, "smol").await;
    assert_eq!(
        (c["l1_hits"].as_u64(), c["computed"].as_u64()),
        (Some(1), Some(1)),
        "{c}"
    );

    // Chat with temperature 0 is cached; the usage comes back with the hit.
    let chat = json!({"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4, "temperature": 0});
    let x = ok(&s, "/v1/chat/completions", chat.clone()).await;
    let y = ok(&s, "/v1/chat/completions", chat).await;
    assert_eq!(x["choices"], y["choices"]);
    assert_eq!(x["usage"], y["usage"]);
    // Sampling without a seed is not cached; with a seed it is; streams never are.
    let sampled = json!({"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4, "temperature": 0.8});
    ok(&s, "/v1/chat/completions", sampled.clone()).await;
    ok(&s, "/v1/chat/completions", sampled).await;
    let seeded = json!({"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4, "temperature": 0.8, "seed": 7});
    ok(&s, "/v1/chat/completions", seeded.clone()).await;
    ok(&s, "/v1/chat/completions", seeded).await;
    let mut off = greedy.clone();
    off["cache"] = json!(false);
    ok(&s, "/v1/explain", off).await;
    let c = model_counters(&s, "smol").await;
    assert_eq!(c["l1_hits"], 3, "{c}");
    assert_eq!(c["computed"], 3, "{c}");
    assert_eq!(c["bypassed"], 1, "{c}");
    s.stop().await;
}
