//! `nlpd serve` and the stop signals, as Kubernetes, podman and a person at a terminal send them:
//! the first SIGTERM drains (503 on /health/ready while still serving for --shutdown-delay) and
//! exits 0; a second signal exits at once with status 1.

mod common;

use common::{wait_timeout, KillOnDrop};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/tiny/bert-base")
}

/// `nlpd serve` of a tiny model with the given drain delay; returns it and its address once it
/// prints `listening on http://ADDR`. Its stderr is collected by the returned thread.
fn serve(delay: &str, extra: &[&str]) -> (KillOnDrop, String, thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nlpd"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .arg("--model")
        .arg(format!("emb={}", tiny_model().display()))
        .args(["--database-url", "off", "--shutdown-delay", delay])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nlpd serve");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("listening on http://") {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("nlpd serve did not print `listening on` within 60 s");
    (KillOnDrop(child), addr, err)
}

/// One HTTP/1.1 request; the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -{sig} failed");
}

/// Polls /health/ready until it answers 503 (bounded).
fn wait_draining(addr: &str) -> String {
    for _ in 0..100 {
        let (status, body) = http(addr, "GET", "/health/ready", "");
        if status == 503 {
            return body;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("/health/ready never answered 503 after SIGTERM");
}

#[test]
fn sigterm_drains_for_the_delay_then_exits_zero() {
    let (mut server, addr, err) = serve("1s", &["--log-format", "json"]);
    assert_eq!(http(&addr, "GET", "/health/ready", "").0, 200);
    let sent = Instant::now();
    signal(&server.0, "TERM");
    let body = wait_draining(&addr);
    assert!(body.contains("\"draining\""), "{body}");
    let (status, body) = http(&addr, "POST", "/v1/embed", r#"{"inputs":"still here"}"#);
    assert_eq!(status, 200, "served during the drain delay: {body}");
    let status =
        wait_timeout(&mut server.0, Duration::from_secs(30)).expect("exit within 30 s of SIGTERM");
    let took = sent.elapsed();
    let err = err.join().unwrap();
    assert!(status.success(), "exit status {status}; stderr:\n{err}");
    assert!(
        took >= Duration::from_secs(1),
        "exited {took:?} after SIGTERM, before the 1 s delay"
    );
    assert!(
        err.contains("SIGTERM: draining"),
        "stderr says what happens: {err}"
    );
    // --log-format json: the drain's log events are JSON objects, and no ANSI escapes reach a
    // stderr that is not a terminal.
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escapes in a piped stderr: {err:?}"
    );
    let events: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        events.iter().any(|e| e["level"] == "WARN"
            && e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("draining"))),
        "no JSON drain event in: {err}"
    );
}

#[test]
fn a_second_signal_stops_at_once() {
    let (mut server, addr, err) = serve("60s", &[]);
    signal(&server.0, "TERM");
    wait_draining(&addr);
    let sent = Instant::now();
    signal(&server.0, "INT");
    let status = wait_timeout(&mut server.0, Duration::from_secs(10))
        .expect("a second signal stops the server within 10 s, not after the 60 s delay");
    let err = err.join().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "stderr:\n{err}");
    assert!(err.contains("SIGINT again: stopping now"), "{err}");
}
