//! `response_format` on `/v1/chat/completions` and `/v1/completions` with the pack's SmolLM2:
//! answers constrained to JSON schemas (nested objects, enums, arrays) parse and validate, greedy
//! and sampled, streamed or not; constrained and free answers never share a cache entry; bad
//! formats and schemas are 400s naming the field; `/v1/explain` refuses the field.

mod common;
#[path = "../../engine/tests/support/json_schema.rs"]
mod json_schema;

use common::{pack, spec, TestServer};
use json_schema::{check, inventory_schema, person_schema};
use nlpd_runtime::{BatchConfig, CacheConfig};
use nlpd_server::ServerConfig;
use serde_json::{json, Value};

fn format(name: &str, schema: &Value) -> Value {
    json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": true}})
}

fn chat(content: &str, response_format: Value, extra: Value) -> Value {
    let mut body = json!({
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 200,
        "response_format": response_format,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// The text of a streamed chat answer, and its finish reason.
fn streamed_chat(r: &common::Resp) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.body);
    let mut text = String::new();
    let mut finish = String::new();
    for d in r.sse_data() {
        if d == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&d).unwrap_or_else(|e| panic!("{e}: {d}"));
        assert!(v.get("error").is_none(), "{v}");
        let c = &v["choices"][0];
        if let Some(t) = c["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if let Some(f) = c["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    (text, finish)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn response_format_constrains_chat_and_completions() {
    let Some(smol) = pack("smollm2-135m-instruct") else {
        return;
    };
    let config = ServerConfig {
        cache: Some(CacheConfig::default()),
        ..common::generation_config()
    };
    let s = TestServer::start(
        vec![spec("smol", &smol, None)],
        BatchConfig::default(),
        None,
        config,
    )
    .await;
    let person = person_schema();
    let ask = "Describe a fictional software engineer as JSON: name, age, role, skills, address.";

    // Greedy: valid JSON, finish "stop".
    let r = s
        .post_json(
            "/v1/chat/completions",
            chat(ask, format("person", &person), json!({"temperature": 0})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    let greedy = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    check(&person, &greedy);

    // The same request without the format is prose: a cache hit on the constrained answer
    // would return JSON here (the constraint is part of the cache key).
    let free = s
        .post_json(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": ask}], "max_tokens": 40, "temperature": 0}),
        )
        .await;
    assert_eq!(free.status, 200, "{}", free.body);
    let free_text = free.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        serde_json::from_str::<Value>(&free_text).is_err(),
        "{free_text:?}"
    );
    // `text` is no constraint at all: the same answer as no format.
    let text = s
        .post_json(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": ask}], "max_tokens": 40, "temperature": 0,
                   "response_format": {"type": "text"}, "cache": false}),
        )
        .await;
    assert_eq!(
        text.json()["choices"][0]["message"]["content"],
        free_text.as_str()
    );

    // Streamed greedy: the same text as the whole answer, validated.
    let r = s
        .post_json(
            "/v1/chat/completions",
            chat(
                ask,
                format("person", &person),
                json!({"temperature": 0, "stream": true}),
            ),
        )
        .await;
    let (streamed, finish) = streamed_chat(&r);
    assert_eq!(finish, "stop");
    assert_eq!(streamed, greedy);

    // Temperature 1 with a seed, streamed and not: valid, and the seed reproduces it.
    let inventory = inventory_schema();
    let ask_fruit = "List the fruit in my basket as JSON: fruit, count and whether it is ripe.";
    for seed in [7, 11] {
        let extra = json!({"temperature": 1.0, "seed": seed, "cache": false});
        let r = s
            .post_json(
                "/v1/chat/completions",
                chat(ask_fruit, format("basket", &inventory), extra.clone()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        let whole = v["choices"][0]["message"]["content"].as_str().unwrap();
        check(&inventory, whole);
        let mut stream = extra.clone();
        stream["stream"] = json!(true);
        let r = s
            .post_json(
                "/v1/chat/completions",
                chat(ask_fruit, format("basket", &inventory), stream),
            )
            .await;
        let (streamed, finish) = streamed_chat(&r);
        assert_eq!(finish, "stop");
        assert_eq!(streamed, whole, "seed {seed}");
    }

    // json_object: any JSON object.
    let r = s
        .post_json(
            "/v1/chat/completions",
            chat(
                "Describe a cat in JSON.",
                json!({"type": "json_object"}),
                json!({"temperature": 0, "max_tokens": 150}),
            ),
        )
        .await;
    let v = r.json();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    if v["choices"][0]["finish_reason"] == "stop" {
        let parsed: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {v}"));
        assert!(parsed.is_object(), "{v}");
    } else {
        assert!(content.trim_start().starts_with('{'), "{v}");
    }

    // Completions: the same constraint on raw text, streamed and not.
    let completion = json!({
        "prompt": "A JSON record of a basket of fruit:\n",
        "max_tokens": 200,
        "temperature": 0,
        "response_format": format("basket", &inventory),
    });
    let r = s.post_json("/v1/completions", completion.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    let whole = v["choices"][0]["text"].as_str().unwrap().to_string();
    check(&inventory, &whole);
    let mut stream = completion.clone();
    stream["stream"] = json!(true);
    let r = s.post_json("/v1/completions", stream).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut streamed = String::new();
    for d in r.sse_data().into_iter().filter(|d| d != "[DONE]") {
        let v: Value = serde_json::from_str(&d).unwrap();
        streamed.push_str(v["choices"][0]["text"].as_str().unwrap_or(""));
    }
    assert_eq!(streamed, whole);

    // max_tokens before the JSON is complete: "length", an unfinished prefix.
    let r = s
        .post_json(
            "/v1/chat/completions",
            chat(
                ask,
                format("person", &person),
                json!({"temperature": 0, "max_tokens": 5}),
            ),
        )
        .await;
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 5, "{v}");
    let cut = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(greedy.starts_with(cut), "{cut:?} vs {greedy:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_formats_and_schemas_are_400s_naming_the_field() {
    let Some(smol) = pack("smollm2-135m-instruct") else {
        return;
    };
    let s = TestServer::start(
        vec![spec("smol", &smol, None)],
        BatchConfig::default(),
        None,
        common::generation_config(),
    )
    .await;
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let post = |route: &'static str, body: Value| {
        let s = &s;
        async move { s.post_json(route, body).await }
    };
    // An unknown type.
    let r = post(
        "/v1/chat/completions",
        json!({"messages": msgs, "response_format": {"type": "xml"}}),
    )
    .await;
    let m = r.assert_error(400, Some("response_format.type"));
    assert!(m.contains("xml") && m.contains("json_schema"), "{m}");
    // json_schema without its object, or without a schema.
    post(
        "/v1/chat/completions",
        json!({"messages": msgs, "response_format": {"type": "json_schema"}}),
    )
    .await
    .assert_error(400, Some("response_format.json_schema"));
    post(
        "/v1/completions",
        json!({"prompt": "hi", "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
    )
    .await
    .assert_error(400, Some("response_format.json_schema.schema"));
    // Invalid schemas: llguidance's message, the schema field named, on both routes, streamed
    // requests included (refused before the stream starts).
    for (route, body) in [
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "response_format": format("x", &json!({"type": "nonsense"}))}),
        ),
        (
            "/v1/completions",
            json!({"prompt": "hi", "stream": true, "response_format": format("x", &json!({"type": "nonsense"}))}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "stream": true,
                   "response_format": format("x", &json!({"$ref": "#/$defs/missing"}))}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "response_format": format("x", &json!(["not", "a", "schema"]))}),
        ),
    ] {
        let r = post(route, body.clone()).await;
        let m = r.assert_error(400, Some("response_format.json_schema.schema"));
        assert!(m.contains("response_format.json_schema.schema"), "{m}");
    }
    // /v1/explain has no structured output.
    post(
        "/v1/explain",
        json!({"code": "x = 1", "response_format": {"type": "json_object"}}),
    )
    .await
    .assert_error(400, Some("response_format"));
    s.stop().await;
}
