//! The store against real SQLite files (PostgreSQL is covered by the server's integration tests,
//! `crates/server/tests/store.rs`), and an unreachable PostgreSQL.

use super::*;
use crate::cache::{encoder_key, CachedValue, EncoderResult};
use nlpd_engine::{EncoderOp, OpOutput};
use sqlx::Row;

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("nlpd-store-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        flush_interval: Duration::from_millis(20),
        // A data dir that does not exist yet is created.
        ..StoreConfig::sqlite_in(&dir.join("data"))
    }
}

fn value(x: f32) -> Arc<CachedValue> {
    Arc::new(CachedValue::Encoder(EncoderResult {
        tokens: 3,
        output: OpOutput::Embedding(vec![x, 1.0]),
        encoding: None,
    }))
}

const EMBED: EncoderOp = EncoderOp::Embed {
    normalize: true,
    dimensions: None,
};

fn one(text: &str) -> Vec<(String, Option<String>)> {
    vec![(text.to_string(), None)]
}

/// Reads the log back with a separate connection, as an operator would.
async fn rows(dir: &Path) -> Vec<(String, String, i64, Option<String>, Option<f64>, Vec<u8>)> {
    let pool = sqlx::SqlitePool::connect(&sqlite_url(&dir.join("data/nlpd.db")))
        .await
        .unwrap();
    let out = sqlx::query(
        "SELECT task, params, hit_count, input_text, latency_ms, result FROM predictions \
         ORDER BY hit_count DESC, task, params",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get::<Vec<u8>, _>(5),
        )
    })
    .collect();
    pool.close().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_upsert_one_counted_row_and_inputs_stay_private() {
    let dir = temp_dir("counts");
    let store = Store::open(config(&dir)).await.unwrap();
    let log = store.log().unwrap();
    // The same input three times (one computed, two hits), in separate flushes and within one.
    log.encoder(
        "m",
        "r1",
        "embed",
        &EMBED,
        true,
        &one("same"),
        &[value(1.0)],
        &[Some(7.5)],
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let twice = vec![("same".to_string(), None), ("same".to_string(), None)];
    log.encoder(
        "m",
        "r1",
        "embed",
        &EMBED,
        true,
        &twice,
        &[value(1.0), value(1.0)],
        &[None, None],
    );
    // Other parameters are another row.
    let raw = EncoderOp::Embed {
        normalize: false,
        dimensions: None,
    };
    log.encoder(
        "m",
        "r1",
        "embed",
        &raw,
        true,
        &one("same"),
        &[value(2.0)],
        &[Some(1.0)],
    );
    store.shutdown(Duration::from_secs(10)).await;
    let s = store.stats();
    assert_eq!(s.rows_written, 4);
    assert_eq!(s.rows_dropped, 0);
    assert!(s.migrated && s.flushes >= 2, "{s:?}");

    let r = rows(&dir).await;
    assert_eq!(r.len(), 2, "{r:?}");
    let (task, params, count, text, latency, result) = &r[0];
    assert_eq!((task.as_str(), *count), ("embed", 3));
    assert_eq!(params, r#"{"op":"embed","normalize":true,"truncate":true}"#);
    assert_eq!(*text, None, "no text without --log-inputs");
    assert_eq!(*latency, Some(7.5), "hits keep the computed latency");
    assert_eq!(CachedValue::decode(result).unwrap(), *value(1.0));
    assert_eq!(r[1].2, 1);
    assert!(r[1].1.contains(r#""normalize":false"#));

    // Reopening migrates nothing new and keeps counting.
    let store = Store::open(config(&dir)).await.unwrap();
    let log = store.log().unwrap();
    log.encoder(
        "m",
        "r1",
        "embed",
        &EMBED,
        true,
        &one("same"),
        &[value(1.0)],
        &[None],
    );
    store.shutdown(Duration::from_secs(10)).await;
    assert_eq!(rows(&dir).await[0].2, 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_recomputes_the_original_cache_keys() {
    let dir = temp_dir("keys");
    let cfg = StoreConfig {
        log_inputs: true,
        ..config(&dir)
    };
    let store = Store::open(cfg.clone()).await.unwrap();
    let log = store.log().unwrap();
    let cases: Vec<(EncoderOp, bool, &str, Option<&str>)> = vec![
        (EMBED, true, "plain text", None),
        (
            EncoderOp::Embed {
                normalize: false,
                dimensions: Some(64),
            },
            false,
            "dims",
            None,
        ),
        (EncoderOp::Classify, true, "a premise", Some("a hypothesis")),
        (EncoderOp::Tokens, true, "John lives in Berlin", None),
    ];
    let mut original = Vec::new();
    for (op, truncate, text, pair) in &cases {
        let inputs = vec![(text.to_string(), pair.map(str::to_string))];
        log.encoder(
            "model-a",
            "rev7",
            "task",
            op,
            *truncate,
            &inputs,
            &[value(0.0)],
            &[None],
        );
        original.push(encoder_key("model-a", "rev7", op, *truncate, text, *pair));
    }
    store.shutdown(Duration::from_secs(10)).await;

    let store = Store::open(cfg).await.unwrap();
    let top = store.top_inputs(10).await.unwrap();
    assert_eq!(top.len(), cases.len());
    let mut recomputed: Vec<_> = top
        .iter()
        .map(|row| {
            let (op, truncate) = OpParams::from_json(&row.params)
                .and_then(|p| p.to_op())
                .expect("logged parameters parse");
            warm::key_of(&row.model, "rev7", &op, truncate, row)
        })
        .collect();
    recomputed.sort();
    original.sort();
    assert_eq!(recomputed, original);
    store.shutdown(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_inputs_are_the_most_served_per_model_with_text() {
    let dir = temp_dir("top");
    let store = Store::open(StoreConfig {
        log_inputs: true,
        ..config(&dir)
    })
    .await
    .unwrap();
    let log = store.log().unwrap();
    let serve = |model: &str, task: &'static str, text: &str, times: usize| {
        for _ in 0..times {
            log.encoder(
                model,
                "r",
                task,
                &EMBED,
                true,
                &one(text),
                &[value(0.0)],
                &[None],
            );
        }
    };
    serve("a", "embed", "x", 2);
    // The same input and operation through another task shares the cache entry: summed.
    serve("a", "rerank", "x", 2);
    serve("a", "embed", "y", 1);
    serve("a", "embed", "z", 3);
    serve("b", "embed", "w", 1);
    store.shutdown(Duration::from_secs(10)).await;
    // A row without text (logged with --log-inputs off) is never warmed.
    let private = Store::open(config(&dir)).await.unwrap();
    for _ in 0..9 {
        private.log().unwrap().encoder(
            "a",
            "r",
            "embed",
            &EMBED,
            true,
            &one("secret"),
            &[value(0.0)],
            &[None],
        );
    }
    private.shutdown(Duration::from_secs(10)).await;

    let store = Store::open(config(&dir)).await.unwrap();
    let top = store.top_inputs(2).await.unwrap();
    let got: Vec<_> = top
        .iter()
        .map(|t| (t.model.as_str(), t.text.as_str(), t.hits))
        .collect();
    assert_eq!(got, vec![("a", "x", 4), ("a", "z", 3), ("b", "w", 1)]);
    store.shutdown(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_whole_requests_and_counts_them() {
    let dir = temp_dir("full");
    let store = Store::open(StoreConfig {
        queue_rows: 2,
        flush_rows: 1000,
        flush_interval: Duration::from_secs(3600),
        ..config(&dir)
    })
    .await
    .unwrap();
    let log = store.log().unwrap();
    let three: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|t| (t.to_string(), None))
        .collect();
    log.encoder(
        "m",
        "r",
        "embed",
        &EMBED,
        true,
        &three,
        &[value(0.0), value(0.0), value(0.0)],
        &[],
    );
    assert_eq!(store.stats().dropped.queue_full, 3);
    log.encoder(
        "m",
        "r",
        "embed",
        &EMBED,
        true,
        &one("d"),
        &[value(0.0)],
        &[],
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.queue_depth(), 1, "waiting in the writer's batch");
    assert_eq!(store.stats().rows_written, 0);
    // Shutdown writes what is queued without waiting for the hour.
    store.shutdown(Duration::from_secs(10)).await;
    let s = store.stats();
    assert_eq!((s.rows_written, s.rows_dropped), (1, 3));
    // After shutdown, rows are refused (and counted), never an error.
    log.encoder(
        "m",
        "r",
        "embed",
        &EMBED,
        true,
        &one("e"),
        &[value(0.0)],
        &[],
    );
    assert_eq!(store.stats().dropped.shutdown, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_drops_rows_and_blocks_nothing() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = Store::open(StoreConfig {
        timeout: Duration::from_millis(300),
        flush_interval: Duration::from_millis(10),
        ..StoreConfig::new(format!("postgres://nlpd:secret@127.0.0.1:{port}/nlpd"))
    })
    .await
    .expect("an unreachable PostgreSQL does not stop the server");
    let s = store.stats();
    assert!(!s.migrated);
    assert_eq!(s.url, format!("postgres://nlpd:***@127.0.0.1:{port}/nlpd"));
    assert!(s.last_error.is_some());
    let t0 = std::time::Instant::now();
    store.log().unwrap().encoder(
        "m",
        "r",
        "embed",
        &EMBED,
        true,
        &one("x"),
        &[value(0.0)],
        &[],
    );
    assert!(
        t0.elapsed() < Duration::from_millis(50),
        "logging never waits"
    );
    for _ in 0..100 {
        if store.stats().dropped.db_error > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.stats().dropped.db_error, 1);
    assert_eq!(store.stats().rows_written, 0);
    store.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn logging_off_opens_the_database_without_a_writer() {
    let dir = temp_dir("off");
    let store = Store::open(StoreConfig {
        log_predictions: false,
        ..config(&dir)
    })
    .await
    .unwrap();
    assert!(store.log().is_none());
    assert!(store.stats().migrated);
    assert_eq!(store.stats().queue_capacity, 0);
    store.shutdown(Duration::from_secs(1)).await;
    assert!(dir.join("data/nlpd.db").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn urls_are_recognised_and_redacted() {
    assert_eq!(
        Backend::of("sqlite://./data/nlpd.db").unwrap(),
        Backend::Sqlite
    );
    assert_eq!(Backend::of("postgres://u@h/db").unwrap(), Backend::Postgres);
    assert_eq!(
        Backend::of("postgresql://u@h/db").unwrap(),
        Backend::Postgres
    );
    let e = Backend::of("mysql://root:pw@h/db").unwrap_err().to_string();
    assert!(
        e.contains("mysql://root:***@h/db") && !e.contains("pw"),
        "{e}"
    );
    assert_eq!(
        redact_url("postgres://user:p%40ss@db.example:5432/nlpd?sslmode=disable"),
        "postgres://user:***@db.example:5432/nlpd?sslmode=disable"
    );
    assert_eq!(redact_url("postgres://user@h/db"), "postgres://user@h/db");
    assert_eq!(
        redact_url("sqlite://./data/nlpd.db"),
        "sqlite://./data/nlpd.db"
    );
    assert_eq!(
        StoreConfig::sqlite_in(Path::new("/var/lib/nlpd")).url,
        "sqlite:///var/lib/nlpd/nlpd.db"
    );
}
