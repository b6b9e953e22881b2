//! The official `cohere` Python SDK, unchanged, against the real `nlpd serve`: `ClientV2.embed`
//! (every `embedding_types`, `input_type` mapped to the model's prompts, `truncate`,
//! `output_dimension`, `meta.billed_units`), `ClientV2.rerank` and `Client.rerank` (Cohere's form
//! of `/v1/rerank`), and errors. The checks live in tests/python/cohere_client_check.py; the SDK is
//! pinned in tests/python/requirements.txt and installed by scripts/test-venv.sh.
//!
//! The server serves the pack's MiniLM (the default embedding model), a tiny BERT with e5-style
//! prompts and `--default-prompt e5=query`, and a tiny cross-encoder (the default rerank model).
//! It is stopped with SIGTERM at the end (no drain delay) and must exit 0.
//! Also here: `nlpd embed --prompt-name/--prompt` and `nlpd serve --default-prompt` refusals.

mod common;

use common::{models, pack, python_check, repo, serve, terminate, test_python, Tmp};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn tiny(name: &str) -> PathBuf {
    repo().join("tests/golden/tiny").join(name)
}

/// A copy of the tiny BERT encoder with e5-style prompts (no default prompt in the file).
fn prompted_model(tmp: &Tmp) -> PathBuf {
    let dir = tmp.path("e5");
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

fn model_arg(name: &str, path: &Path, task: &str) -> String {
    format!("{name}={}:{task}", path.display())
}

#[test]
fn official_cohere_python_sdk_works_against_nlpd_serve() {
    let Some(python) = test_python("cohere_client") else {
        return;
    };
    let Some(minilm) = pack("all-MiniLM-L6-v2") else {
        return;
    };
    let tmp = Tmp::new("cohere", "serve");
    let e5 = prompted_model(&tmp);
    let models = [
        model_arg("all-MiniLM-L6-v2", &minilm, "embed"),
        model_arg("e5", &e5, "embed"),
        model_arg("cross", &tiny("bert-crossenc"), "rerank"),
    ];
    let mut args = Vec::new();
    for m in &models {
        args.extend(["--model", m.as_str()]);
    }
    args.extend(["--default-prompt", "e5=query"]);
    let (mut server, url) = serve(&args, &tmp.path("data"));
    // No Cohere key or URL from outside.
    let out = python_check(
        &python,
        "cohere_client_check.py",
        &url,
        &[],
        &["CO_API_URL", "CO_API_KEY"],
    );
    assert!(out.contains("all 9 checks passed"), "{out}");
    // Graceful shutdown: SIGTERM, in-flight work finishes, exit 0.
    terminate(&mut server);
}

fn embed_lines(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_nlpd"))
        .arg("embed")
        .args(args)
        .env("NLPD_MODELS_DIR", models())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nlpd embed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("nlpd embed")
}

fn vector(out: &std::process::Output) -> Vec<f64> {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nlpd embed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    v["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// `nlpd embed --prompt-name / --prompt` put the model's prompt before each text, like the server.
#[test]
fn embed_command_takes_prompts() {
    let tmp = Tmp::new("cohere", "cli");
    let e5 = prompted_model(&tmp);
    let model = e5.display().to_string();
    let line = "{\"text\": \"the cat sat\"}\n";
    let bare = vector(&embed_lines(&["--model", &model], line));
    let named = vector(&embed_lines(
        &["--model", &model, "--prompt-name", "query"],
        line,
    ));
    let literal = vector(&embed_lines(
        &["--model", &model, "--prompt", "query: "],
        line,
    ));
    let by_hand = vector(&embed_lines(
        &["--model", &model],
        "{\"text\": \"query: the cat sat\"}\n",
    ));
    assert_eq!(
        named, by_hand,
        "--prompt-name query = the text with `query: `"
    );
    assert_eq!(literal, by_hand, "--prompt `query: `");
    assert_ne!(named, bare, "the prompt changes the vector");
    let out = embed_lines(&["--model", &model, "--prompt-name", "nope"], line);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "unknown prompt name accepted");
    assert!(
        err.contains("no prompt named `nope`") && err.contains("document, query"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // `serve --default-prompt` refuses a prompt the model lacks, or a model not served.
    for (flag, needle) in [
        ("e5=nope", "no prompt named `nope`"),
        ("other=query", "no model is named `other`"),
        ("e5", "expected MODEL=PROMPT_NAME"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_nlpd"))
            .args(["serve", "--port", "0", "--host", "127.0.0.1"])
            .args(["--model", &model_arg("e5", &e5, "embed")])
            .args(["--default-prompt", flag])
            .env("NLPD_DATA_DIR", tmp.path("data"))
            .stdin(Stdio::null())
            .output()
            .expect("nlpd serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--default-prompt {flag} accepted");
        assert!(err.contains(needle), "--default-prompt {flag}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
