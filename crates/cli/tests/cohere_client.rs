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

use common::{missing, models, pack, read_all, repo, wait_timeout, KillOnDrop, Tmp};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Starts `nlpd serve` on a free port and returns it with its base URL once it prints
/// `listening on http://ADDR`; stdout keeps being drained (and echoed) by a thread.
fn start_server(minilm: &Path, e5: &Path, data: &Path) -> (KillOnDrop, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_nlpd"))
        .args(["serve", "--port", "0", "--host", "127.0.0.1"])
        .args(["--request-timeout", "300"])
        .args(["--model", &model_arg("all-MiniLM-L6-v2", minilm, "embed")])
        .args(["--model", &model_arg("e5", e5, "embed")])
        .args([
            "--model",
            &model_arg("cross", &tiny("bert-crossenc"), "rerank"),
        ])
        .args(["--default-prompt", "e5=query"])
        .env("NLPD_MODELS_DIR", models())
        .env("NLPD_DATA_DIR", data)
        .env("NLPD_SHUTDOWN_DELAY", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn nlpd serve");
    let mut server = KillOnDrop(child);
    let stdout = server.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("[nlpd stdout] {line}");
            if !sent {
                if let Some(url) = line.trim().strip_prefix("listening on ") {
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                    sent = true;
                }
            }
        }
    });
    match rx.recv_timeout(LISTEN_TIMEOUT) {
        Ok(url) => (server, url),
        Err(_) => {
            let status = server.0.try_wait().ok().flatten();
            panic!(
                "nlpd serve did not print `listening on ...` within {LISTEN_TIMEOUT:?} (exited: {status:?}; see its stderr above)"
            );
        }
    }
}

#[test]
fn official_cohere_python_sdk_works_against_nlpd_serve() {
    let repo = repo();
    let python = repo.join(".venv-test/bin/python");
    if !python.is_file() {
        missing(
            "cohere_client",
            &format!("{} (the test venv)", python.display()),
            "scripts/test-venv.sh",
        );
        return;
    }
    let Some(minilm) = pack("all-MiniLM-L6-v2") else {
        return;
    };
    let script = repo.join("tests/python/cohere_client_check.py");
    assert!(script.is_file(), "{} not found", script.display());
    let tmp = Tmp::new("cohere", "serve");
    let e5 = prompted_model(&tmp);
    let data = tmp.path("data");

    let (mut server, url) = start_server(&minilm, &e5, &data);
    eprintln!("nlpd serve is up at {url}; running {}", script.display());

    let mut check = KillOnDrop(
        Command::new(&python)
            .arg(&script)
            .arg(&url)
            .current_dir(&repo)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            // The server is local: never through a proxy; and no Cohere key or URL from outside.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env_remove("CO_API_URL")
            .env_remove("CO_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn .venv-test/bin/python"),
    );
    let out = read_all(check.0.stdout.take().unwrap());
    let err = read_all(check.0.stderr.take().unwrap());
    let status = wait_timeout(&mut check.0, CHECK_TIMEOUT);
    if status.is_none() {
        let _ = check.0.kill();
        let _ = check.0.wait();
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    println!("--- cohere_client_check.py stdout ---\n{out}--- stderr ---\n{err}--- end ---");
    let status =
        status.unwrap_or_else(|| panic!("cohere_client_check.py ran past {CHECK_TIMEOUT:?}"));
    assert!(
        status.success(),
        "cohere_client_check.py failed ({status}):\n{}",
        out.lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.contains("all 9 checks passed"), "{out}");

    // Graceful shutdown: SIGTERM, in-flight work finishes, exit 0.
    let pid = server.0.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM {pid} failed: {kill}");
    let status = wait_timeout(&mut server.0, SHUTDOWN_TIMEOUT).unwrap_or_else(|| {
        panic!("nlpd serve did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM")
    });
    assert!(
        status.success(),
        "nlpd serve exited with {status} after SIGTERM, expected 0"
    );
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
