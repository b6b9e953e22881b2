//! No body a client can send makes the server fail: every route answers malformed, mistyped,
//! empty, huge or odd input with a 4xx JSON error (or a 200), never a 500 or a hang.

mod common;

use common::*;
use nlpd_runtime::BatchConfig;
use nlpd_server::ServerConfig;
use std::time::Duration;

const POST_ROUTES: &[&str] = &[
    "/v1/embed",
    "/v1/embeddings",
    "/v1/classify",
    "/v1/entities",
    "/v1/nli",
    "/v1/rerank",
    "/v2/embed",
    "/v2/rerank",
    "/v1/analyze",
    "/v1/tokenize",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/explain",
    "/embed",
    "/rerank",
    "/predict",
    "/tokenize",
    "/similarity",
    "/decode",
    "/",
    "/models/emb",
    "/models/cls",
    "/models/tok",
    "/models/nope",
    "/v1/models/emb/load",
    "/v1/models/%2e%2e/load",
];

fn bodies() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "null",
        "true",
        "0",
        "-1",
        "1e309",
        "\"text\"",
        "[]",
        "{}",
        "[[[]]]",
        "{\"inputs\": null}",
        "{\"inputs\": {}}",
        "{\"inputs\": [[]]}",
        "{\"inputs\": [null]}",
        "{\"inputs\": [\"\\u0000\"]}",
        "{\"inputs\": \"\\ud800\"}",
        "{\"inputs\": 18446744073709551616}",
        "{\"inputs\": \"x\", \"dimensions\": -5}",
        "{\"inputs\": \"x\", \"dimensions\": 0}",
        "{\"inputs\": \"x\", \"top_k\": 99999999999}",
        "{\"input\": []}",
        "{\"messages\": [{\"role\": \"user\"}]}",
        "{\"messages\": [{\"role\": 5, \"content\": \"x\"}]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 0}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": -1}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_p\": 0}",
        "{\"prompt\": \"\"}",
        "{\"code\": \"   \"}",
        "{\"query\": \"\", \"documents\": [\"a\"]}",
        "{\"query\": \"q\", \"documents\": []}",
        "{\"pairs\": [{\"premise\": \"a\"}]}",
        "{\"texts\": \"a\", \"query\": 1}",
        "{\"inputs\": [\"a\", [\"b\"]]}",
        "{\"inputs\": [\"a\", [\"b\", \"c\", \"d\"]]}",
        "{\"tasks\": []}",
        "{\"texts\": [\"a\"], \"embedding_types\": [\"int4\", 3]}",
        "{\"texts\": [\"a\"], \"truncate\": \"MIDDLE\", \"input_type\": \"image\"}",
        "{\"texts\": [\" \"], \"truncate\": \"START\", \"output_dimension\": 0}",
        "{\"texts\": [\"a\"], \"images\": [\"data:x\"], \"max_tokens\": 1}",
        "{\"query\": \"q\", \"documents\": [{\"x\": 1}], \"rank_fields\": [\"title\"]}",
        "{\"query\": \"q\", \"documents\": [\"a\", {\"text\": 5}], \"top_n\": 0}",
        "{\"query\": \"q\", \"documents\": [\"a\"], \"model\": \"rerank-v3.5\", \"max_tokens_per_doc\": 1}",
        "{\"inputs\": \"x\", \"prompt_name\": \"nope\", \"prompt\": \"q: \"}",
        "{\"inputs\": \"x\", \"prompt\": \"query: \", \"truncation_direction\": \"left\"}",
        "{\"input\": \"x\", \"prompt_name\": \"nope\"}",
        "\u{feff}{}",
        "{\"inputs\": \"x\"",
        "{\"inputs\": \"x\"}}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!(
        "{{\"inputs\": [{}]}}",
        vec!["\"w\""; 5000].join(",")
    ));
    v.push(format!("{{\"inputs\": \"{}\"}}", "word ".repeat(20_000)));
    v.push(format!("{{\"inputs\": \"{}\"}}", "🙂".repeat(3000)));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_never_yields_a_500() {
    let specs = vec![
        spec("emb", &tiny("bert-base"), None),
        spec("cls", &tiny("distilbert-seqcls"), None),
        spec("tok", &tiny("xlm-roberta-tokcls"), None),
    ];
    let config = ServerConfig {
        max_request_bytes: 200_000,
        ..ServerConfig::default()
    };
    let s = TestServer::start(specs, BatchConfig::default(), None, config).await;
    let mut checked = 0;
    for route in POST_ROUTES {
        for body in bodies() {
            let r = tokio::time::timeout(
                Duration::from_secs(20),
                request(s.addr, "POST", route, Some(&body), &[]),
            )
            .await
            .unwrap_or_else(|_| panic!("{route} hung on {:.80}", body));
            assert!(
                r.status < 500 || r.status == 503,
                "{route} answered {} to {:.80}: {}",
                r.status,
                body,
                r.body
            );
            if r.status >= 400 {
                let v: serde_json::Value = serde_json::from_str(&r.body)
                    .unwrap_or_else(|_| panic!("{route} {}: not JSON: {}", r.status, r.body));
                assert!(v["error"]["message"].is_string(), "{route}: {}", r.body);
            }
            checked += 1;
        }
    }
    eprintln!("{checked} odd requests answered without a server error");
    assert_eq!(s.get("/health/live").await.status, 200);
    s.stop().await;
}
