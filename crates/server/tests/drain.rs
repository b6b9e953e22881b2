//! Graceful drain: after the stop signal `/health/ready` answers 503 while requests are still
//! served (with `Connection: close`) for the shutdown delay; then the listener closes, and
//! requests still in flight after the shutdown timeout are cut off instead of holding the exit.

mod common;

use common::{spec, tiny, TestServer};
use nlpd_runtime::BatchConfig;
use nlpd_server::ServerConfig;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive request (the harness's client always asks for `Connection: close`, which
/// would hide the server's own choice): the status line and the headers, lower-cased.
async fn keep_alive_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    // The server closes the connection after this response when it drains; otherwise read
    // until the body's declared length has arrived.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("response within 30 s")
            .expect("read");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|len| raw.len() >= end + 4 + len) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_answers_not_ready_keeps_serving_for_the_delay_then_closes() {
    let delay = Duration::from_millis(1500);
    let config = ServerConfig {
        shutdown_delay: delay,
        ..ServerConfig::default()
    };
    let mut s = TestServer::start(
        vec![spec("emb", &tiny("bert-base"), None)],
        BatchConfig::default(),
        None,
        config,
    )
    .await;
    let addr = s.addr;
    assert_eq!(s.get("/health/ready").await.status, 200);
    let (status, head) = keep_alive_post(addr, "/v1/embed", r#"{"inputs":"before"}"#).await;
    assert_eq!(status, 200);
    assert!(
        !head.contains("connection: close"),
        "a keep-alive request is kept alive while serving normally: {head}"
    );
    let metrics = s.get("/metrics").await.body;
    assert!(metrics.contains("nlpd_draining 0"), "{metrics}");

    let stopped_at = Instant::now();
    let server = s.trigger_stop();
    // Readiness turns at once (well within the delay).
    let mut ready = s.get("/health/ready").await;
    for _ in 0..50 {
        if ready.status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        ready = s.get("/health/ready").await;
    }
    assert_eq!(ready.status, 503, "{}", ready.body);
    let body = ready.json();
    assert_eq!(body["status"], "draining", "{body}");
    assert!(
        body["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("draining")),
        "{body}"
    );
    assert!(
        stopped_at.elapsed() < delay,
        "503 came after the delay ({:?}): the test proves nothing",
        stopped_at.elapsed()
    );
    // Still serving, and telling keep-alive clients to go elsewhere.
    let (status, head) = keep_alive_post(addr, "/v1/embed", r#"{"inputs":"during"}"#).await;
    assert_eq!(status, 200, "requests during the delay are served");
    assert!(head.contains("connection: close"), "{head}");
    let metrics = s.get("/metrics").await.body;
    assert!(metrics.contains("nlpd_draining 1"), "{metrics}");

    server.await.unwrap().unwrap();
    assert!(
        stopped_at.elapsed() >= delay,
        "the server stopped after {:?}, before its {delay:?} delay",
        stopped_at.elapsed()
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed after the drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_in_flight_past_the_shutdown_timeout_do_not_hold_the_exit() {
    let timeout = Duration::from_millis(500);
    let config = ServerConfig {
        shutdown_timeout: timeout,
        ..ServerConfig::default()
    };
    let mut s = TestServer::start(
        vec![spec("emb", &tiny("bert-base"), None)],
        BatchConfig::default(),
        None,
        config,
    )
    .await;
    // A request whose body never finishes arriving: in flight until the server gives up on it.
    let mut stuck = TcpStream::connect(s.addr).await.expect("connect");
    let head = format!(
        "POST /v1/embed HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"inp",
        s.addr
    );
    stuck.write_all(head.as_bytes()).await.expect("write");
    // Wait until the server counts it.
    let mut counted = false;
    for _ in 0..100 {
        // The scrape itself is one request in flight; the stalled one makes two.
        let body = s.get("/metrics").await.body;
        let n = body
            .lines()
            .find_map(|l| l.strip_prefix("nlpd_requests_in_flight "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if n >= 2.0 {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(counted, "the stalled request was never counted in flight");

    let stopped_at = Instant::now();
    let server = s.trigger_stop();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("serve returned within 15 s despite a request that never completes")
        .unwrap()
        .unwrap();
    assert!(
        stopped_at.elapsed() >= timeout,
        "returned after {:?}: it did not wait the {timeout:?} timeout for the request",
        stopped_at.elapsed()
    );
}
