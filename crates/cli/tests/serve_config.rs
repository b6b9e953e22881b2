//! `nlpd serve`'s settings, layered: defaults < the `--config` TOML file (or `NLPD_CONFIG`) <
//! NLPD_* environment < flags, seen in the effective configuration a real server prints; and a
//! bad value refused at the start, naming where it came from. The environment of each process is
//! set with `Command::env`: the tests never change their own.

mod common;

use common::{text, KillOnDrop, Tmp};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/tiny/bert-base")
}

/// `nlpd` with none of the NLPD_* variables of the settings under test inherited.
fn nlpd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nlpd"));
    for v in [
        "NLPD_CONFIG",
        "NLPD_MODELS_DIR",
        "NLPD_MAX_BATCH_SIZE",
        "NLPD_MAX_BATCH_TOKENS",
        "NLPD_MAX_QUEUE",
        "NLPD_MAX_WAIT_US",
        "NLPD_CACHE_TTL",
        "NLPD_REQUEST_TIMEOUT",
        "NLPD_SHUTDOWN_DELAY",
    ] {
        c.env_remove(v);
    }
    c.stdin(Stdio::null());
    c
}

/// Starts `cmd` (an `nlpd serve ... --port 0`), collects its stderr until the cache line of the
/// start-up (which follows the configuration line), stops it, and returns those lines.
fn startup_lines(mut cmd: Command) -> Vec<String> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nlpd serve");
    let mut child = KillOnDrop(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(60)) {
        let done = l.starts_with("nlpd: cache:");
        seen.push(l);
        if done {
            return seen;
        }
    }
    panic!(
        "nlpd serve did not print its configuration:\n{}",
        seen.join("\n")
    );
}

fn serve_cmd(extra: &[&str]) -> Command {
    let mut c = nlpd();
    c.args([
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--database-url",
        "off",
    ])
    .arg("--model")
    .arg(format!("emb={}", tiny_model().display()))
    .args(extra);
    c
}

fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{}", lines.join("\n")))
}

const FILE: &str = r#"# typed settings
max-batch-size = 8
max-queue = 100
max-wait-us = 250
cache-ttl = "10m"
request-timeout = "2m"
shutdown-delay = 0
"#;

#[test]
fn file_environment_and_flags_layer_in_that_order() {
    let tmp = Tmp::new("serve-config", "layers");
    let cfg = tmp.path("nlpd.toml");
    std::fs::write(&cfg, FILE).unwrap();
    // The file alone (and defaults for what it does not set).
    let mut cmd = serve_cmd(&["--config", cfg.to_str().unwrap()]);
    let lines = startup_lines(cmd);
    let conf = line(&lines, "nlpd: configuration:");
    for want in [
        "max_batch_size=8 ",
        "max_queue=100 ",
        "max_wait_us=250 ",
        "max_batch_tokens=16384 ",
        "request_timeout=120s ",
        "shutdown_delay=0s ",
    ] {
        assert!(conf.contains(want), "{want} in {conf}");
    }
    assert!(
        line(&lines, "nlpd: cache:").contains("ttl=600s"),
        "{lines:?}"
    );
    let report = line(&lines, "nlpd: config file");
    assert!(report.contains("max-batch-size"), "{report}");
    assert!(
        report.contains("overridden by NLPD_* or flags: none"),
        "{report}"
    );

    // The environment beats the file, a flag beats both; NLPD_CONFIG names the file.
    cmd = serve_cmd(&["--max-wait-us", "500"]);
    cmd.env("NLPD_CONFIG", &cfg)
        .env("NLPD_MAX_QUEUE", "200")
        .env("NLPD_MAX_WAIT_US", "300")
        .env("NLPD_CACHE_TTL", "30s");
    let lines = startup_lines(cmd);
    let conf = line(&lines, "nlpd: configuration:");
    for want in ["max_batch_size=8 ", "max_queue=200 ", "max_wait_us=500 "] {
        assert!(conf.contains(want), "{want} in {conf}");
    }
    assert!(
        line(&lines, "nlpd: cache:").contains("ttl=30s"),
        "{lines:?}"
    );
    let report = line(&lines, "nlpd: config file");
    assert!(
        report.contains("overridden by NLPD_* or flags: max-wait-us max-queue cache-ttl"),
        "{report}"
    );
}

/// `nlpd ARGS` with `env`: it exits 2 without starting, and stderr holds every needle.
fn refused(args: &[&str], env: &[(&str, &str)], needles: &[&str]) {
    let mut cmd = nlpd();
    cmd.args(args).envs(env.iter().copied());
    let out = cmd.output().expect("run nlpd");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?} {env:?}: `{n}` in {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_bad_setting_is_refused_naming_where_it_came_from() {
    let tmp = Tmp::new("serve-config", "bad");
    let typo = tmp.path("typo.toml");
    std::fs::write(&typo, "port = 0\nmax-batch-sise = 8\n").unwrap();
    let typo = typo.to_str().unwrap();
    let bad = tmp.path("bad.toml");
    std::fs::write(&bad, "port = 0\n\ncache-ttl = \"5 fortnights\"\n").unwrap();
    let bad = bad.to_str().unwrap();
    let model = format!("emb={}", tiny_model().display());
    let serve = ["serve", "--model", model.as_str(), "--config"];

    // In the file: the file, the line, the key.
    refused(
        &[&serve[..], &[typo]].concat(),
        &[],
        &[
            typo,
            "line 2",
            "unknown key `max-batch-sise`",
            "`max-batch-size`",
        ],
    );
    refused(
        &[&serve[..], &[bad]].concat(),
        &[],
        &[
            bad,
            "line 3",
            "`cache-ttl`",
            "unknown duration unit `fortnights`",
        ],
    );
    refused(
        &["serve"],
        &[("NLPD_CONFIG", bad)],
        &[bad, "line 3", "`cache-ttl`"],
    );
    refused(
        &[&serve[..], &["/nonexistent/nlpd.toml"]].concat(),
        &[],
        &["cannot read config file /nonexistent/nlpd.toml"],
    );
    // In the environment: the variable.
    refused(
        &["serve"],
        &[("NLPD_CACHE_TTL", "soon")],
        &["--cache-ttl", "environment variable NLPD_CACHE_TTL"],
    );
    refused(
        &["serve"],
        &[("NLPD_MAX_REQUEST_BYTES", "8 parsecs")],
        &["--max-request-bytes", "NLPD_MAX_REQUEST_BYTES"],
    );
    // On the command line: the flag.
    refused(
        &["serve", "--shutdown-delay", "soon"],
        &[],
        &["--shutdown-delay", "soon"],
    );
    refused(
        &["serve", "--cache-policy", "fifo"],
        &[],
        &["--cache-policy", "fifo"],
    );
    // `--config` belongs to serve: the other commands refuse it, as they always did.
    refused(
        &["embed", "--config", typo],
        &[],
        &["unexpected argument '--config'"],
    );
}

#[test]
fn nlpd_config_still_gives_the_other_commands_the_global_settings() {
    let tmp = Tmp::new("serve-config", "global");
    let cfg = tmp.path("nlpd.toml");
    std::fs::write(
        &cfg,
        "models-dir = \"/nonexistent/pack\"\nmax-batch-size = 8\n",
    )
    .unwrap();
    let out = nlpd()
        .args(["models", "list", "--json"])
        .env("NLPD_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("\"/nonexistent/pack/"), "{stdout}");
    // The environment still beats the file.
    let out = nlpd()
        .args(["models", "list", "--json"])
        .env("NLPD_CONFIG", &cfg)
        .env("NLPD_MODELS_DIR", "/elsewhere")
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("\"/elsewhere/"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn serve_help_says_the_precedence() {
    common::assert_help(
        "serve",
        &[
            "defaults < --config file < NLPD_* environment < flags",
            "--config <CONFIG>",
            "--cache-ttl <CACHE_TTL>",
            "[env: NLPD_CACHE_TTL=",
        ],
    );
}
