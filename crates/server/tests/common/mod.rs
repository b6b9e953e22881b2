//! Test harness: the real server in-process on port 0, a tiny HTTP/1.1 client, model locations.
#![allow(dead_code)]

pub mod db;

use nlpd_runtime::{BatchConfig, ModelSpec, Registry, Stats};
use nlpd_server::ServerConfig;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn tiny(name: &str) -> PathBuf {
    repo().join("tests/golden/tiny").join(name)
}

/// A pack model, or `None` (loudly) off CI; under CI a missing model fails the test.
pub fn pack(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("NLPD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"))
        .join(name);
    if dir.join(".nlpd-pack.json").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{} missing under CI: run `make models`", dir.display());
    }
    eprintln!(
        "\n!!! SKIPPING: {} not installed; run `make models` !!!\n",
        dir.display()
    );
    None
}

pub fn spec(name: &str, path: &Path, task: Option<&str>) -> ModelSpec {
    ModelSpec::inspect(name, path, task).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The default server settings with a 300 s deadline: generation on 2 cores busy with the rest
/// of the suite can pass the default 30 s.
pub fn generation_config() -> ServerConfig {
    ServerConfig {
        request_timeout: std::time::Duration::from_secs(300),
        ..ServerConfig::default()
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(
        specs: Vec<ModelSpec>,
        batch: BatchConfig,
        budget: Option<u64>,
        config: ServerConfig,
    ) -> Self {
        Self::start_with(specs, BTreeMap::new(), batch, budget, config, false).await
    }

    pub async fn start_with(
        specs: Vec<ModelSpec>,
        defaults: BTreeMap<String, String>,
        batch: BatchConfig,
        budget: Option<u64>,
        config: ServerConfig,
        preload: bool,
    ) -> Self {
        let mut registry =
            Registry::new(specs, defaults, batch, budget, Arc::new(Stats::default()))
                .expect("registry");
        if preload {
            registry.preload_all().await;
        }
        let registry = Arc::new(registry);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(nlpd_server::serve(
            listener,
            registry.clone(),
            config,
            async move {
                let _ = rx.await;
            },
        ));
        TestServer {
            addr,
            registry,
            stop: Some(tx),
            join: Some(join),
        }
    }

    /// Graceful shutdown: waits for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            j.await.expect("server task").expect("server");
        }
    }

    pub fn trigger_stop(&mut self) -> tokio::task::JoinHandle<std::io::Result<()>> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.join.take().expect("running")
    }

    pub async fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, None, &[]).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        request(self.addr, "DELETE", path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        request(self.addr, "POST", path, Some(body), &[]).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Resp {
        self.post(path, &body.to_string()).await
    }
}

/// Polls `GET path` until `done` holds for the part `pick` takes of its JSON, for at most `secs`
/// seconds; returns that part, or panics with `what` and the last one.
pub async fn wait_until(
    s: &TestServer,
    path: &str,
    pick: impl Fn(Value) -> Value,
    what: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..secs * 10 {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        last = pick(r.json());
        if done(&last) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: never happened; last {path}: {last}");
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of a server-sent event stream.
    pub fn sse_data(&self) -> Vec<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
            .map(str::to_string)
            .collect()
    }

    /// Asserts an error response with the standard body.
    pub fn assert_error(&self, status: u16, param: Option<&str>) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e["type"].as_str().is_some(), "{v}");
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{v}");
        }
        e["message"].as_str().unwrap().to_string()
    }
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s.write_all(body.as_bytes()).await.expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// Whether the suite runs under CI (`CI=true`): a missing service then fails the test.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A required service is missing: fails under CI, skips loudly otherwise.
pub fn missing(what: &str) {
    if under_ci() {
        panic!("{what} missing under CI");
    }
    eprintln!("\n!!! SKIPPING: {what} !!!\n");
}
