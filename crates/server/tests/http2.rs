//! HTTP/2 over cleartext with prior knowledge (h2c), as service meshes and `httpx(http2=True)`
//! clients speak it, on the same port as HTTP/1.1.

mod common;

use bytes::Bytes;
use common::{spec, tiny, TestServer};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nlpd_runtime::BatchConfig;
use nlpd_server::ServerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_is_served_beside_http1() {
    let s = TestServer::start(
        vec![spec("emb", &tiny("bert-base"), None)],
        BatchConfig::default(),
        None,
        ServerConfig::default(),
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 handshake (prior knowledge)");
    tokio::spawn(conn);
    // Two requests on the one connection, as HTTP/2 multiplexes them.
    for text in ["first", "second"] {
        let req = Request::post(format!("http://{}/v1/embed", s.addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!(r#"{{"inputs":"{text}"}}"#))))
            .unwrap();
        let resp = h2.send_request(req).await.expect("h2 request");
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            v["embeddings"][0].as_array().is_some_and(|e| !e.is_empty()),
            "{v}"
        );
    }
    // HTTP/1.1 on the same port still works.
    assert_eq!(s.get("/health/ready").await.status, 200);
    s.stop().await;
}
