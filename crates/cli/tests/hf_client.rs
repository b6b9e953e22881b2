//! Hugging Face's `huggingface_hub.InferenceClient`, unchanged, against the real `nlpd serve`
//! (what LangChain's and LlamaIndex's Hugging Face / TEI integrations call): feature-extraction
//! and sentence-similarity on `POST /`, and on `POST /models/{name}` text-classification
//! (`top_k`, `function_to_apply`), token-classification (`aggregation_strategy`) and
//! text-generation (plain, details, streamed, the retry without unsupported parameters); TEI's
//! `/similarity` and `/decode`; the errors. The checks live in tests/python/hf_client_check.py;
//! the client is pinned in tests/python/requirements.txt and installed by scripts/test-venv.sh.
//! The server is stopped with SIGTERM at the end (no drain delay) and must exit 0.

mod common;

use common::{missing, models, read_all, repo, wait_timeout, KillOnDrop};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Models the checks need: one per task, as `nlpd serve` names them (their directories).
const NEEDED_MODELS: &[&str] = &[
    "all-MiniLM-L6-v2",
    "sentiment",
    "rampart-pii-ner",
    "smollm2-135m-instruct",
];

/// Where the server keeps its default prediction store during this test.
fn data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nlpd-hf-test-{}", std::process::id()))
}

/// Starts `nlpd serve --port 0 --host 127.0.0.1` and returns it with its base URL once it prints
/// `listening on http://ADDR`. Its stderr goes to the test's; stdout keeps being drained (and
/// echoed) by a thread so the server never blocks on a full pipe.
fn start_server() -> (KillOnDrop, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_nlpd"))
        .args(["serve", "--port", "0", "--host", "127.0.0.1"])
        // The suite runs tests side by side on 2 cores: a generation may wait well past the
        // default 30 s deadline here, which would turn this compatibility check into a 504.
        .args(["--request-timeout", "300"])
        .env("NLPD_MODELS_DIR", models())
        // The default prediction store (a SQLite file) goes to a temporary data dir, not the tree.
        .env("NLPD_DATA_DIR", data_dir())
        // SIGTERM at the end: exit without the drain delay.
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
fn hugging_face_inference_client_works_against_nlpd_serve() {
    let repo = repo();
    let python = repo.join(".venv-test/bin/python");
    if !python.is_file() {
        missing(
            "hf_client",
            &format!("{} (the test venv)", python.display()),
            "scripts/test-venv.sh",
        );
        return;
    }
    for m in NEEDED_MODELS {
        let dir = models().join(m);
        if !dir.join(".nlpd-pack.json").is_file() {
            missing(
                "hf_client",
                &format!("model {}", dir.display()),
                "make models",
            );
            return;
        }
    }
    let script = repo.join("tests/python/hf_client_check.py");
    assert!(script.is_file(), "{} not found", script.display());

    let (mut server, url) = start_server();
    eprintln!("nlpd serve is up at {url}; running {}", script.display());

    let mut check = KillOnDrop(
        Command::new(&python)
            .arg(&script)
            .arg(&url)
            .current_dir(&repo)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            // The server is local: never send these requests through a proxy.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            // No Hugging Face token or settings of the machine's user, no telemetry.
            .env_remove("HF_TOKEN")
            .env_remove("HUGGING_FACE_HUB_TOKEN")
            .env("HF_HOME", data_dir().join("hf-home"))
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
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
    println!("--- hf_client_check.py stdout ---\n{out}--- stderr ---\n{err}--- end ---");
    let status = status.unwrap_or_else(|| panic!("hf_client_check.py ran past {CHECK_TIMEOUT:?}"));
    assert!(
        status.success(),
        "hf_client_check.py failed ({status}):\n{}",
        out.lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect::<Vec<_>>()
            .join("\n")
    );

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
    assert!(
        data_dir().join("nlpd.db").is_file(),
        "nlpd serve keeps its default store in --data-dir"
    );
    let _ = std::fs::remove_dir_all(data_dir());
}
