//! `/v1/analyze` with sentiment + embedding: a head trained on the embedding model's encoder (the
//! pack's `sentiment` on all-MiniLM-L6-v2) reads the embedding instead of running the encoder a
//! second time, and gives the scores the classifier's own forward pass gives.

mod common;

use common::{pack, spec, tiny, TestServer};
use nlpd_runtime::BatchConfig;
use nlpd_server::ServerConfig;
use serde_json::{json, Value};

const TEXTS: [&str; 3] = [
    "I love this phone, the battery lasts for days and the screen is gorgeous.",
    "The service was slow, the food was cold and the waiter was rude.",
    "The meeting has been moved to room 204.",
];

/// label -> score of one ranked `[{label, score}]` list.
fn scores(list: &Value) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| {
            (
                e["label"].as_str().unwrap().to_string(),
                e["score"].as_f64().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn loaded(models: &Value, name: &str) -> bool {
    models["data"]
        .as_array()
        .or_else(|| models["models"].as_array())
        .or_else(|| models.as_array())
        .unwrap_or_else(|| panic!("no model list: {models}"))
        .iter()
        .find(|m| m["name"] == name || m["id"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {models}"))["loaded"]
        .as_bool()
        .unwrap_or_else(|| panic!("no `loaded` for {name}: {models}"))
}

/// Analyze's sentiment per text, and the classifier's own, label by label.
async fn compare_with_classify(s: &TestServer, analyzed: &Value) {
    let r = s
        .post_json(
            "/v1/classify",
            json!({"model": "sentiment", "inputs": TEXTS, "raw_scores": false, "top_k": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let own = r.json()["results"].clone();
    for (i, text) in TEXTS.iter().enumerate() {
        let a = scores(&analyzed["results"][i]["sentiment"]);
        let c = scores(&own[i]);
        assert_eq!(a.len(), 3, "{text}: {a:?}");
        for ((la, sa), (lc, sc)) in a.iter().zip(&c) {
            assert_eq!(la, lc);
            assert!((sa - sc).abs() <= 1e-5, "{text}: {la} {sa} vs {sc}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_head_on_the_embedding_encoder_shares_its_forward_pass() {
    let (Some(minilm), Some(sentiment)) = (pack("all-MiniLM-L6-v2"), pack("sentiment")) else {
        return;
    };
    let specs = vec![
        spec("minilm", &minilm, None),
        spec("sentiment", &sentiment, None),
    ];
    let s = TestServer::start(specs, BatchConfig::default(), None, ServerConfig::default()).await;
    let r = s
        .post_json(
            "/v1/analyze",
            json!({"inputs": TEXTS, "tasks": ["sentiment", "embedding"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let analyzed = r.json();
    // One encoder ran: the classifier was never even loaded.
    let models = s.get("/v1/models").await.json();
    assert!(loaded(&models, "minilm"), "{models}");
    assert!(!loaded(&models, "sentiment"), "{models}");
    let top = |i: usize| analyzed["results"][i]["sentiment"][0]["label"].clone();
    assert_eq!(top(0), "positive", "{analyzed}");
    assert_eq!(top(1), "negative", "{analyzed}");
    for i in 0..TEXTS.len() {
        let total: f64 = scores(&analyzed["results"][i]["sentiment"])
            .iter()
            .map(|x| x.1)
            .sum();
        assert!((total - 1.0).abs() < 1e-5, "{analyzed}");
        assert_eq!(
            analyzed["results"][i]["embedding"].as_array().map(Vec::len),
            Some(384)
        );
    }
    // The embedding is /v1/embed's.
    let r = s
        .post_json("/v1/embed", json!({"model": "minilm", "inputs": TEXTS}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let embedded = r.json();
    for i in 0..TEXTS.len() {
        let a = analyzed["results"][i]["embedding"].as_array().unwrap();
        let e = embedded["embeddings"][i]
            .as_array()
            .or_else(|| embedded["results"][i].as_array())
            .unwrap_or_else(|| panic!("{embedded}"));
        for (x, y) in a.iter().zip(e) {
            assert!((x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-6);
        }
    }
    // The classifier's own forward pass (it loads now) gives the same scores.
    compare_with_classify(&s, &analyzed).await;
    assert!(loaded(&s.get("/v1/models").await.json(), "sentiment"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_head_on_another_encoder_runs_its_own_pass() {
    let Some(sentiment) = pack("sentiment") else {
        return;
    };
    // The default embedding model is a different encoder: the head cannot read its vectors.
    let specs = vec![
        spec("tiny", &tiny("bert-base"), Some("embed")),
        spec("sentiment", &sentiment, None),
    ];
    let s = TestServer::start(specs, BatchConfig::default(), None, ServerConfig::default()).await;
    let r = s
        .post_json(
            "/v1/analyze",
            json!({"inputs": TEXTS, "tasks": ["sentiment", "embedding"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let analyzed = r.json();
    assert!(loaded(&s.get("/v1/models").await.json(), "sentiment"));
    compare_with_classify(&s, &analyzed).await;
    s.stop().await;
}
