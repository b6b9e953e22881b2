//! The OpenAPI document is the contract: schemathesis (pinned in tests/python/requirements.txt,
//! installed by scripts/test-venv.sh) reads `/openapi.json` from the real `nlpd serve` with the
//! default pack and tests every operation in all four phases (examples, coverage, fuzzing,
//! stateful), once with an API key and once without one, with every check but the two in
//! [`NOT_YET`]. Any failure (a 5xx other than the 504 of a request's own `timeout_ms`, an answer
//! the document does not describe, a wrong content type or header, a route that ignores its key,
//! a method answered without `Allow`, an answer slower than 120 s...) fails the test with
//! schemathesis' report. Settings: tests/schemathesis/schemathesis.toml.
//!
//! Bounded for CI: a fixed seed, `EXAMPLES` examples per operation and phase, and generation
//! capped by `--max-new-tokens` (the document carries the cap, so schemathesis asks for no more):
//! about 100 s per run on 2 cores.

mod common;

use common::{default_pack, repo, serve, terminate, wait_timeout, KillOnDrop, Tmp};

const EXAMPLES: &str = "8";
/// The two checks not held yet (issue 17): every schema-valid request accepted and every
/// schema-invalid one refused. They need the document derived from the request types (serde's
/// `Option` fields take `null`) and from the configured models (prompt names, hidden sizes,
/// vocabularies, token limits, which model names fit which route); the hand-written document
/// fails them today.
const NOT_YET: &str = "positive_data_acceptance,negative_data_rejection";
const SEED: &str = "20261205";
const KEY: &str = "schemathesis-key";
const RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

fn schemathesis() -> Option<std::path::PathBuf> {
    let bin = repo().join(".venv-test/bin/schemathesis");
    if bin.is_file() {
        return Some(bin);
    }
    common::missing(
        "schemathesis",
        &format!("{} (the test venv)", bin.display()),
        "scripts/test-venv.sh",
    );
    None
}

/// One schemathesis run against `url`, with `auth` as the bearer key when set.
fn run(bin: &std::path::Path, url: &str, auth: Option<&str>, report: &std::path::Path) {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--config-file")
        .arg(repo().join("tests/schemathesis/schemathesis.toml"))
        .arg("run")
        .arg(format!("{url}/openapi.json"))
        .args(["--checks", "all"])
        .args(["--exclude-checks", NOT_YET])
        .args(["--max-response-time", "120"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", EXAMPLES])
        .args(["--seed", SEED])
        // No example database: a developer's earlier runs must not change what CI generates.
        .args(["--generation-database", "none"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "120"])
        .args(["--no-color", "--output-truncate", "false"])
        .arg("--report-dir")
        .arg(report)
        .current_dir(repo())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("SCHEMATHESIS_HOOKS", "")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(key) = auth {
        cmd.args(["--header", &format!("Authorization: Bearer {key}")]);
    }
    let mut child = KillOnDrop(cmd.spawn().expect("spawn schemathesis"));
    let out = common::read_all(child.0.stdout.take().expect("piped stdout"));
    let err = common::read_all(child.0.stderr.take().expect("piped stderr"));
    let status = wait_timeout(&mut child.0, RUN_TIMEOUT);
    if status.is_none() {
        let _ = child.0.kill();
        let _ = child.0.wait();
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let which = if auth.is_some() {
        "with a key"
    } else {
        "without keys"
    };
    println!("--- schemathesis {which} ---\n{out}\n--- stderr ---\n{err}\n--- end ---");
    let status = status.unwrap_or_else(|| panic!("schemathesis {which} ran past {RUN_TIMEOUT:?}"));
    assert!(
        status.success(),
        "schemathesis {which} found failures ({status}); its report is above"
    );
    assert!(
        out.contains("passed") && !out.contains("No operations"),
        "schemathesis {which} tested nothing:\n{out}"
    );
}

fn contract(keyed: bool) {
    let Some(bin) = schemathesis() else {
        return;
    };
    if !default_pack() {
        return;
    }
    let name = if keyed { "keyed" } else { "open" };
    let tmp = Tmp::new("schemathesis", name);
    let mut args = vec!["--max-new-tokens", "8"];
    if keyed {
        args.extend(["--api-key", KEY]);
    }
    let (mut server, url) = serve(&args, &tmp.path("data"));
    let doc: serde_json::Value = serde_json::from_str(&http_get(&format!("{url}/openapi.json")))
        .expect("the document is JSON");
    let text = doc.to_string();
    assert_eq!(
        text.contains("bearerAuth"),
        keyed,
        "bearer security must be declared exactly when keys are configured"
    );
    run(&bin, &url, keyed.then_some(KEY), &tmp.path("report"));
    terminate(&mut server);
}

/// A plain HTTP GET with the test venv's Python (the tests have no HTTP client crate).
fn http_get(url: &str) -> String {
    let out = std::process::Command::new(repo().join(".venv-test/bin/python"))
        .args([
            "-c",
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())",
            url,
        ])
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .expect("run the test venv's python");
    assert!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_document_holds_with_an_api_key() {
    contract(true);
}

#[test]
fn the_document_holds_without_keys() {
    contract(false);
}
