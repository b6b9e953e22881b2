//! The prediction store end to end over HTTP with the real MiniLM model: log rows and their
//! counts in SQLite and in PostgreSQL (a fresh database per test on the machine's server),
//! input text only with `log_inputs`, an unreachable PostgreSQL that costs no request, and
//! cache warming after a restart making the first repeat an L1 hit.
//!
//! Tests that need PostgreSQL (127.0.0.1:5432, user postgres, or NLPD_TEST_DATABASE_URL) fail
//! under CI (`CI=true`) when it is missing, and skip loudly otherwise.

mod common;

use common::db::*;
use common::*;
use nlpd_runtime::cache::{input_hash, CachedValue};
use nlpd_runtime::store::sqlite_url;
use nlpd_runtime::{BatchConfig, CacheConfig, StoreConfig};
use nlpd_server::ServerConfig;
use serde_json::{json, Value};
use sqlx::Row;
use std::time::Duration;

fn store_config(url: &str) -> StoreConfig {
    StoreConfig {
        flush_interval: Duration::from_millis(20),
        ..StoreConfig::new(url)
    }
}

async fn start(store: StoreConfig) -> Option<TestServer> {
    let minilm = pack("all-MiniLM-L6-v2")?;
    let config = ServerConfig {
        cache: Some(CacheConfig::default()),
        store: Some(store),
        ..ServerConfig::default()
    };
    Some(
        TestServer::start(
            vec![spec("minilm", &minilm, Some("embed"))],
            BatchConfig::default(),
            None,
            config,
        )
        .await,
    )
}

async fn embed(s: &TestServer, body: Value) -> Value {
    let r = s.post_json("/v1/embed", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Polls the store section of `/v1/stats` until `done` holds (at most 30 s).
async fn wait_store(s: &TestServer, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let store = |v: Value| v["store"].clone();
    common::wait_until(s, "/v1/stats", store, what, 30, done).await
}

/// One model's counters in `GET /v1/cache`.
async fn cache_counters(s: &TestServer, model: &str) -> Value {
    let r = s.get("/v1/cache").await.json();
    r["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == model)
        .cloned()
        .unwrap_or_else(|| json!({}))
}

// ---------------------------------------------------------------------------------------------
// Reading the log back, as an operator would (a separate connection).
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Logged {
    task: String,
    params: String,
    hit_count: i64,
    input_text: Option<String>,
    latency_ms: Option<f64>,
    result: Vec<u8>,
}

enum Reader {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const SELECT: &str = "SELECT task, params, hit_count, input_text, latency_ms, result \
     FROM predictions WHERE model = 'minilm' AND input_hash = ";

macro_rules! logged {
    ($rows:expr) => {
        $rows
            .iter()
            .map(|r| Logged {
                task: r.get(0),
                params: r.get(1),
                hit_count: r.get(2),
                input_text: r.get(3),
                latency_ms: r.get(4),
                result: r.get(5),
            })
            .collect()
    };
}

impl Reader {
    async fn open(url: &str) -> Reader {
        if url.starts_with("sqlite:") {
            Reader::Sqlite(sqlx::SqlitePool::connect(url).await.expect("open SQLite"))
        } else {
            Reader::Postgres(sqlx::PgPool::connect(url).await.expect("open PostgreSQL"))
        }
    }

    /// Every row of one input, most served first.
    async fn rows(&self, text: &str) -> Vec<Logged> {
        let hash = input_hash(text, None).to_vec();
        match self {
            Reader::Sqlite(p) => {
                let sql = format!("{SELECT} ?1 ORDER BY hit_count DESC");
                let rows = sqlx::query(&sql).bind(hash).fetch_all(p).await.unwrap();
                logged!(rows)
            }
            Reader::Postgres(p) => {
                let sql = format!("{SELECT} $1 ORDER BY hit_count DESC");
                let rows = sqlx::query(&sql).bind(hash).fetch_all(p).await.unwrap();
                logged!(rows)
            }
        }
    }

    async fn close(self) {
        match self {
            Reader::Sqlite(p) => p.close().await,
            Reader::Postgres(p) => p.close().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Counts and privacy, on both backends.
// ---------------------------------------------------------------------------------------------

/// The same input three times is one row with count 3 (one computed, two L1 hits); other
/// parameters are another row; without `log_inputs` the text is NULL, with it stored.
async fn counts_and_privacy(url: &str, backend: &str) {
    let Some(s) = start(store_config(url)).await else {
        return;
    };
    let repeat = unique("the same sentence, three times");
    let first = embed(&s, json!({"inputs": repeat})).await;
    for _ in 0..2 {
        assert_eq!(embed(&s, json!({"inputs": repeat})).await, first);
    }
    embed(&s, json!({"inputs": repeat, "normalize": false})).await;
    let c = cache_counters(&s, "minilm").await;
    assert_eq!(
        (c["l1_hits"].as_u64(), c["computed"].as_u64()),
        (Some(2), Some(2)),
        "{c}"
    );
    let st = wait_store(&s, "4 rows written", |st| st["rows_written"] == 4).await;
    assert_eq!(st["backend"], backend, "{st}");
    assert_eq!(st["migrated"], true, "{st}");
    assert_eq!(st["rows_dropped"], 0, "{st}");
    assert_eq!(st["log_inputs"], false, "{st}");
    let metrics = s.get("/metrics").await.body;
    assert!(
        metrics.contains("nlpd_store_rows_written_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nlpd_store_flush_duration_seconds"),
        "{metrics}"
    );
    s.stop().await;

    let db = Reader::open(url).await;
    let rows = db.rows(&repeat).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (normalized, raw) = (&rows[0], &rows[1]);
    assert_eq!((normalized.hit_count, raw.hit_count), (3, 1));
    assert_eq!(normalized.task, "embed");
    assert!(
        normalized.params.contains(r#""normalize":true"#),
        "{}",
        normalized.params
    );
    assert!(
        raw.params.contains(r#""normalize":false"#),
        "{}",
        raw.params
    );
    assert!(
        rows.iter().all(|r| r.input_text.is_none()),
        "text kept without log_inputs"
    );
    assert!(
        normalized.latency_ms.is_some_and(|ms| ms > 0.0),
        "{normalized:?}"
    );
    // The result is the cache's compact value: the embedding the client got.
    let CachedValue::Encoder(r) = CachedValue::decode(&normalized.result).unwrap() else {
        panic!("not an encoder result");
    };
    let got = r.output.into_embedding().unwrap();
    let sent: Vec<f32> = serde_json::from_value(first["embeddings"][0].clone()).unwrap();
    assert_eq!(got, sent);

    // A restart with log_inputs on: the text is stored, the count continues.
    let Some(s) = start(StoreConfig {
        log_inputs: true,
        ..store_config(url)
    })
    .await
    else {
        return;
    };
    let kept = unique("a sentence whose text is kept");
    embed(&s, json!({"inputs": [kept.clone(), repeat.clone()]})).await;
    s.stop().await;
    let rows = db.rows(&kept).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].input_text.as_deref(), Some(kept.as_str()));
    assert_eq!(db.rows(&repeat).await[0].hit_count, 4);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_log_counts_repeats_and_keeps_text_only_when_asked() {
    let dir = sqlite_dir("counts");
    let url = sqlite_url(&dir.join("nlpd.db"));
    counts_and_privacy(&url, "sqlite").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_log_counts_repeats_and_keeps_text_only_when_asked() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    counts_and_privacy(&db.url, "postgres").await;
}

// ---------------------------------------------------------------------------------------------
// An outage costs no request.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_postgres_fails_no_request_and_counts_dropped_rows() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = StoreConfig {
        timeout: Duration::from_millis(500),
        ..store_config(&format!("postgres://postgres:pw@127.0.0.1:{port}/nlpd"))
    };
    let Some(s) = start(cfg).await else {
        return;
    };
    for i in 0..5 {
        embed(&s, json!({"inputs": format!("outage sentence {i}")})).await;
    }
    let st = wait_store(&s, "5 rows dropped", |st| st["rows_dropped"] == 5).await;
    assert_eq!(st["dropped"]["db_error"], 5, "{st}");
    assert_eq!(st["rows_written"], 0, "{st}");
    assert_eq!(st["migrated"], false, "{st}");
    assert_eq!(
        st["url"],
        format!("postgres://postgres:***@127.0.0.1:{port}/nlpd")
    );
    assert!(st["last_error"].is_string(), "{st}");
    let metrics = s.get("/metrics").await.body;
    assert!(
        metrics.contains(r#"nlpd_store_dropped_rows_total{reason="db_error"}"#),
        "{metrics}"
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Cache warming after a restart.
// ---------------------------------------------------------------------------------------------

async fn warm_after_restart(url: &str) {
    let logging = StoreConfig {
        log_inputs: true,
        ..store_config(url)
    };
    let Some(s) = start(logging.clone()).await else {
        return;
    };
    let (top, second, rare) = (
        unique("the most asked sentence"),
        unique("the second most asked"),
        unique("asked once"),
    );
    for (text, times) in [(&top, 3), (&second, 2), (&rare, 1)] {
        for _ in 0..times {
            embed(&s, json!({"inputs": text})).await;
        }
    }
    // A pair of parameters warming must reproduce exactly: dimensions and truncate.
    embed(
        &s,
        json!({"inputs": second, "dimensions": 64, "truncate": false}),
    )
    .await;
    embed(
        &s,
        json!({"inputs": second, "dimensions": 64, "truncate": false}),
    )
    .await;
    s.stop().await;

    let Some(s) = start(StoreConfig {
        warm_cache: 3,
        ..logging
    })
    .await
    else {
        return;
    };
    let st = wait_store(&s, "warming done", |st| st["warm"]["state"] == "done").await;
    assert_eq!(st["warm"]["planned"], 3, "{st}");
    assert_eq!(st["warm"]["warmed"], 3, "{st}");
    assert_eq!(st["warm"]["failed"], 0, "{st}");
    let c = cache_counters(&s, "minilm").await;
    assert_eq!(c["warmed"], 3, "{c}");
    assert_eq!(c["l1_hits"], 0, "{c}");

    // The first repeat of each warmed input is an L1 hit: nothing computed.
    embed(&s, json!({"inputs": top})).await;
    embed(
        &s,
        json!({"inputs": second, "dimensions": 64, "truncate": false}),
    )
    .await;
    embed(&s, json!({"inputs": second})).await;
    let c = cache_counters(&s, "minilm").await;
    assert_eq!(
        (c["l1_hits"].as_u64(), c["computed"].as_u64()),
        (Some(3), Some(0)),
        "{c}"
    );
    // Beyond the N most served: computed as usual.
    embed(&s, json!({"inputs": rare})).await;
    assert_eq!(cache_counters(&s, "minilm").await["computed"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_warm_cache_after_restart_makes_the_first_repeat_an_l1_hit() {
    let dir = sqlite_dir("warm");
    warm_after_restart(&sqlite_url(&dir.join("nlpd.db"))).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_warm_cache_after_restart_makes_the_first_repeat_an_l1_hit() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    warm_after_restart(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_is_off_by_default_in_the_library() {
    let Some(minilm) = pack("all-MiniLM-L6-v2") else {
        return;
    };
    let s = TestServer::start(
        vec![spec("minilm", &minilm, Some("embed"))],
        BatchConfig::default(),
        None,
        ServerConfig::default(),
    )
    .await;
    embed(&s, json!({"inputs": "no store here"})).await;
    assert!(s.get("/v1/stats").await.json()["store"].is_null());
    s.stop().await;
}
