//! The Hugging Face Inference API routes (`POST /`, `POST /models/{name}`) and TEI's
//! `/similarity` and `/decode`, in process with tiny models: the response shapes the client
//! parses, the dispatch by the model's task, and the 4xx (naming the field) for a payload of
//! another task, bad values and unknown models. The real client drives the pack models in
//! crates/cli/tests/hf_client.rs.

mod common;

use common::*;
use nlpd_runtime::BatchConfig;
use nlpd_server::ServerConfig;
use serde_json::{json, Value};

async fn server() -> TestServer {
    let specs = vec![
        spec("emb", &tiny("bert-base"), None),
        spec("cls", &tiny("distilbert-seqcls"), None),
        spec("tok", &tiny("xlm-roberta-tokcls"), None),
        spec("cross", &tiny("roberta-crossenc"), Some("rerank")),
    ];
    TestServer::start(specs, BatchConfig::default(), None, ServerConfig::default()).await
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}

#[track_caller]
fn assert_error(r: &Resp, status: u16, param: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert!(v["error"]["message"].is_string(), "{}", r.body);
    if param.is_empty() {
        assert!(v["error"]["param"].is_null(), "{}", r.body);
    } else {
        assert_eq!(v["error"]["param"], param, "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feature_extraction_and_similarity() {
    let s = server().await;

    // POST / is the default embedding model; one text still answers a list of vectors.
    let r = s.post_json("/", json!({"inputs": "hello world"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let dim = v[0].as_array().unwrap().len();
    let norm: f64 = floats(&v[0]).iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "normalized by default: {norm}");

    // The same through /models/{name}, with the client's top-level options.
    let r = s
        .post_json(
            "/models/emb",
            json!({"inputs": ["a", "b"], "normalize": false, "truncate": true, "truncation_direction": "right"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1].as_array().unwrap().len(), dim);
    let r = s
        .post_json("/", json!({"inputs": "a", "dimensions": 8}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0].as_array().unwrap().len(), 8);
    // An empty `parameters` object (some clients send one) is fine.
    let r = s
        .post_json("/", json!({"inputs": "a", "parameters": {}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Sentence-similarity: one score per sentence, the identical sentence scoring 1.
    let body = json!({"inputs": {"source_sentence": "the cat sat", "sentences": ["the cat sat", "stock markets fell"]}, "parameters": {}});
    for path in ["/", "/models/emb", "/similarity"] {
        let r = s.post_json(path, body.clone()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let scores = floats(&r.json());
        assert_eq!(scores.len(), 2, "{path}");
        assert!((scores[0] - 1.0).abs() < 1e-4, "{path}: {scores:?}");
        assert!(
            scores.iter().all(|x| (-1.0..=1.0).contains(x)),
            "{scores:?}"
        );
        assert!(scores[0] > scores[1], "{path}: {scores:?}");
    }

    // Bad input: 4xx naming the field.
    let r = s
        .post_json(
            "/",
            json!({"inputs": {"source_sentence": " ", "sentences": ["a"]}}),
        )
        .await;
    assert_error(&r, 422, "inputs.source_sentence");
    let r = s
        .post_json(
            "/similarity",
            json!({"inputs": {"source_sentence": "a", "sentences": []}}),
        )
        .await;
    assert_error(&r, 422, "inputs.sentences");
    let r = s
        .post_json(
            "/",
            json!({"inputs": {"source_sentence": "a", "sentences": ["b", ""]}}),
        )
        .await;
    assert_error(&r, 422, "inputs.sentences[1]");
    let r = s
        .post_json(
            "/",
            json!({"inputs": {"source_sentence": "a", "sentences": ["b", 3]}}),
        )
        .await;
    assert_error(&r, 400, "inputs.sentences[1]");
    let long = "word ".repeat(5000);
    let r = s
        .post_json(
            "/similarity",
            json!({"inputs": {"source_sentence": "a", "sentences": ["b", long]}, "parameters": {"truncate": false}}),
        )
        .await;
    assert_error(&r, 422, "inputs.sentences[1]");
    let r = s
        .post_json("/similarity", json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": {"prompt_name": "query"}}))
        .await;
    assert_error(&r, 422, "parameters.prompt_name");
    let r = s.post_json("/", json!({"inputs": []})).await;
    assert_error(&r, 422, "inputs");
    let r = s.post_json("/", json!({"inputs": ["a", 1]})).await;
    assert_error(&r, 400, "inputs[1]");
    // `left` keeps a long input's end (as on /v1/embed): another vector than `right`'s.
    let long = (0..2000)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut sides = Vec::new();
    for side in ["left", "right"] {
        let r = s
            .post_json("/", json!({"inputs": long, "truncation_direction": side}))
            .await;
        assert_eq!(r.status, 200, "{side}: {}", r.body);
        sides.push(r.json()[0].clone());
    }
    assert_ne!(
        sides[0], sides[1],
        "left and right truncation kept the same part"
    );
    let r = s
        .post_json("/", json!({"inputs": "a", "truncation_direction": "up"}))
        .await;
    assert_error(&r, 400, "truncation_direction");
    let r = s
        .post_json("/", json!({"inputs": "a", "encoding_format": "base64"}))
        .await;
    assert_error(&r, 422, "encoding_format");
    // Another task's payload on the embedding model.
    let r = s
        .post_json("/", json!({"inputs": "a", "parameters": {"top_k": 2}}))
        .await;
    assert_error(&r, 422, "parameters");
    let r = s.post_json("/", json!({"inputs": {"text": "a"}})).await;
    assert_error(&r, 422, "inputs");
    let r = s.post("/", "[1, 2]").await;
    assert_error(&r, 400, "");
    let r = s.post_json("/", json!({"input": "a"})).await;
    assert_eq!(r.status, 400, "{}", r.body);

    // The dashboard still answers GET /, without a key.
    let r = s.get("/").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<html") || r.body.contains("<!DOCTYPE"),
        "{:.80}",
        r.body
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classification_and_tokens() {
    let s = server().await;

    // Text classification: a list of label lists, also for one text.
    let r = s
        .post_json("/models/cls", json!({"inputs": "good stuff"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let all = v[0].as_array().unwrap();
    assert_eq!(all.len(), 3, "every label by default: {v}");
    let scores: Vec<f64> = all.iter().map(|x| x["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "sorted: {scores:?}"
    );
    assert!(
        (scores.iter().sum::<f64>() - 1.0).abs() < 1e-4,
        "softmax: {scores:?}"
    );
    let top = all[0]["label"].clone();

    let r = s
        .post_json(
            "/models/cls",
            json!({"inputs": "good stuff", "parameters": {"top_k": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v[0].as_array().unwrap().len(), 1);
    assert_eq!(v[0][0]["label"], top);

    let r = s
        .post_json(
            "/models/cls",
            json!({"inputs": ["a", {"text": "b", "text_pair": "c"}], "parameters": {"function_to_apply": "sigmoid"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let sig: f64 = v[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["score"].as_f64().unwrap())
        .sum();
    assert!(v[0]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| (0.0..=1.0).contains(&x["score"].as_f64().unwrap())));
    assert!(
        (sig - 1.0).abs() > 1e-3,
        "sigmoid scores do not sum to 1: {sig}"
    );
    let r = s
        .post_json(
            "/models/cls",
            json!({"inputs": "a", "parameters": {"function_to_apply": "none"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A cross-encoder answers text-classification too.
    let r = s
        .post_json(
            "/models/cross",
            json!({"inputs": {"text": "q", "text_pair": "d"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()[0][0]["score"].is_number(), "{}", r.body);

    let r = s
        .post_json(
            "/models/cls",
            json!({"inputs": "a", "parameters": {"top_k": 0}}),
        )
        .await;
    assert_error(&r, 400, "parameters.top_k");
    let r = s
        .post_json(
            "/models/cls",
            json!({"inputs": "a", "parameters": {"function_to_apply": "relu"}}),
        )
        .await;
    assert_error(&r, 400, "parameters.function_to_apply");
    let r = s
        .post_json(
            "/models/cls",
            json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}}),
        )
        .await;
    assert_error(&r, 422, "inputs");
    let r = s.post_json("/models/cls", json!({"inputs": []})).await;
    assert_error(&r, 422, "inputs");

    // Token classification: spans with character offsets; one list per text for a list.
    let text = "Angela Merkel visited Paris";
    let r = s
        .post_json(
            "/models/tok",
            json!({"inputs": text, "parameters": {"aggregation_strategy": "simple"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let spans = r.json();
    for e in spans.as_array().unwrap() {
        let (a, b) = (
            e["start"].as_u64().unwrap() as usize,
            e["end"].as_u64().unwrap() as usize,
        );
        let word: String = text.chars().skip(a).take(b - a).collect();
        assert_eq!(e["word"], word.as_str(), "{e}");
        assert!(
            e["entity_group"].is_string() && e["score"].is_number(),
            "{e}"
        );
        assert_ne!(e["entity_group"], "O");
    }
    let r = s
        .post_json(
            "/models/tok",
            json!({"inputs": [text, "x"], "parameters": {"aggregation_strategy": "first"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0], spans, "`first` gives the same spans as `simple`");
    // `none`: every token but the ignored labels, with its raw label.
    let r = s
        .post_json("/models/tok", json!({"inputs": text, "parameters": {"aggregation_strategy": "none", "ignore_labels": []}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens = r.json();
    let tokens = tokens.as_array().unwrap();
    assert!(tokens.len() >= 4, "{tokens:?}");
    assert!(tokens
        .iter()
        .all(|t| t["entity"].is_string() && t.get("entity_group").is_none()));
    let r = s
        .post_json(
            "/models/tok",
            json!({"inputs": text, "parameters": {"aggregation_strategy": "none"}}),
        )
        .await;
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["entity"] != "O"),
        "{}",
        r.body
    );

    let r = s
        .post_json(
            "/models/tok",
            json!({"inputs": text, "parameters": {"stride": 16}}),
        )
        .await;
    assert_error(&r, 422, "parameters.stride");
    let r = s
        .post_json(
            "/models/tok",
            json!({"inputs": text, "parameters": {"aggregation_strategy": "best"}}),
        )
        .await;
    assert_error(&r, 400, "parameters.aggregation_strategy");
    let r = s
        .post_json("/models/tok", json!({"inputs": {"text": "a"}}))
        .await;
    assert_error(&r, 422, "inputs");

    // Unknown model: 404 naming the model.
    let r = s.post_json("/models/nope", json!({"inputs": "a"})).await;
    assert_error(&r, 404, "model");
    let r = s.post_json("/models/%2e%2e", json!({"inputs": "a"})).await;
    assert_error(&r, 404, "model");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decode_and_no_embedding_model() {
    let s = server().await;
    let r = s
        .post_json("/tokenize", json!({"inputs": "hello world"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ids: Vec<u64> = r.json()[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    let r = s.post_json("/decode", json!({"ids": ids})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0].as_str().unwrap().trim(), "hello world", "{v}");
    let r = s
        .post_json(
            "/decode",
            json!({"ids": [ids.clone(), ids.clone()], "skip_special_tokens": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(v[0].as_str().unwrap().contains("hello"), "{v}");
    assert!(
        v[0].as_str().unwrap().len() > "hello world".len(),
        "special tokens kept: {v}"
    );

    assert_error(
        &s.post_json("/decode", json!({"ids": []})).await,
        422,
        "ids",
    );
    assert_error(
        &s.post_json("/decode", json!({"ids": [1, -2]})).await,
        400,
        "ids[1]",
    );
    assert_error(
        &s.post_json("/decode", json!({"ids": [[1], [2, "x"]]}))
            .await,
        400,
        "ids[1][1]",
    );
    assert_error(
        &s.post_json("/decode", json!({"ids": [4_000_000_000u64]}))
            .await,
        422,
        "ids[0]",
    );
    assert_error(
        &s.post_json("/decode", json!({"ids": "abc"})).await,
        400,
        "ids",
    );
    s.stop().await;

    // Without an embedding model POST / is a 404 that points at /models/{name}.
    let s = TestServer::start(
        vec![spec("cls", &tiny("distilbert-seqcls"), None)],
        BatchConfig::default(),
        None,
        ServerConfig::default(),
    )
    .await;
    let r = s.post_json("/", json!({"inputs": "a"})).await;
    assert_error(&r, 404, "model");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/models/"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_guard_post_but_not_the_dashboard() {
    let config = ServerConfig {
        api_keys: ["k1".to_string()].into_iter().collect(),
        ..ServerConfig::default()
    };
    let s = TestServer::start(
        vec![spec("emb", &tiny("bert-base"), None)],
        BatchConfig::default(),
        None,
        config,
    )
    .await;
    let body = json!({"inputs": "a"}).to_string();
    for path in ["/", "/models/emb", "/similarity", "/decode"] {
        let r = s.post(path, &body).await;
        assert_eq!(r.status, 401, "{path}: {}", r.body);
    }
    let r = request(
        s.addr,
        "POST",
        "/",
        Some(&body),
        &[("authorization", "Bearer k1")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.get("/").await.status, 200);
    s.stop().await;
}

/// Text generation in TGI's shapes with the pack's generator (skipped without the pack).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_generation() {
    let Some(smol) = pack("smollm2-135m-instruct") else {
        return;
    };
    let s = TestServer::start(
        vec![
            spec("gen", &smol, None),
            spec("emb", &tiny("bert-base"), None),
        ],
        BatchConfig::default(),
        None,
        generation_config(),
    )
    .await;
    let r = s
        .post_json(
            "/models/gen",
            json!({"inputs": "The capital of France is", "parameters": {"max_new_tokens": 3, "details": true, "return_full_text": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let text = v[0]["generated_text"].as_str().unwrap();
    assert!(
        text.starts_with("The capital of France is") && text.len() > 24,
        "{v}"
    );
    assert_eq!(v[0]["details"]["generated_tokens"], 3, "{v}");
    assert_eq!(v[0]["details"]["finish_reason"], "length", "{v}");
    assert!(v[0]["details"]["seed"].is_null(), "greedy: {v}");

    // Streaming: TGI events, the last with the whole text and the details; no [DONE].
    let r = s
        .post_json(
            "/models/gen",
            json!({"inputs": "Hello", "parameters": {"max_new_tokens": 4, "seed": 7, "temperature": 0.5}, "stream": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("[DONE]"), "{}", r.body);
    let events: Vec<Value> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    let last = events.last().unwrap();
    let pieces: String = events
        .iter()
        .map(|e| e["token"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        last["generated_text"].as_str().unwrap(),
        pieces,
        "{}",
        r.body
    );
    assert_eq!(last["details"]["seed"], 7);
    assert!(events[..events.len() - 1]
        .iter()
        .all(|e| e["generated_text"].is_null()));

    // Parameters the generator cannot honour: the 400 the client knows how to retry without.
    let r = s
        .post_json(
            "/models/gen",
            json!({"inputs": "x", "parameters": {"top_k": 10, "watermark": true}}),
        )
        .await;
    assert_error(&r, 400, "parameters.top_k");
    assert!(r.body.contains("['top_k', 'watermark']"), "{}", r.body);
    let r = s
        .post_json(
            "/models/gen",
            json!({"inputs": "x", "parameters": {"max_new_tokens": 0}}),
        )
        .await;
    assert_error(&r, 400, "parameters.max_new_tokens");
    let r = s
        .post_json(
            "/models/gen",
            json!({"inputs": "x", "parameters": {"temperature": 0}}),
        )
        .await;
    assert_error(&r, 400, "parameters.temperature");
    assert_error(
        &s.post_json("/models/gen", json!({"inputs": ""})).await,
        422,
        "inputs",
    );
    assert_error(
        &s.post_json("/models/gen", json!({"inputs": ["a"]})).await,
        422,
        "inputs",
    );
    assert_error(
        &s.post_json(
            "/models/gen",
            json!({"inputs": {"source_sentence": "a", "sentences": []}}),
        )
        .await,
        422,
        "inputs",
    );
    s.stop().await;
}
