//! Embedding prompts (config_sentence_transformers.json, `prompt_name` / `prompt`, a default
//! prompt per model), truncation from the start, and the Cohere routes (`/v2/embed`,
//! `/v2/rerank`, the Cohere form of `/v1/rerank`), against the real server in process with tiny
//! random-weight models.

mod common;

use base64::Engine as _;
use common::*;
use nlpd_runtime::BatchConfig;
use nlpd_server::ServerConfig;
use serde_json::{json, Value};
use std::path::PathBuf;

/// A copy of the tiny BERT encoder with e5-style prompts (no default prompt).
fn prompted_model(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nlpd-prompts-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(tiny("bert-base").join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("config_sentence_transformers.json"),
        r#"{"prompts": {"query": "query: ", "document": "passage: "}, "default_prompt_name": null}"#,
    )
    .unwrap();
    dir
}

async fn server(tag: &str) -> (TestServer, PathBuf) {
    let dir = prompted_model(tag);
    let mut with_default = spec("e5-default", &dir, Some("embed"));
    with_default.prompts.set_default("query").unwrap();
    // `plain` is the default embedding model, `cross` the default rerank model.
    let specs = vec![
        spec("plain", &tiny("bert-base"), Some("embed")),
        spec("e5", &dir, Some("embed")),
        with_default,
        spec("cross", &tiny("bert-crossenc"), Some("rerank")),
    ];
    let s = TestServer::start(specs, BatchConfig::default(), None, ServerConfig::default()).await;
    (s, dir)
}

async fn post_with(s: &TestServer, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
    request(s.addr, "POST", path, Some(&body.to_string()), headers).await
}

fn vectors(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list of vectors: {v}"))
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

async fn embed(s: &TestServer, body: Value) -> Vec<Vec<f32>> {
    let r = s.post_json("/v1/embed", body.clone()).await;
    assert_eq!(r.status, 200, "{body}: {}", r.body);
    vectors(&r.json()["embeddings"])
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert!(close(a, b), "{what}: {a:?}\n!=\n{b:?}");
}

fn norm(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

async fn token_count(s: &TestServer, model: &str, text: &str) -> usize {
    let r = s
        .post_json("/v1/tokenize", json!({"model": model, "inputs": text}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["tokens"][0].as_array().unwrap().len()
}

/// `n` single-letter words (one token each in the tiny vocabulary), `a b c ... z a b ...`.
fn letters(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| ((b'a' + (i % 26) as u8) as char).to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_are_put_before_the_inputs_and_change_the_vectors() {
    let (s, dir) = server("embed").await;
    let text = "the cat sat on the mat";
    // No prompt first: a cache keyed without the prompt would hand this back below.
    let bare = embed(&s, json!({"model": "e5", "inputs": [text]})).await;
    let named = embed(
        &s,
        json!({"model": "e5", "inputs": [text], "prompt_name": "query"}),
    )
    .await;
    let literal = embed(
        &s,
        json!({"model": "e5", "inputs": [text], "prompt": "query: "}),
    )
    .await;
    let by_hand = embed(
        &s,
        json!({"model": "e5", "inputs": [format!("query: {text}")]}),
    )
    .await;
    assert_close(
        &named[0],
        &by_hand[0],
        "prompt_name query = the text with `query: `",
    );
    assert_close(&literal[0], &by_hand[0], "prompt `query: `");
    assert!(!close(&named[0], &bare[0]), "the prompt changes the vector");
    let doc = embed(
        &s,
        json!({"model": "e5", "inputs": [text], "prompt_name": "document"}),
    )
    .await;
    let doc_hand = embed(
        &s,
        json!({"model": "e5", "inputs": [format!("passage: {text}")]}),
    )
    .await;
    assert_close(&doc[0], &doc_hand[0], "prompt_name document = `passage: `");

    // The default prompt (here set as `--default-prompt e5-default=query` does), and `""` to
    // turn it off.
    let dflt = embed(&s, json!({"model": "e5-default", "inputs": [text]})).await;
    assert_close(&dflt[0], &by_hand[0], "the default prompt applies");
    let off = embed(
        &s,
        json!({"model": "e5-default", "inputs": [text], "prompt": ""}),
    )
    .await;
    assert_close(&off[0], &bare[0], "prompt \"\" turns the default off");
    let other = embed(
        &s,
        json!({"model": "e5-default", "inputs": [text], "prompt_name": "document"}),
    )
    .await;
    assert_close(&other[0], &doc_hand[0], "prompt_name wins over the default");

    // The OpenAI route takes them too; the prompt's tokens are counted.
    let r = s
        .post_json(
            "/v1/embeddings",
            json!({"model": "e5", "input": [text], "prompt_name": "query"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let got: Vec<f32> = v["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_close(&got, &norm(&by_hand[0]), "/v1/embeddings with prompt_name");
    let with_prompt = token_count(&s, "e5", &format!("query: {text}")).await;
    assert_eq!(v["usage"]["prompt_tokens"], with_prompt, "{v}");
    assert!(with_prompt > token_count(&s, "e5", text).await);

    // Errors name the field.
    let r = s
        .post_json(
            "/v1/embed",
            json!({"model": "e5", "inputs": "x", "prompt_name": "nope"}),
        )
        .await;
    let m = r.assert_error(422, Some("prompt_name"));
    assert!(m.contains("document, query"), "{m}");
    let r = s
        .post_json(
            "/v1/embed",
            json!({"model": "plain", "inputs": "x", "prompt_name": "query"}),
        )
        .await;
    let m = r.assert_error(422, Some("prompt_name"));
    assert!(m.contains("defines no prompts"), "{m}");
    s.post_json(
        "/v1/embed",
        json!({"model": "e5", "inputs": "x", "prompt_name": "query", "prompt": "q"}),
    )
    .await
    .assert_error(400, Some("prompt"));
    s.post_json(
        "/v1/embed",
        json!({"model": "e5-default", "inputs": ["ok", "  "]}),
    )
    .await
    .assert_error(422, Some("inputs[1]"));
    s.post_json(
        "/v1/embeddings",
        json!({"input": ["ok", ""], "prompt": "q: "}),
    )
    .await
    .assert_error(422, Some("input[1]"));
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_from_the_start_keeps_the_end() {
    let (s, dir) = server("truncate").await;
    let limit = 64; // the tiny BERT's model_max_length
    let words = letters(100);
    let long = words.join(" ");
    let tail = |n: usize| words[words.len() - n..].join(" ");
    let head = |n: usize| words[..n].join(" ");

    let left = embed(
        &s,
        json!({"model": "plain", "inputs": [long], "truncation_direction": "left"}),
    )
    .await;
    let right = embed(&s, json!({"model": "plain", "inputs": [long]})).await;
    let expect_left = embed(&s, json!({"model": "plain", "inputs": [tail(limit - 2)]})).await;
    let expect_right = embed(&s, json!({"model": "plain", "inputs": [head(limit - 2)]})).await;
    assert_close(&left[0], &expect_left[0], "left keeps the last 62 words");
    assert_close(
        &right[0],
        &expect_right[0],
        "right keeps the first 62 words",
    );
    assert!(!close(&left[0], &right[0]));
    // TEI's capitalised value works too; a short input is untouched.
    let short = embed(
        &s,
        json!({"model": "plain", "inputs": ["a b c"], "truncation_direction": "Left"}),
    )
    .await;
    let plain = embed(&s, json!({"model": "plain", "inputs": ["a b c"]})).await;
    assert_close(&short[0], &plain[0], "a short input is untouched");

    // With a prompt: the prompt stays and its tokens count.
    let prompt_tokens = token_count(&s, "e5", "query:").await - 2;
    let kept = limit - 2 - prompt_tokens;
    let with_prompt = embed(
        &s,
        json!({"model": "e5", "inputs": [long], "prompt_name": "query", "truncation_direction": "left"}),
    )
    .await;
    let expect = embed(
        &s,
        json!({"model": "e5", "inputs": [format!("query: {}", tail(kept))]}),
    )
    .await;
    assert_close(
        &with_prompt[0],
        &expect[0],
        "prompt kept, then the last words",
    );

    s.post_json(
        "/v1/embed",
        json!({"model": "plain", "inputs": [long], "truncate": false}),
    )
    .await
    .assert_error(422, Some("inputs[0]"));
    s.post_json(
        "/v1/embed",
        json!({"model": "plain", "inputs": "x", "truncation_direction": "middle"}),
    )
    .await
    .assert_error(400, Some("truncation_direction"));

    // Cohere's truncate: START = left, END = right, NONE refuses (naming texts[i]).
    let cohere = |t: &str| json!({"model": "plain", "texts": ["short", long], "truncate": t, "embedding_types": ["float"]});
    for (t, expect) in [("START", &expect_left), ("END", &expect_right)] {
        let r = s.post_json("/v2/embed", cohere(t)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let got = vectors(&r.json()["embeddings"]["float"]);
        assert_close(&got[1], &norm(&expect[0]), t);
    }
    let m = s
        .post_json("/v2/embed", cohere("NONE"))
        .await
        .assert_error(422, Some("texts[1]"));
    assert!(m.contains("limit of 64"), "{m}");
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohere_embed_types_prompts_and_meta() {
    let (s, dir) = server("cohere").await;
    let texts = ["the cat sat on the mat", "a dog ran in the park"];
    let r = post_with(
        &s,
        "/v2/embed",
        json!({"model": "e5", "texts": texts, "input_type": "search_query",
                   "embedding_types": ["float", "int8", "uint8", "binary", "ubinary", "base64"]}),
        &[("x-request-id", "req-42")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["id"], "req-42");
    assert_eq!(v["response_type"], "embeddings_by_type");
    assert_eq!(v["texts"], json!(texts));
    assert_eq!(v["meta"]["api_version"]["version"], "2");
    let mut tokens = 0;
    for t in texts {
        tokens += token_count(&s, "e5", &format!("query: {t}")).await;
    }
    assert_eq!(v["meta"]["billed_units"]["input_tokens"], tokens, "{v}");
    let e = &v["embeddings"];
    let floats = vectors(&e["float"]);
    // input_type search_query = the model's `query` prompt.
    let native = embed(
        &s,
        json!({"model": "e5", "inputs": texts, "prompt_name": "query"}),
    )
    .await;
    for (f, n) in floats.iter().zip(&native) {
        assert_close(f, &norm(n), "search_query uses the query prompt");
    }
    let dims = floats[0].len();
    for (i, f) in floats.iter().enumerate() {
        let int8: Vec<i64> = e["int8"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let uint8: Vec<i64> = e["uint8"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let binary: Vec<i64> = e["binary"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let ubinary: Vec<i64> = e["ubinary"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        for (k, x) in f.iter().enumerate() {
            assert_eq!(int8[k], (x * 127.0).round() as i64, "int8[{k}] of {x}");
            assert_eq!(uint8[k], int8[k] + 128);
        }
        assert_eq!(ubinary.len(), dims.div_ceil(8));
        for (byte, chunk) in ubinary.iter().zip(f.chunks(8)) {
            let bits = chunk
                .iter()
                .enumerate()
                .fold(0, |b, (j, x)| if *x > 0.0 { b | (0x80 >> j) } else { b });
            assert_eq!(*byte, bits);
        }
        assert_eq!(binary, ubinary.iter().map(|b| b - 128).collect::<Vec<_>>());
        let raw = base64::engine::general_purpose::STANDARD
            .decode(e["base64"][i].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(&decoded, f, "base64 is the float vector's bytes");
    }

    // search_document = the `document` prompt; a Cohere model name = the default model;
    // output_dimension; float is the default type.
    let r = s
        .post_json(
            "/v2/embed",
            json!({"model": "e5", "texts": [texts[0]], "input_type": "search_document", "output_dimension": 8}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["embeddings"].as_object().unwrap().len(), 1, "{v}");
    let doc = vectors(&v["embeddings"]["float"]);
    let native = embed(
        &s,
        json!({"model": "e5", "inputs": [texts[0]], "prompt_name": "document", "dimensions": 8}),
    )
    .await;
    assert_close(&doc[0], &native[0], "search_document, 8 dimensions");
    let r = s
        .post_json(
            "/v2/embed",
            json!({"model": "embed-v4.0", "texts": [texts[0]], "input_type": "classification"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let plain = embed(&s, json!({"model": "plain", "inputs": [texts[0]]})).await;
    assert_close(
        &vectors(&r.json()["embeddings"]["float"])[0],
        &norm(&plain[0]),
        "an unknown model name is the default embedding model",
    );

    // Errors name the field.
    for (body, status, param) in [
        (
            json!({"texts": ["x"], "embedding_types": ["float", "int4"]}),
            400,
            "embedding_types[1]",
        ),
        (
            json!({"texts": ["x"], "embedding_types": []}),
            422,
            "embedding_types",
        ),
        (
            json!({"texts": ["x"], "truncate": "MIDDLE"}),
            400,
            "truncate",
        ),
        (
            json!({"texts": ["x"], "input_type": "image"}),
            400,
            "input_type",
        ),
        (
            json!({"images": ["data:image/png;base64,AAAA"]}),
            422,
            "images",
        ),
        (json!({"input_type": "search_query"}), 422, "texts"),
        (json!({"texts": []}), 422, "texts"),
        (json!({"texts": ["x", " "]}), 422, "texts[1]"),
        (
            json!({"texts": ["x"], "output_dimension": 0}),
            400,
            "output_dimension",
        ),
        (json!({"texts": ["x"], "max_tokens": 8}), 422, "max_tokens"),
    ] {
        s.post_json("/v2/embed", body)
            .await
            .assert_error(status, Some(param));
    }
    let r = s
        .post_json("/v2/embed", json!({"texts": ["x"], "max_tokens": 4096}))
        .await;
    assert_eq!(
        r.status, 200,
        "max_tokens at least the limit is fine: {}",
        r.body
    );
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohere_rerank_shapes() {
    let (s, dir) = server("rerank").await;
    let docs = [
        "the cat sat on the mat",
        "stocks fell sharply",
        "a cat on a mat",
    ];
    // Native /v1/rerank keeps its shape and adds relevance_score.
    let native = s
        .post_json(
            "/v1/rerank",
            json!({"model": "cross", "query": "cat", "documents": docs}),
        )
        .await;
    assert_eq!(native.status, 200, "{}", native.body);
    let native = native.json();
    let score_of = |v: &Value, i: u64| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["index"] == i)
            .unwrap_or_else(|| panic!("no result {i}: {v}"))
            .clone()
    };
    for i in 0..3 {
        let r = score_of(&native, i);
        assert!(r["document"].is_string(), "{r}");
        let rel = r["relevance_score"].as_f64().unwrap();
        assert!(
            (rel - sigmoid(r["score"].as_f64().unwrap())).abs() < 1e-5,
            "{r}"
        );
    }

    // /v2/rerank with the cross-encoder: sigmoid of the same logits, top_n, documents on request.
    let r = post_with(
            &s,
            "/v2/rerank",
            json!({"model": "cross", "query": "cat", "documents": docs, "top_n": 2, "return_documents": true}),
            &[("x-request-id", "rr-1")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["id"], "rr-1");
    assert_eq!(v["meta"]["api_version"]["version"], "2");
    assert_eq!(v["meta"]["billed_units"]["search_units"], 1);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{v}");
    assert!(results[0]["relevance_score"].as_f64() >= results[1]["relevance_score"].as_f64());
    for r in results {
        let i = r["index"].as_u64().unwrap();
        let n = score_of(&native, i);
        assert_eq!(r["document"]["text"], docs[i as usize]);
        assert!(
            (r["relevance_score"].as_f64().unwrap() - n["relevance_score"].as_f64().unwrap()).abs()
                < 1e-6
        );
        assert!(r.get("score").is_none(), "{r}");
    }

    // The bi-encoder fallback: (1 + cosine) / 2 of the embedding model's vectors.
    let r = s
        .post_json(
            "/v2/rerank",
            json!({"model": "plain", "query": "cat", "documents": docs}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let q = embed(
        &s,
        json!({"model": "plain", "inputs": ["cat"], "normalize": true}),
    )
    .await;
    let d = embed(
        &s,
        json!({"model": "plain", "inputs": docs, "normalize": true}),
    )
    .await;
    for r in v["results"].as_array().unwrap() {
        let i = r["index"].as_u64().unwrap() as usize;
        assert!(
            r.get("document").is_none(),
            "no documents unless asked: {r}"
        );
        let cos: f32 = q[0].iter().zip(&d[i]).map(|(a, b)| a * b).sum();
        let rel = r["relevance_score"].as_f64().unwrap();
        assert!(
            (rel - (1.0 + cos as f64) / 2.0).abs() < 1e-4,
            "{r} vs cos {cos}"
        );
    }

    // /v1/rerank in Cohere form: object documents, an unknown model, or Cohere's SDK header.
    for (body, headers) in [
        (
            json!({"model": "plain", "query": "cat", "documents": [{"text": docs[0]}, {"text": docs[1]}], "return_documents": true}),
            vec![],
        ),
        (
            json!({"model": "rerank-v3.5", "query": "cat", "documents": [docs[0], docs[1]], "return_documents": true}),
            vec![],
        ),
        (
            json!({"query": "cat", "documents": [docs[0], docs[1]], "return_documents": true}),
            vec![("X-Fern-SDK-Name", "cohere")],
        ),
        (
            json!({"model": "plain", "query": "cat", "documents": [docs[0], docs[1]], "rank_fields": ["text"], "return_documents": true}),
            vec![],
        ),
    ] {
        let r = post_with(&s, "/v1/rerank", body.clone(), &headers).await;
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        let v = r.json();
        assert_eq!(v["meta"]["api_version"]["version"], "1", "{body}: {v}");
        let first = &v["results"][0];
        assert!(first["relevance_score"].is_f64(), "{v}");
        assert!(first.get("score").is_none(), "{v}");
        let i = first["index"].as_u64().unwrap() as usize;
        assert_eq!(first["document"]["text"], docs[i], "{v}");
    }

    // Errors name the field.
    for (path, body, status, param) in [
        (
            "/v2/rerank",
            json!({"query": "q", "documents": ["a"], "top_n": 0}),
            422,
            "top_n",
        ),
        (
            "/v2/rerank",
            json!({"query": "", "documents": ["a"]}),
            422,
            "query",
        ),
        (
            "/v2/rerank",
            json!({"query": "q", "documents": []}),
            422,
            "documents",
        ),
        (
            "/v2/rerank",
            json!({"query": "q", "documents": ["a", {"title": "x"}]}),
            422,
            "documents[1].text",
        ),
        (
            "/v1/rerank",
            json!({"query": "q", "documents": ["a"], "rank_fields": ["title"]}),
            422,
            "rank_fields",
        ),
        (
            "/v2/rerank",
            json!({"query": "q", "documents": ["a"], "max_tokens_per_doc": 4}),
            422,
            "max_tokens_per_doc",
        ),
        ("/v2/rerank", json!({"query": "q"}), 400, "."),
    ] {
        let r = s.post_json(path, body.clone()).await;
        if param == "." {
            r.assert_error(status, None);
        } else {
            r.assert_error(status, Some(param));
        }
    }
    // The native form still refuses its unknown fields.
    s.post_json(
        "/v1/rerank",
        json!({"model": "plain", "query": "q", "documents": ["a"], "bogus": 1}),
    )
    .await
    .assert_error(400, None);
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
