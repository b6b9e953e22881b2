//! `/v1/nli` without an NLI cross-encoder: the pack's instruct LM judges each pair from its
//! next-token probabilities of the answer words, in one forward pass per pair.

mod common;

use common::{pack, spec, tiny, TestServer};
use nlpd_engine::generate::{find_gguf, GenModel, JudgePrompt, NliJudge, NLI_LABELS};
use nlpd_runtime::BatchConfig;
use serde_json::{json, Value};

const PAIRS: [(&str, &str); 2] = [
    (
        "A man is playing a guitar on stage.",
        "A man is playing an instrument.",
    ),
    (
        "The store closes at 9 pm every day.",
        "The store is open all night.",
    ),
];

fn scores(result: &Value) -> [f32; 3] {
    let s = &result["scores"];
    NLI_LABELS.map(|l| {
        s[l].as_f64()
            .unwrap_or_else(|| panic!("no {l} score: {result}")) as f32
    })
}

async fn loaded(s: &TestServer, name: &str) -> bool {
    let models = s.get("/v1/models").await.json();
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {models}"))["loaded"]
        == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_instruct_model_judges_pairs_when_no_nli_model_is_configured() {
    let Some(smol) = pack("smollm2-135m-instruct") else {
        return;
    };
    let specs = vec![spec("smollm2", &smol, None)];
    let config = common::generation_config();
    let s = TestServer::start(specs, BatchConfig::default(), None, config).await;
    let body = json!({"pairs": PAIRS.map(|(p, h)| json!({"premise": p, "hypothesis": h}))});
    let r = s.post_json("/v1/nli", body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(first.len(), 2);

    // The worker's scores are the engine judge's (batched pass), computed here directly on the
    // same model.
    let mut model = GenModel::load(&find_gguf(&smol).unwrap()).unwrap();
    let mut judge = NliJudge::new(&model, JudgePrompt::TrueFalse).unwrap();
    let direct = judge
        .scores_batch(&mut model, &PAIRS, &mut || true)
        .unwrap();
    for ((result, (p, h)), want) in first.iter().zip(PAIRS).zip(direct) {
        let got = scores(result);
        assert!((got.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{result}");
        let best = (0..3).fold(0, |b, i| if got[i] > got[b] { i } else { b });
        assert_eq!(result["label"], NLI_LABELS[best], "{result}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{p} / {h}: {got:?} vs {want:?}");
        }
    }
    // No sampling: the same pairs get the same scores.
    let again = s.post_json("/v1/nli", body).await.json()["results"].clone();
    for (a, b) in first.iter().zip(again.as_array().unwrap()) {
        assert_eq!(scores(a), scores(b));
    }

    s.post_json(
        "/v1/nli",
        json!({"pairs": [{"premise": " ", "hypothesis": "x"}]}),
    )
    .await
    .assert_error(422, Some("pairs"));
    s.post_json("/v1/nli", json!({"pairs": []}))
        .await
        .assert_error(422, Some("pairs"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_configured_cross_encoder_wins_unless_the_request_names_the_judge() {
    let Some(smol) = pack("smollm2-135m-instruct") else {
        return;
    };
    // A tiny sequence classifier relabelled as NLI stands in for a real cross-encoder.
    let dir = std::env::temp_dir().join(format!("nlpd-judge-test-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let src = tiny("bert-seqcls");
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["id2label"] = json!({"0": "ENTAILMENT", "1": "NEUTRAL", "2": "CONTRADICTION"});
    cfg["label2id"] = json!({"ENTAILMENT": 0, "NEUTRAL": 1, "CONTRADICTION": 2});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let specs = vec![spec("smollm2", &smol, None), spec("tiny-nli", &dir, None)];
    let config = common::generation_config();
    let s = TestServer::start(specs, BatchConfig::default(), None, config).await;
    let pair = json!([{"premise": PAIRS[0].0, "hypothesis": PAIRS[0].1}]);
    let r = s.post_json("/v1/nli", json!({ "pairs": pair })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(loaded(&s, "tiny-nli").await && !loaded(&s, "smollm2").await);
    let r = s
        .post_json("/v1/nli", json!({"model": "smollm2", "pairs": pair}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(loaded(&s, "smollm2").await);
    s.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}
