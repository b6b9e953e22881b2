//! The verification pipeline end to end over HTTP with the pack's models (MiniLM embeds, the
//! SmolLM2 judge does NLI): evidence ingest into the store (SQLite and PostgreSQL), the index
//! rebuilt from the store after a restart, delete, verify with the right passage first, and
//! every bad input answered with a 4xx naming its field.

mod common;

use common::db::*;
use common::*;
use nlpd_runtime::store::sqlite_url;
use nlpd_runtime::{BatchConfig, CacheConfig, StoreConfig};
use nlpd_server::ServerConfig;
use serde_json::{json, Value};

fn evidence_docs() -> Vec<Value> {
    std::fs::read_to_string(repo().join("tests/data/verify_evidence.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn start(store: Option<StoreConfig>) -> Option<TestServer> {
    start_with(ServerConfig {
        store,
        ..generation_config()
    })
    .await
}

async fn start_with(config: ServerConfig) -> Option<TestServer> {
    let minilm = pack("all-MiniLM-L6-v2")?;
    let smol = pack("smollm2-135m-instruct")?;
    let config = ServerConfig {
        cache: Some(CacheConfig::default()),
        ..config
    };
    Some(
        TestServer::start(
            vec![
                spec("minilm", &minilm, Some("embed")),
                spec("smollm2", &smol, None),
            ],
            BatchConfig::default(),
            None,
            config,
        )
        .await,
    )
}

/// A server on an existing store, once its index is rebuilt: the server and `GET /v1/evidence`.
async fn restart(url: &str) -> Option<(TestServer, Value)> {
    let s = start(Some(StoreConfig::new(url))).await?;
    let stats = wait_until(
        &s,
        "/v1/evidence",
        |v| v,
        "the index ready",
        120,
        |v| v["state"] == "ready",
    )
    .await;
    Some((s, stats))
}

async fn ingest(s: &TestServer, docs: Value) -> Value {
    let r = s
        .post_json("/v1/evidence", json!({ "documents": docs }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

async fn verify(s: &TestServer, body: Value) -> Vec<Value> {
    let r = s.post_json("/v1/verify", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["results"].as_array().unwrap().clone()
}

/// The first retrieved passage of each result.
fn first_docs(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .map(|r| {
            r["evidence"][0]["document_id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Ingest, get, verify, restart (index rebuilt from the store), delete.
async fn evidence_round_trip(url: &str) {
    let Some(s) = start(Some(StoreConfig::new(url))).await else {
        return;
    };
    let docs = evidence_docs();
    let body = ingest(&s, json!(docs)).await;
    assert_eq!(body["documents"].as_array().unwrap().len(), docs.len());
    assert_eq!(body["documents"][0]["id"], "eiffel");
    assert_eq!(body["documents"][0]["replaced"], false);
    assert_eq!(body["corpus"]["documents"], docs.len());
    let passages = body["passages"].as_u64().unwrap();
    assert!(passages >= docs.len() as u64, "{body}");

    // Small passages: the Eiffel document splits at sentences, with offsets into the text.
    let text = docs[0]["text"].as_str().unwrap();
    let again = s
        .post_json(
            "/v1/evidence",
            json!({"documents": [docs[0]], "passage_tokens": 24}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["documents"][0]["replaced"], true);
    let got = s.get("/v1/evidence/eiffel").await;
    assert_eq!(got.status, 200, "{}", got.body);
    let got = got.json();
    assert_eq!(got["text"], text);
    assert_eq!(got["source"], "hand-written");
    let ps = got["passages"].as_array().unwrap();
    assert_eq!(ps.len(), 3, "{got}");
    let chars: Vec<char> = text.chars().collect();
    for p in ps {
        let (a, b) = (
            p["start_char"].as_u64().unwrap() as usize,
            p["end_char"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            chars[a..b].iter().collect::<String>(),
            p["text"].as_str().unwrap()
        );
        assert!(p["tokens"].as_u64().unwrap() <= 24);
    }
    assert!(ps[1]["text"]
        .as_str()
        .unwrap()
        .starts_with("It was designed by the engineering company"));

    let claims = [
        ("The Eiffel Tower was completed in 1889.", "eiffel"),
        (
            "Neil Armstrong was the first person to walk on the Moon.",
            "moon",
        ),
        ("Penguins can fly long distances.", "penguins"),
    ];
    let results = verify(
        &s,
        json!({"claims": claims.map(|c| c.0), "top_k": 3, "min_score": 0.2}),
    )
    .await;
    assert_eq!(first_docs(&results), claims.map(|c| c.1.to_string()));
    // The passage that says 1889 is retrieved (after the one naming the tower: "It was
    // designed..." does not say which tower, and the bi-encoder cannot resolve "It").
    assert!(results[0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["document_id"] == "eiffel" && e["text"].as_str().unwrap().contains("1889")));
    s.stop().await;

    // A new server on the same database rebuilds the index from it: no ingest needed.
    let Some((s, stats)) = restart(url).await else {
        return;
    };
    assert_eq!(stats["documents"], docs.len(), "{stats}");
    assert_eq!(stats["passages"], passages + 2, "{stats}");
    let results = verify(&s, json!({"claims": [claims[1].0], "top_k": 2})).await;
    assert_eq!(first_docs(&results), vec!["moon"]);

    // Deleted: gone from the store and from retrieval.
    let r = s.delete("/v1/evidence/moon").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["deleted"], true);
    s.get("/v1/evidence/moon")
        .await
        .assert_error(404, Some("id"));
    s.delete("/v1/evidence/moon")
        .await
        .assert_error(404, Some("id"));
    let results = verify(&s, json!({"claims": [claims[1].0], "top_k": 2})).await;
    assert!(results[0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["document_id"] != "moon"));

    // A long document: more passages than one embedding request and one INSERT statement take.
    let long: Vec<String> = (0..600)
        .map(|i| format!("Sentence number {i} is here."))
        .collect();
    let r = s
        .post_json(
            "/v1/evidence",
            json!({"documents": [{"id": "long", "text": long.join(" ")}], "passage_tokens": 8}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["passages"], 600);
    let got = s.get("/v1/evidence/long").await.json();
    assert_eq!(got["passages"].as_array().unwrap().len(), 600);
    assert_eq!(got["passages"][599]["text"], "Sentence number 599 is here.");
    assert_eq!(s.delete("/v1/evidence/long").await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_evidence_is_stored_indexed_rebuilt_and_deleted() {
    let dir = sqlite_dir("evidence");
    evidence_round_trip(&sqlite_url(&dir.join("nlpd.db"))).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_evidence_is_stored_indexed_rebuilt_and_deleted() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    evidence_round_trip(&db.url).await;
}

/// Clear cases: the judge's verdicts, the decisive passage, the documented JSON shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clear_claims_are_supported_or_refuted_by_the_right_passage() {
    let dir = sqlite_dir("verify");
    let Some(s) = start(Some(StoreConfig::new(sqlite_url(&dir.join("nlpd.db"))))).await else {
        return;
    };
    ingest(&s, json!(evidence_docs())).await;
    let cases = [
        (
            "Neil Armstrong was the first person to walk on the Moon.",
            "SUPPORTED",
            "moon",
        ),
        (
            "The Eiffel Tower is located in Berlin.",
            "REFUTED",
            "eiffel",
        ),
        (
            "Python was created by Guido van Rossum.",
            "SUPPORTED",
            "python",
        ),
        (
            "The central bank lowered interest rates.",
            "REFUTED",
            "bank",
        ),
    ];
    let r = s
        .post_json(
            "/v1/verify",
            json!({"claims": cases.map(|c| c.0), "nli_model": "smollm2"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["models"]["embedding"], "minilm");
    assert_eq!(body["models"]["nli"], "smollm2");
    for key in ["embed", "retrieve", "nli", "aggregate", "total"] {
        assert!(body["timings_ms"][key].as_f64().unwrap() >= 0.0, "{key}");
    }
    let results = body["results"].as_array().unwrap();
    for (r, (claim, verdict, doc)) in results.iter().zip(cases) {
        assert_eq!(r["claim"], claim);
        assert_eq!(r["verdict"], verdict, "{claim}: {r}");
        let ev = r["evidence"].as_array().unwrap();
        assert_eq!(ev[0]["document_id"], doc, "{claim}: {r}");
        assert_eq!(ev[0]["decisive"], true, "{claim}: {r}");
        let c = r["confidence"].as_f64().unwrap();
        assert!((1.0 / 3.0..=1.0).contains(&c), "{r}");
        for e in ev {
            let sum: f64 = ["entailment", "neutral", "contradiction"]
                .iter()
                .map(|l| e["nli"]["scores"][l].as_f64().unwrap())
                .sum();
            assert!((sum - 1.0).abs() < 1e-4, "{e}");
            assert!(e["similarity"].as_f64().unwrap() >= 0.25, "{e}");
        }
    }
    // A claim about nothing in the corpus retrieves nothing: not enough info, for sure.
    let none = verify(
        &s,
        json!({"claims": ["Quantum chromodynamics describes the strong interaction."], "min_score": 0.5}),
    )
    .await;
    assert_eq!(none[0]["verdict"], "NOT_ENOUGH_INFO");
    assert_eq!(none[0]["confidence"], 1.0);
    assert_eq!(none[0]["evidence"], json!([]));
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_evidence_and_verify_requests_get_a_4xx_naming_the_field() {
    let dir = sqlite_dir("verify-bad");
    let Some(s) = start(Some(StoreConfig::new(sqlite_url(&dir.join("nlpd.db"))))).await else {
        return;
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/v1/evidence", json!({"documents": []}), 422, "documents"),
        (
            "/v1/evidence",
            json!({"documents": [{"text": "  "}]}),
            422,
            "documents[0].text",
        ),
        (
            "/v1/evidence",
            json!({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}),
            422,
            "documents[1].id",
        ),
        (
            "/v1/evidence",
            json!({"documents": [{"id": "a/b", "text": "x"}]}),
            422,
            "documents[0].id",
        ),
        (
            "/v1/evidence",
            json!({"documents": [{"text": "x"}], "passage_tokens": 3}),
            422,
            "passage_tokens",
        ),
        (
            "/v1/evidence",
            json!({"documents": [{"txt": "x"}]}),
            400,
            "",
        ),
        ("/v1/verify", json!({"claims": []}), 422, "claims"),
        (
            "/v1/verify",
            json!({"claims": ["ok", " "]}),
            422,
            "claims[1]",
        ),
        (
            "/v1/verify",
            json!({"claims": "ok", "top_k": 0}),
            422,
            "top_k",
        ),
        (
            "/v1/verify",
            json!({"claims": "ok", "min_score": 1.5}),
            422,
            "min_score",
        ),
        (
            "/v1/verify",
            json!({"claims": "ok", "nli_model": "nope"}),
            404,
            "nli_model",
        ),
        ("/v1/verify", json!({"claim": "ok"}), 400, ""),
    ];
    for (path, body, status, param) in cases {
        let r = s.post_json(path, body.clone()).await;
        let param = (!param.is_empty()).then_some(param);
        let msg = r.assert_error(status, param);
        assert!(!msg.is_empty(), "{path} {body}");
    }
    s.get("/v1/evidence/nope")
        .await
        .assert_error(404, Some("id"));
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);

    // Without a store there is no corpus: 503 with the reason, not a 500.
    let Some(s) = start(None).await else {
        return;
    };
    let r = s.post_json("/v1/verify", json!({"claims": "ok"})).await;
    assert!(r.assert_error(503, None).contains("store"));
    let r = s
        .post_json("/v1/evidence", json!({"documents": [{"text": "x"}]}))
        .await;
    r.assert_error(503, None);
    s.stop().await;
}

/// Passages embedded by another model or revision are embedded again when the index is rebuilt
/// at start, and saved: retrieval works as if they had been ingested now.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passages_of_another_model_revision_are_embedded_again_at_start() {
    use sqlx::Row;
    let dir = sqlite_dir("reembed");
    let url = sqlite_url(&dir.join("nlpd.db"));
    let Some(s) = start(Some(StoreConfig::new(&url))).await else {
        return;
    };
    ingest(&s, json!(evidence_docs())).await;
    s.stop().await;

    // As if another model had written them: another revision, and vectors that point nowhere
    // useful (all equal).
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let junk: Vec<u8> = std::iter::repeat_n(1.0f32.to_le_bytes(), 384)
        .flatten()
        .collect();
    let n = sqlx::query("UPDATE evidence_passages SET revision = 'old', embedding = ?1")
        .bind(&junk)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert!(n >= 10);
    pool.close().await;

    let Some((s, stats)) = restart(&url).await else {
        return;
    };
    assert_eq!(stats["passages"], n, "{stats}");
    let results = verify(
        &s,
        json!({"claims": ["Penguins use their wings to swim."], "top_k": 1, "nli_model": "smollm2"}),
    )
    .await;
    assert_eq!(first_docs(&results), vec!["penguins"]);
    s.stop().await;

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let old: i64 = sqlx::query("SELECT COUNT(*) FROM evidence_passages WHERE revision = 'old'")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(old, 0, "the new embeddings are saved");
    pool.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Two replicas on one database: what one adds or deletes, the other's index picks up at its
/// next refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_sees_documents_another_replica_adds_and_deletes() {
    let dir = sqlite_dir("replicas");
    let url = sqlite_url(&dir.join("nlpd.db"));
    let config = || ServerConfig {
        store: Some(StoreConfig::new(&url)),
        evidence_refresh: Some(std::time::Duration::from_millis(200)),
        ..generation_config()
    };
    let ready = |v: &Value| v["state"] == "ready";
    let Some(a) = start_with(config()).await else {
        return;
    };
    wait_until(&a, "/v1/evidence", |v| v, "a ready", 60, ready).await;
    let Some(b) = start_with(config()).await else {
        return;
    };
    wait_until(&b, "/v1/evidence", |v| v, "b ready", 60, ready).await;
    let docs = evidence_docs();
    ingest(&a, json!([docs[2], docs[5]])).await;
    let seen = wait_until(
        &b,
        "/v1/evidence",
        |v| v,
        "b sees a's documents",
        60,
        |v| v["documents"] == 2,
    )
    .await;
    assert_eq!(seen["state"], "ready");
    let r = verify(
        &b,
        json!({"claims": ["Penguins use their wings as flippers."], "top_k": 1}),
    )
    .await;
    assert_eq!(first_docs(&r), vec!["penguins"]);

    assert_eq!(a.delete("/v1/evidence/penguins").await.status, 200);
    wait_until(
        &b,
        "/v1/evidence",
        |v| v,
        "b sees the delete",
        60,
        |v| v["documents"] == 1,
    )
    .await;
    let r = verify(
        &b,
        json!({"claims": ["Penguins use their wings as flippers."], "top_k": 3, "min_score": -1}),
    )
    .await;
    assert!(r[0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["document_id"] == "moon"));
    // And the other way round.
    ingest(&b, json!([docs[0]])).await;
    wait_until(
        &a,
        "/v1/evidence",
        |v| v,
        "a sees b's document",
        60,
        |v| v["documents"] == 2,
    )
    .await;
    a.stop().await;
    b.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
