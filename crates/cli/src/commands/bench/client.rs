//! The HTTP/1 client: hyper's pooled keep-alive client (one connection per concurrent request,
//! reused), a per-request timeout, and failures sorted into kinds a user can act on.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx reply, body read in full.
    Ok,
    /// Any other HTTP status.
    Status(u16),
    /// No reply: a connection error, a timeout, a reset... (the kind, for the report).
    Failed(String),
}

pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
    auth: Option<HeaderValue>,
    timeout: Duration,
    /// Connections that failed with EMFILE (too many open files).
    pub emfile: AtomicU64,
}

/// `--url`: http://HOST[:PORT][/PREFIX], no trailing slash.
pub fn normalize_base(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("https://") {
        bail!("--url {url}: https is not supported (nlpd bench speaks plain HTTP/1.1; put it next to the server or behind a plain-HTTP port)");
    }
    let uri: Uri = url
        .parse()
        .with_context(|| format!("--url `{url}` is not a valid URL"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        bail!("--url `{url}`: expected http://HOST:PORT");
    }
    if uri.query().is_some() {
        bail!("--url `{url}`: must not have a query string");
    }
    Ok(url.to_string())
}

impl Client {
    pub fn new(base: &str, api_key: Option<&str>, timeout: Duration) -> Result<Client> {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(timeout));
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(usize::MAX)
            .build(conn);
        let auth = match api_key.map(str::trim).filter(|k| !k.is_empty()) {
            Some(k) => Some(
                HeaderValue::from_str(&format!("Bearer {k}"))
                    .context("--api-key holds characters an HTTP header cannot carry")?,
            ),
            None => None,
        };
        Ok(Client {
            http,
            base: normalize_base(base)?,
            auth,
            timeout,
            emfile: AtomicU64::new(0),
        })
    }

    /// The server's base URL (http://HOST:PORT[/PREFIX]).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The absolute URI of a route (parse once, clone per request).
    pub fn uri(&self, path: &str) -> Result<Uri> {
        format!("{}{path}", self.base)
            .parse()
            .with_context(|| format!("bad URL {}{path}", self.base))
    }

    fn request(&self, method: Method, uri: Uri, body: Bytes) -> Result<Request<Full<Bytes>>> {
        let mut b = Request::builder().method(method).uri(uri);
        if !body.is_empty() {
            b = b.header(CONTENT_TYPE, "application/json");
        }
        if let Some(a) = &self.auth {
            b = b.header(AUTHORIZATION, a.clone());
        }
        b.body(Full::new(body)).context("cannot build the request")
    }

    /// Sends one request and reads the whole reply; `Outcome` and the body (empty on failure).
    pub async fn send(&self, method: Method, uri: Uri, body: Bytes) -> (Outcome, Bytes) {
        let req = match self.request(method, uri, body) {
            Ok(r) => r,
            Err(e) => return (Outcome::Failed(format!("request: {e}")), Bytes::new()),
        };
        let call = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| self.legacy_kind(&e))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {}", error_kind(&e)))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => (Outcome::Failed("timeout".into()), Bytes::new()),
            Ok(Err(kind)) => (Outcome::Failed(kind), Bytes::new()),
            Ok(Ok((status, body))) if status.is_success() => (Outcome::Ok, body),
            Ok(Ok((status, body))) => (Outcome::Status(status.as_u16()), body),
        }
    }

    /// POST with a JSON body; the outcome only.
    pub async fn post(&self, uri: Uri, body: Bytes) -> Outcome {
        self.send(Method::POST, uri, body).await.0
    }

    /// GET a JSON document (health, stats): `Err` with the reason on any failure.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        let uri = self.uri(path).map_err(|e| e.to_string())?;
        match self.send(Method::GET, uri, Bytes::new()).await {
            (Outcome::Ok, body) => {
                serde_json::from_slice(&body).map_err(|e| format!("GET {path}: not JSON ({e})"))
            }
            (Outcome::Status(s), _) => Err(format!("GET {path}: HTTP {s}")),
            (Outcome::Failed(k), _) => Err(format!("GET {path}: {k}")),
        }
    }

    fn legacy_kind(&self, e: &hyper_util::client::legacy::Error) -> String {
        let kind = error_kind(e);
        if kind.contains("EMFILE") {
            self.emfile.fetch_add(1, Ordering::Relaxed);
        }
        if e.is_connect() {
            format!("connect: {kind}")
        } else {
            kind
        }
    }
}

/// The most specific cause in an error's chain: an OS error's kind (EMFILE named as such), or
/// what hyper says about the connection.
pub fn error_kind(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut hyper_kind = None;
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.raw_os_error() {
                Some(24) => "EMFILE (too many open files)".to_string(),
                Some(23) => "ENFILE (system file table full)".to_string(),
                Some(99) => "EADDRNOTAVAIL (out of local ports)".to_string(),
                _ => io.kind().to_string(),
            };
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            hyper_kind.get_or_insert(if h.is_incomplete_message() {
                "connection closed before the reply"
            } else if h.is_canceled() {
                "canceled"
            } else if h.is_timeout() {
                "timeout"
            } else if h.is_parse() {
                "bad HTTP reply"
            } else if h.is_closed() {
                "connection closed"
            } else {
                "http error"
            });
        }
        cur = err.source();
    }
    hyper_kind
        .map(str::to_string)
        .unwrap_or_else(|| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_normalized() {
        assert_eq!(
            normalize_base("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(normalize_base("http://h:1/api").unwrap(), "http://h:1/api");
        for bad in ["https://h", "ftp://h", "h:80", "http://h?x=1", "not a url"] {
            assert!(normalize_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn os_errors_name_their_kind() {
        let e = std::io::Error::from_raw_os_error(24);
        assert!(error_kind(&e).contains("EMFILE"));
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(error_kind(&e), "connection refused");
    }
}
