//! `/v1/explain` with the pack's SmolLM2: the `detail` levels, stop strings, and code longer than
//! the model's context.

mod common;

use common::{pack, spec, TestServer};
use nlpd_runtime::BatchConfig;
use serde_json::json;

const CODE: &str = "def mean(xs):\n    return sum(xs) / len(xs)";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn detail_levels_stop_strings_and_the_context_limit() {
    let Some(smol) = pack("smollm2-135m-instruct") else {
        return;
    };
    let config = common::generation_config();
    let s = TestServer::start(
        vec![spec("smol", &smol, None)],
        BatchConfig::default(),
        None,
        config,
    )
    .await;
    let explain = |detail: &str| json!({"code": CODE, "language": "python", "detail": detail, "max_tokens": 4, "cache": false});
    let brief = s.post_json("/v1/explain", explain("brief")).await;
    assert_eq!(brief.status, 200, "{}", brief.body);
    let detailed = s.post_json("/v1/explain", explain("detailed")).await;
    assert_eq!(detailed.status, 200, "{}", detailed.body);
    let prompt = |r: &common::Resp| r.json()["usage"]["prompt_tokens"].as_u64().unwrap();
    // The detailed prompt asks for more (purpose, inputs and outputs, steps, edge cases).
    assert!(
        prompt(&detailed) > prompt(&brief) + 10,
        "{} vs {}",
        detailed.body,
        brief.body
    );
    s.post_json("/v1/explain", explain("exhaustive"))
        .await
        .assert_error(400, Some("detail"));

    // A stop string ends the explanation before it and says so.
    let r = s
        .post_json(
            "/v1/explain",
            json!({"code": CODE, "stop": [" "], "max_tokens": 64, "cache": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["finish_reason"], "stop", "{v}");
    assert!(
        !v["explanation"].as_str().unwrap().trim().contains(' '),
        "{v}"
    );
    assert!(
        v["usage"]["completion_tokens"].as_u64().unwrap() < 64,
        "{v}"
    );

    // Code longer than the model's context is refused before any compute, naming the limit.
    let huge = "total = total + 1\n".repeat(4000);
    let r = s
        .post_json("/v1/explain", json!({"code": huge, "max_tokens": 8}))
        .await;
    assert!((400..500).contains(&r.status), "{}: {}", r.status, r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("token"), "{message}");
    s.stop().await;
}
