//! Every route against the real server (in process, port 0) with real models: the pack where a
//! route needs it, tiny reference models for classification, NLI and cross-encoder reranking.

mod common;

use base64::Engine as _;
use common::*;
use nlpd_runtime::BatchConfig;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A copy of the tiny BERT classifier whose labels are NLI labels.
fn tiny_nli() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nlpd-tiny-nli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        let src = tiny("bert-seqcls").join(f);
        if src.exists() {
            std::fs::copy(&src, dir.join(f)).unwrap();
        }
    }
    let mut cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(tiny("bert-seqcls").join("config.json")).unwrap(),
    )
    .unwrap();
    cfg["id2label"] = json!({"0": "CONTRADICTION", "1": "NEUTRAL", "2": "ENTAILMENT"});
    cfg["label2id"] = json!({"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir
}

async fn full_server() -> Option<TestServer> {
    let minilm = pack("all-MiniLM-L6-v2")?;
    let rampart = pack("rampart-pii-ner")?;
    let smol = pack("smollm2-135m-instruct")?;
    let specs = vec![
        spec("minilm", &minilm, None),
        spec("rampart", &rampart, None),
        spec("smollm2", &smol, None),
        spec("tiny-cls", &tiny("bert-seqcls"), None),
        spec("tiny-nli", &tiny_nli(), None),
        spec("tiny-cross", &tiny("roberta-crossenc"), Some("rerank")),
    ];
    let mut defaults = BTreeMap::new();
    defaults.insert("rerank".to_string(), "tiny-cross".to_string());
    Some(
        TestServer::start_with(
            specs,
            defaults,
            BatchConfig::default(),
            None,
            common::generation_config(),
            false,
        )
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encoder_routes() {
    let Some(s) = full_server().await else { return };

    let r = s
        .post_json("/v1/embed", json!({"inputs": "The movie was great"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.json()["embeddings"].as_array().unwrap().clone();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].as_array().unwrap().len(), 384);

    let r = s
        .post_json(
            "/v1/embed",
            json!({"inputs": ["a", "b", "c"], "dimensions": 32}),
        )
        .await;
    let e = r.json()["embeddings"].as_array().unwrap().clone();
    assert_eq!((e.len(), e[2].as_array().unwrap().len()), (3, 32));

    // OpenAI shape; base64 decodes to the same floats; unknown OpenAI model names use the default.
    let r = s
        .post_json(
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["hello", "world"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "minilm");
    assert_eq!(v["data"][1]["index"], 1);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 6);
    let floats: Vec<f32> = v["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let r = s
        .post_json(
            "/v1/embeddings",
            json!({"input": "hello", "encoding_format": "base64"}),
        )
        .await;
    let b64 = r.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded.len(), 384);
    assert!(decoded
        .iter()
        .zip(&floats)
        .all(|(a, b)| (a - b).abs() < 1e-6));

    let r = s
        .post_json(
            "/v1/classify",
            json!({"model": "tiny-cls", "inputs": ["good", ["a", "b"]], "top_k": 2}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(res.len(), 2);
    assert_eq!(res[0].as_array().unwrap().len(), 2);
    assert!(res[0][0]["score"].as_f64() >= res[0][1]["score"].as_f64());
    let r = s
        .post_json(
            "/v1/classify",
            json!({"model": "tiny-cls", "inputs": "good", "raw_scores": true}),
        )
        .await;
    assert_eq!(r.json()["results"][0].as_array().unwrap().len(), 3);

    let text = "My name is Alex Rivera, I live at 42 Elm Street, Springfield, reach me at alex@example.com";
    let r = s.post_json("/v1/entities", json!({"inputs": [text]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ents = r.json()["results"][0].as_array().unwrap().clone();
    assert!(
        ents.iter()
            .any(|e| e["label"] == "EMAIL" && e["text"] == "alex@example.com" && e["start"] == 74),
        "{ents:?}"
    );
    let r = s
        .post_json(
            "/v1/entities",
            json!({"inputs": "Alex lives here", "aggregation": "none"}),
        )
        .await;
    assert_eq!(r.json()["results"][0].as_array().unwrap().len(), 3);

    let r = s.post_json("/v1/nli", json!({"model": "tiny-nli", "pairs": [{"premise": "A man eats.", "hypothesis": "Someone eats."}]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let n = r.json()["results"][0].clone();
    assert!(["entailment", "neutral", "contradiction"].contains(&n["label"].as_str().unwrap()));
    let total: f64 = n["scores"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-5);
    let r = s
        .post_json(
            "/v1/nli",
            json!({"model": "tiny-cls", "pairs": [{"premise": "a", "hypothesis": "b"}]}),
        )
        .await;
    r.assert_error(422, Some("model"));

    // Bi-encoder rerank (cosine with the embedding model) and a cross-encoder (raw scores).
    let docs = [
        "Cats are small pets.",
        "Stock prices fell sharply.",
        "Dogs are loyal animals.",
    ];
    let r = s
        .post_json(
            "/v1/rerank",
            json!({"model": "minilm", "query": "pets and animals", "documents": docs, "top_n": 2}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(res.len(), 2);
    assert_ne!(
        res[0]["index"], 1,
        "the finance document must not rank first: {res:?}"
    );
    assert!(res[0]["score"].as_f64() >= res[1]["score"].as_f64());
    let r = s
        .post_json(
            "/v1/rerank",
            json!({"query": "pets", "documents": docs, "return_documents": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(res.len(), 3);
    assert!(res[0].get("document").is_none());
    // The bi-encoder rerank is accounted as rerank (stages included), not as embed.
    let stats = s.get("/v1/stats").await.json();
    let rr = stats["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["task"] == "rerank" && x["model"] == "minilm")
        .expect("rerank series for the embedding model")
        .clone();
    assert_eq!(rr["requests"], 1, "{rr}");
    assert!(rr["tokenize"]["count"].as_u64().unwrap() >= 1, "{rr}");

    let r = s
        .post_json("/v1/tokenize", json!({"inputs": "Hello world"}))
        .await;
    let toks = r.json()["tokens"][0].as_array().unwrap().clone();
    assert_eq!(toks.first().unwrap()["text"], "[CLS]");
    assert_eq!(toks[1]["text"], "hello");
    assert_eq!(
        (toks[1]["start"].as_u64(), toks[1]["end"].as_u64()),
        (Some(0), Some(5))
    );

    // Combined analysis: every task with a model, concurrently, one object per input.
    let r = s
        .post_json(
            "/v1/analyze",
            json!({"inputs": [text, "Nothing personal here."]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(res.len(), 2);
    assert_eq!(res[0]["sentiment"].as_array().unwrap().len(), 3);
    assert!(res[0]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["label"] == "EMAIL"));
    assert_eq!(res[1]["embedding"].as_array().unwrap().len(), 384);
    let r = s
        .post_json(
            "/v1/analyze",
            json!({"inputs": text, "tasks": ["entities"]}),
        )
        .await;
    let only = r.json()["results"][0].as_object().unwrap().clone();
    assert_eq!(only.keys().collect::<Vec<_>>(), vec!["entities"]);
    s.post_json("/v1/analyze", json!({"inputs": "x", "tasks": ["mood"]}))
        .await
        .assert_error(400, Some("tasks[0]"));

    // TEI-compatible routes.
    let r = s.post_json("/embed", json!({"inputs": ["x", "y"]})).await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    let r = s
        .post_json(
            "/rerank",
            json!({"query": "pets", "texts": docs, "return_text": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()[0]["text"].is_string());
    let r = s.post_json("/tokenize", json!({"inputs": "hi"})).await;
    assert!(r.json()[0][0]["stop"].is_number());
    let r = s
        .post_json("/predict", json!({"inputs": ["a premise", "a hypothesis"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()[0]["label"].is_string(),
        "one pair gives one label list: {}",
        r.body
    );
    let r = s
        .post_json("/predict", json!({"inputs": ["one", ["a", "b"], "three"]}))
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 3);
    let r = s.get("/info").await;
    assert_eq!(r.json()["model_id"], "minilm");

    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generation_routes() {
    let Some(s) = full_server().await else { return };
    let r = s.post_json("/v1/explain", json!({"code": "def add(a, b):\n    return a + b", "language": "python", "max_tokens": 40})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let text = v["explanation"].as_str().unwrap().to_lowercase();
    assert!(text.contains("sum") || text.contains("add"), "{text}");
    assert_eq!(v["usage"]["completion_tokens"], 40);

    let chat = json!({"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 10, "temperature": 0});
    let r = s.post_json("/v1/chat/completions", chat.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let full = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!full.is_empty());
    let mut streamed = chat;
    streamed["stream"] = json!(true);
    let r = s.post_json("/v1/chat/completions", streamed).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let data = r.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let mut joined = String::new();
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            joined.push_str(c);
        }
    }
    assert_eq!(
        joined, full,
        "streamed text equals the non-streamed greedy text"
    );
    // stream_options.include_usage: a last chunk with no choices and the usage, then [DONE].
    let r = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "Hello", "max_tokens": 3, "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
    let data = r.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let u: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(u["choices"], json!([]));
    assert_eq!(u["usage"]["completion_tokens"], 3);
    assert_eq!(u["object"], "text_completion");
    // The stream is recorded once, when it ends (not when its headers went out).
    let stats = s.get("/v1/stats").await.json();
    let chat = stats["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["task"] == "chat")
        .unwrap()
        .clone();
    assert_eq!(chat["requests"], 2, "{chat}");
    assert!(chat["latency"]["p50_ms"].as_f64().unwrap() > 5.0, "{chat}");

    let r = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "def fib(n):", "max_tokens": 6, "temperature": 0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["object"], "text_completion");
    let r = s
        .post_json(
            "/v1/explain",
            json!({"code": "x = 1", "stream": true, "max_tokens": 5}),
        )
        .await;
    let data = r.sse_data();
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["done"], true);

    let r = s
        .post_json(
            "/v1/chat/completions",
            json!({"messages": [], "max_tokens": 5}),
        )
        .await;
    r.assert_error(422, Some("messages"));
    let r = s
        .post_json(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
        )
        .await;
    r.assert_error(400, Some("n"));
    // More tokens than --max-new-tokens (4096 by default) allows: 400 naming the field used.
    let one = json!([{"role": "user", "content": "x"}]);
    s.post_json(
        "/v1/chat/completions",
        json!({"messages": one, "max_tokens": 4097}),
    )
    .await
    .assert_error(400, Some("max_tokens"));
    s.post_json(
        "/v1/chat/completions",
        json!({"messages": one, "max_completion_tokens": 99999}),
    )
    .await
    .assert_error(400, Some("max_completion_tokens"));
    s.post_json(
        "/v1/completions",
        json!({"prompt": "x", "max_tokens": 1_000_000}),
    )
    .await
    .assert_error(400, Some("max_tokens"));
    s.post_json("/v1/explain", json!({"code": "x", "max_tokens": 5000}))
        .await
        .assert_error(400, Some("max_tokens"));
    // A generation past its deadline is a 504, not a truncated answer.
    let r = s.post_json("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "Write a long story"}], "max_tokens": 500, "timeout_ms": 300})).await;
    r.assert_error(504, None);
    // An encoder model cannot generate.
    let r = s
        .post_json("/v1/explain", json!({"model": "minilm", "code": "x"}))
        .await;
    r.assert_error(422, Some("model"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_routes() {
    let Some(s) = full_server().await else { return };
    assert_eq!(s.get("/health/live").await.status, 200);
    assert_eq!(
        s.get("/health/ready").await.status,
        200,
        "nothing preloaded: ready"
    );
    assert_eq!(s.get("/health").await.status, 200);
    let v = s.get("/v1/models").await.json();
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"minilm") && names.contains(&"smollm2"));
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["loaded"] == false),
        "lazy: nothing loaded yet"
    );
    assert!(
        v["data"][0]["backend"].is_null(),
        "no backend before loading"
    );

    let r = s.post("/v1/models/tiny-cls/load", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = s.get("/v1/models").await.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tiny-cls")
        .unwrap()
        .clone();
    assert_eq!(m["loaded"], true);
    assert!(m["bytes"].as_u64().unwrap() > 0);
    assert_eq!(m["task"], "classify");
    assert_eq!(m["backend"], "fast-bert", "auto picks the fast CPU encoder");
    assert_eq!(m["dtype"], "f32");
    assert_eq!(m["precision"], "f32");
    assert!(
        m["kernel"].as_str().is_some(),
        "a loaded encoder names its kernel: {m}"
    );
    s.post_json("/v1/classify", json!({"model": "tiny-cls", "inputs": "x"}))
        .await;
    let r = s.post("/v1/models/tiny-cls/unload", "").await;
    assert_eq!(r.json()["was_loaded"], true);
    s.post("/v1/models/nope/load", "")
        .await
        .assert_error(404, Some("model"));

    let metrics = s.get("/metrics").await.body;
    for name in [
        "nlpd_requests_total",
        "nlpd_request_duration_seconds_bucket",
        "nlpd_queue_duration_seconds",
        "nlpd_tokenize_duration_seconds",
        "nlpd_inference_duration_seconds",
        "nlpd_batch_size",
        "nlpd_batch_tokens",
        "nlpd_queue_depth",
        "nlpd_model_loaded",
        "nlpd_model_bytes",
        "nlpd_process_resident_bytes",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    let stats = s.get("/v1/stats").await.json();
    assert!(stats["process_resident_bytes"].as_u64().unwrap() > 0);
    let series = stats["requests"].as_array().unwrap();
    let cls = series
        .iter()
        .find(|x| x["model"] == "tiny-cls")
        .expect("classify series");
    assert_eq!(cls["requests"], 1);
    assert!(cls["inference"]["p50_ms"].as_f64().unwrap() > 0.0);
    s.get("/v1/nope").await.assert_error(404, None);
    // The dashboard: one self-contained page that reads the stats and models routes.
    let page = s.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    for needle in [
        "/v1/stats",
        "/v1/models",
        "<canvas",
        "Playground",
        "/v1/explain",
    ] {
        assert!(page.body.contains(needle), "dashboard lacks {needle}");
    }
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "no external assets"
    );
    let spec_doc = s.get("/openapi.json").await.json();
    assert_eq!(spec_doc["openapi"], "3.1.0");
    let m = s.get("/v1/models/minilm").await.json();
    assert_eq!(
        (m["id"].as_str(), m["object"].as_str()),
        (Some("minilm"), Some("model"))
    );
    assert!(m["created"].as_u64().unwrap() > 0);
    s.stop().await;
}
