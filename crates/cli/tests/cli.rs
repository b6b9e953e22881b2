//! The one-shot commands end to end: real binary, real models, JSONL in and out, and one clear
//! error line for each kind of bad input.

mod common;

use common::{models, pack, repo};
use serde_json::Value;
use std::io::Write;

use std::process::{Command, Output, Stdio};

fn nlpd(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nlpd"))
        .args(args)
        .env("NLPD_MODELS_DIR", models())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nlpd");
    // nlpd may exit before reading stdin (bad model): a broken pipe here is expected.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn embed_prints_a_384_d_unit_vector_per_line() {
    let Some(dir) = pack("all-MiniLM-L6-v2") else {
        return;
    };
    let out = nlpd(
        &["embed", "--model", dir.to_str().unwrap()],
        "{\"text\":\"The movie was great\"}\nplain text line\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let l = lines(&out);
    assert_eq!(l.len(), 2);
    for v in &l {
        let e: Vec<f64> = v["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(e.len(), 384);
        let n: f64 = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((n - 1.0).abs() < 1e-4);
    }
}

#[test]
fn bad_lines_get_numbered_errors_and_the_rest_still_runs() {
    let Some(_) = pack("all-MiniLM-L6-v2") else {
        return;
    };
    let input = "{\"text\":\"fine\"}\n\n{not json\n{\"text\":\"\"}\n{\"txt\":\"x\"}\n{\"text\":5}\n{\"text\":\"also fine\"}\n";
    let out = nlpd(&["embed", "--model", "minilm"], input);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let l = lines(&out);
    assert_eq!(l.len(), 7, "one output line per input line");
    assert!(l[0]["embedding"].is_array());
    assert_eq!(l[1]["line"], 2);
    assert_eq!(l[1]["error"], "empty line");
    assert_eq!(l[2]["line"], 3);
    assert!(l[2]["error"].as_str().unwrap().starts_with("invalid JSON"));
    assert_eq!(l[3]["error"], "`text` is empty");
    assert_eq!(l[4]["error"], "missing field `text`");
    assert_eq!(l[5]["error"], "`text` must be a string");
    assert!(l[6]["embedding"].is_array());
    assert!(stderr(&out).contains("line 3: invalid JSON"));
}

#[test]
fn entities_find_the_readme_example() {
    let Some(_) = pack("rampart-pii-ner") else {
        return;
    };
    let text = "My name is Alex Rivera, I live at 42 Elm Street, Springfield, reach me at alex@example.com";
    let out = nlpd(
        &["entities"],
        &format!("{}\n", serde_json::json!({"text": text})),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let l = lines(&out);
    let ents = l[0]["entities"].as_array().unwrap();
    let pairs: Vec<(String, String)> = ents
        .iter()
        .map(|e| {
            (
                e["label"].as_str().unwrap().to_string(),
                e["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("GIVEN_NAME", "Alex"),
        ("SURNAME", "Rivera"),
        ("STREET_NAME", "Elm Street"),
        ("CITY", "Springfield"),
        ("EMAIL", "alex@example.com"),
    ] {
        assert!(
            pairs.contains(&(want.0.into(), want.1.into())),
            "{want:?} not in {pairs:?}"
        );
    }
    let email = ents.iter().find(|e| e["label"] == "EMAIL").unwrap();
    assert_eq!(
        (email["start"].as_u64(), email["end"].as_u64()),
        (Some(74), Some(90))
    );
    let out = nlpd(&["entities", "--aggregation", "none"], "Alex lives here\n");
    let toks = lines(&out)[0]["tokens"].as_array().unwrap().len();
    assert_eq!(toks, 3);
}

#[test]
fn explain_streams_a_relevant_explanation() {
    let Some(_) = pack("smollm2-135m-instruct") else {
        return;
    };
    let input =
        serde_json::json!({"code": "def add(a, b):\n    return a + b", "language": "python"});
    let out = nlpd(&["explain", "--max-tokens", "48"], &format!("{input}\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        text.contains("sum") || text.contains("add"),
        "explanation: {text}"
    );
    let out = nlpd(
        &["explain", "--max-tokens", "8", "--json"],
        &format!("{input}\n"),
    );
    let l = lines(&out);
    assert_eq!(l[0]["tokens"], 8);
    assert_eq!(l[0]["finish_reason"], "length");
}

#[test]
fn model_errors_are_one_clear_line() {
    let tmp = std::env::temp_dir().join(format!("nlpd-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("gpt2")).unwrap();
    std::fs::write(
        tmp.join("gpt2/config.json"),
        r#"{"model_type":"gpt2","architectures":["GPT2LMHeadModel"]}"#,
    )
    .unwrap();
    std::fs::write(tmp.join("gpt2/model.safetensors"), b"").unwrap();
    std::fs::create_dir_all(tmp.join("empty")).unwrap();
    // A trained head (pack/sentiment's config) whose encoder is not installed.
    std::fs::create_dir_all(tmp.join("head")).unwrap();
    let head = std::fs::read_to_string(repo().join("pack/sentiment/config.json"))
        .unwrap()
        .replace("../all-MiniLM-L6-v2", "../no-such-encoder");
    std::fs::write(tmp.join("head/config.json"), head).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "embed".into(),
                "--model".into(),
                tmp.join("nope").display().to_string(),
            ],
            "not a pack model",
        ),
        (
            vec![
                "embed".into(),
                "--model".into(),
                tmp.join("empty").display().to_string(),
            ],
            "config.json is missing",
        ),
        (
            vec![
                "embed".into(),
                "--model".into(),
                tmp.join("gpt2").display().to_string(),
            ],
            "unsupported architecture `gpt2`",
        ),
        (
            vec![
                "embed".into(),
                "--model".into(),
                repo().join("README.md").display().to_string(),
            ],
            "must be a directory",
        ),
        (
            vec![
                "embed".into(),
                "--input".into(),
                tmp.join("missing.jsonl").display().to_string(),
                "--model".into(),
                repo()
                    .join("tests/golden/tiny/bert-base")
                    .display()
                    .to_string(),
            ],
            "cannot open input file",
        ),
        (
            vec![
                "classify".into(),
                "--model".into(),
                tmp.join("head").display().to_string(),
            ],
            "names the encoder `../no-such-encoder`",
        ),
        (
            vec![
                "explain".into(),
                "--model".into(),
                tmp.join("empty").display().to_string(),
            ],
            "no .gguf file",
        ),
    ];
    for (args, want) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = nlpd(&refs, "x\n");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err:?}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: one error line, got {err:?}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn classify_and_strict_mode_on_a_tiny_model() {
    let dir = repo().join("tests/golden/tiny/bert-seqcls");
    let input = "{\"text\":\"good\"}\n{\"text\":\"a\",\"text_pair\":\"b\"}\n";
    let out = nlpd(
        &["classify", "--model", dir.to_str().unwrap(), "--raw"],
        input,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for v in lines(&out) {
        let scores = v["scores"].as_object().unwrap();
        assert_eq!(scores.len(), 3);
        let total: f64 = scores.values().map(|s| s.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert!(scores.contains_key(v["label"].as_str().unwrap()));
        assert_eq!(v["logits"].as_array().unwrap().len(), 3);
    }
    let long = "word ".repeat(200);
    let out = nlpd(
        &["classify", "--model", dir.to_str().unwrap(), "--strict"],
        &format!("{long}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let l = lines(&out);
    assert!(
        l[0]["error"]
            .as_str()
            .unwrap()
            .contains("more than the model's limit of 64"),
        "{:?}",
        l[0]
    );
}

#[test]
fn models_list_and_info() {
    let out = nlpd(&["models", "list", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let l = lines(&out);
    assert_eq!(l.len(), 5);
    assert!(l
        .iter()
        .any(|m| m["name"] == "rampart-pii-ner" && m["task"] == "entities"));
    assert!(l
        .iter()
        .any(|m| m["name"] == "sentiment" && m["task"] == "classify"));
    let tiny = repo().join("tests/golden/tiny/distilbert-tokcls");
    let out = nlpd(&["models", "info", tiny.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["task"].as_str(), v["family"].as_str()),
        (Some("entities"), Some("distilbert"))
    );
    assert_eq!(v["labels"].as_array().unwrap().len(), 7);
    assert_eq!(v["max_tokens"], 64);
    assert_eq!(v["precision"], "f32");
    assert!(v["kernel"].as_str().is_some(), "{v}");
    // The precision and kernel --quantize bf16 would run on this CPU.
    let out = nlpd(
        &[
            "models",
            "info",
            tiny.to_str().unwrap(),
            "--quantize",
            "bf16",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["precision"], "bf16");
    let kernel = v["kernel"].as_str().unwrap_or_default();
    assert!(
        [
            "amx-bf16",
            "avx512-bf16",
            "avx2-fma (bf16 widened)",
            "portable bf16 (scalar)"
        ]
        .contains(&kernel),
        "{v}"
    );
    let out = nlpd(&["models", "info", "nope"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a pack model"));
}

#[test]
fn backend_and_quantize_flags_choose_the_encoder() {
    if pack("all-MiniLM-L6-v2").is_none() {
        return;
    }
    let input = "{\"text\":\"The fast path must agree with the reference graph.\"}\n";
    let vec_of = |args: &[&str]| -> Vec<f64> {
        let out = nlpd(args, input);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        lines(&out)[0]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let fast = vec_of(&["embed"]);
    let candle = vec_of(&["embed", "--backend", "candle"]);
    let int8 = vec_of(&["embed", "--quantize", "int8"]);
    let bf16 = vec_of(&["embed", "--quantize", "bf16"]);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    assert!(dot(&fast, &candle) > 0.99999, "fast vs candle");
    assert!(dot(&fast, &int8) > 0.99, "int8 vs f32");
    assert!(fast != int8, "int8 is a different computation");
    assert!(dot(&fast, &bf16) > 0.999, "bf16 vs f32");
    assert!(fast != bf16, "bf16 is a different computation");
    // Impossible combinations and unknown values are one clear line, not a panic.
    let out = nlpd(
        &["embed", "--backend", "candle", "--quantize", "int8"],
        input,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("int8 runs on the fast encoder"),
        "{}",
        stderr(&out)
    );
    let out = nlpd(&["embed", "--backend", "gpu-please"], input);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("[possible values: auto, candle, fast]"),
        "{}",
        stderr(&out)
    );
    let out = nlpd(&["embed", "--quantize", "int4"], input);
    assert!(
        stderr(&out).contains("[possible values: none, int8, bf16]"),
        "{}",
        stderr(&out)
    );
}
