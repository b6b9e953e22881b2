//! The router, its middleware (auth, request metrics, timing headers, limits, compression, CORS,
//! request ids, W3C trace context and tracing) and serving with graceful shutdown.

use crate::error::ApiError;
use crate::routes::{analyze, cohere, encode, evidence, generate, hf, ops, tei, verify};
use crate::state::{AppState, Served, ServerConfig};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use nlpd_runtime::{metrics as m, Registry};
use std::future::IntoFuture;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The process-wide Prometheus recorder (installed once, shared by every server in the process).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), m::DURATION_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(m::BATCH_SIZE.into()),
                        m::BATCH_SIZE_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(m::BATCH_TOKENS.into()),
                        m::BATCH_TOKEN_BUCKETS,
                    )
                })
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_ok() {
                m::describe();
            }
            handle
        })
        .clone()
}

/// The shared state of the routes: the cache from `config.cache`, and `store` (already open:
/// see [`serve`], which opens it from `config.store`).
pub fn app_state(
    registry: Arc<Registry>,
    config: ServerConfig,
    store: Option<Arc<nlpd_runtime::Store>>,
) -> AppState {
    // The recorder first: the cache and the registry announce their series as they start.
    let prometheus = prometheus();
    registry.publish_metrics();
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let limiter = config
        .rate_limit
        .map(|r| Arc::new(crate::ratelimit::RateLimiter::new(r)));
    let cache = config.cache.clone().and_then(nlpd_runtime::Cache::new);
    let corpus = store.clone().map(nlpd_runtime::evidence::Corpus::new);
    AppState {
        registry,
        config: Arc::new(config),
        prometheus,
        started_unix_s,
        limiter,
        cache,
        store,
        corpus,
        drain: Arc::new(crate::drain::Drain::new()),
    }
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/embed", post(encode::embed))
        .route("/v1/embeddings", post(encode::openai_embeddings))
        .route("/v1/classify", post(encode::classify))
        .route("/v1/entities", post(encode::entities))
        .route("/v1/nli", post(encode::nli))
        .route("/v1/analyze", post(analyze::analyze))
        .route("/v1/rerank", post(encode::rerank))
        .route("/v2/embed", post(cohere::embed_v2))
        .route("/v2/rerank", post(cohere::rerank_v2))
        .route("/v1/tokenize", post(encode::tokenize))
        .route("/v1/chat/completions", post(generate::chat_completions))
        .route("/v1/completions", post(generate::completions))
        .route("/v1/explain", post(generate::explain))
        .route(
            "/v1/evidence",
            post(evidence::put_evidence).get(evidence::corpus_stats),
        )
        .route(
            "/v1/evidence/{id}",
            get(evidence::get_evidence).delete(evidence::delete_evidence),
        )
        .route("/v1/verify", post(verify::verify))
        .route("/v1/models", get(ops::models))
        .route("/v1/models/{name}", get(ops::model))
        .route("/v1/models/{name}/load", post(ops::load))
        .route("/v1/models/{name}/unload", post(ops::unload))
        .route("/v1/stats", get(ops::stats))
        .route("/v1/cache", get(ops::cache_stats))
        .route("/v1/cache/clear", post(ops::cache_clear))
        .route("/embed", post(tei::embed))
        .route("/rerank", post(tei::rerank))
        .route("/predict", post(tei::predict))
        .route("/tokenize", post(tei::tokenize))
        .route("/info", get(tei::info))
        .route("/similarity", post(tei::similarity))
        .route("/decode", post(tei::decode))
        .route("/", post(hf::root))
        .route("/models/{name}", post(hf::model))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    // The document as this server enforces it: bearer security only when keys are configured.
    // Serialized once: every request for it gets the same bytes.
    let openapi = axum::body::Bytes::from(
        serde_json::to_vec(&crate::openapi::spec_for(crate::openapi::Settings::of(
            &state.config,
        )))
        .expect("a JSON value serializes"),
    );
    let open = Router::new()
        .route("/health", get(ops::ready))
        .route("/health/ready", get(ops::ready))
        .route("/", get(dashboard))
        .route("/health/live", get(ops::live))
        .route("/metrics", get(ops::metrics))
        .route(
            "/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc,
                    )
                }
            }),
        );
    let request_id = HeaderName::from_static("x-request-id");
    api.merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(middleware::from_fn(crate::timing::headers))
        .layer(DefaultBodyLimit::max(state.config.max_request_bytes))
        .layer(CompressionLayer::new())
        // Permissive CORS exposes every response header (`*`): the timing headers and
        // `traceparent` included.
        .layer(CorsLayer::permissive())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(crate::trace_context::make_span))
        .layer(middleware::from_fn(crate::trace_context::propagate))
        .with_state(state)
}

/// The dashboard: one static page (no external assets) that polls `/v1/stats` and `/v1/models`
/// and has a playground for every task.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound {
        message: format!("no route {} {}", req.method(), req.uri().path()),
        param: None,
    }
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        message: format!("{} is not allowed on {}", req.method(), req.uri().path()),
    }
}

/// Bearer-token check when API keys are configured, then the rate limit of that key (or of the
/// client's IP address without keys).
async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let client = if st.config.api_keys.is_empty() {
        req.extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default()
    } else {
        match bearer(&req) {
            Some(t) if st.config.api_keys.contains(t) => t.to_string(),
            _ => return ApiError::Unauthorized.into_response(),
        }
    };
    if let Some(limiter) = &st.limiter {
        if let Err(retry_after_s) = limiter.check(&client) {
            return ApiError::Overloaded {
                message: "rate limit exceeded for this client (--rate-limit)".into(),
                retry_after_s,
            }
            .into_response();
        }
    }
    next.run(req).await
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
}

/// Counts every request by route, model and status, and feeds `/v1/stats`.
async fn record(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let http1 = req.version() < axum::http::Version::HTTP_2;
    let start = Instant::now();
    let mut resp = {
        let _in_flight = st.drain.enter();
        next.run(req).await
    };
    if http1 && st.drain.is_draining() {
        // Keep-alive clients (and a load balancer's pooled connections) move to another replica.
        // HTTP/2 has no such header: its connections end with the GOAWAY of the shutdown.
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    let took = start.elapsed();
    let status = resp.status();
    let served = resp.extensions().get::<Served>().cloned();
    let model = served.as_ref().map(|s| s.model.clone()).unwrap_or_default();
    metrics::counter!(m::REQUESTS, "route" => route.clone(), "model" => model.clone(), "status" => status.as_u16().to_string()).increment(1);
    let streamed = resp.extensions().get::<crate::state::Streamed>().is_some();
    if let Some(s) = served.filter(|_| !streamed) {
        metrics::histogram!(m::REQUEST_DURATION, "route" => route, "model" => model)
            .record(took.as_secs_f64());
        st.stats()
            .request(s.task, &s.model, s.inputs, status.is_success(), took);
    }
    resp
}

/// How long shutdown waits for the prediction log to be written.
const STORE_SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the store (migrations included) and serves until `shutdown` resolves; then drains (see
/// [`crate::drain`]): `/health/ready` answers 503 while serving goes on for
/// `config.shutdown_delay`, then the listener closes and in-flight requests get
/// `config.shutdown_timeout` to finish. Last, the queued prediction log is written (bounded
/// wait) and the workers stop. With `--warm-cache`, warming runs in the background once the
/// server is ready.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    prometheus();
    let store = match &config.store {
        Some(c) => Some(
            nlpd_runtime::Store::open(c.clone())
                .await
                .map_err(|e| std::io::Error::other(format!("store: {e}")))?,
        ),
        None => None,
    };
    let state = app_state(registry.clone(), config, store.clone());
    let warming = store
        .as_ref()
        .filter(|s| s.config().warm_cache > 0)
        .map(|s| {
            tokio::spawn(nlpd_runtime::store::warm_cache(
                s.clone(),
                registry.clone(),
                state.cache.clone(),
            ))
        });
    let indexing = tokio::spawn(crate::routes::evidence::rebuild_index(
        state.clone(),
        state.config.evidence_refresh,
    ));
    let drain = state.drain.clone();
    let (delay, timeout) = (state.config.shutdown_delay, state.config.shutdown_timeout);
    let closed = Arc::new(tokio::sync::Notify::new());
    let closing = closed.clone();
    let graceful = {
        let drain = drain.clone();
        async move {
            shutdown.await;
            drain.start();
            tracing::warn!(
                delay_s = delay.as_secs_f64(),
                in_flight = drain.in_flight(),
                "draining: /health/ready answers 503; still serving until the delay ends"
            );
            tokio::time::sleep(delay).await;
            tracing::warn!(
                timeout_s = timeout.as_secs_f64(),
                in_flight = drain.in_flight(),
                "drain delay over: no new connections; finishing in-flight requests"
            );
            closing.notify_one();
        }
    };
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let served = tokio::select! {
        r = server.into_future() => r,
        _ = async { closed.notified().await; tokio::time::sleep(timeout).await } => {
            tracing::error!(
                in_flight = drain.in_flight(),
                timeout_s = timeout.as_secs_f64(),
                "shutdown timeout: cutting off the requests still in flight"
            );
            Ok(())
        }
    };
    if let Some(w) = warming {
        w.abort();
    }
    indexing.abort();
    if let Some(s) = &store {
        s.shutdown(STORE_SHUTDOWN_WAIT).await;
    }
    served?;
    let r = registry.clone();
    let _ = tokio::task::spawn_blocking(move || r.shutdown()).await;
    Ok(())
}
