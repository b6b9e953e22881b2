//! Operations: health, models (list, load, unload), Prometheus metrics and the JSON stats report
//! (with the cache's and the prediction store's sections).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nlpd_runtime::metrics as m;
use serde_json::json;

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "live"}))
}

pub async fn ready(State(st): State<AppState>) -> Response {
    if st.drain.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "draining",
                "reasons": ["shutting down: draining before exit (--shutdown-delay)"]
            })),
        )
            .into_response();
    }
    match st.registry.readiness() {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reasons": reasons})),
        )
            .into_response(),
    }
}

/// A model's status with the fields OpenAI clients require (`id`, `object`, `created`, `owned_by`).
fn model_json(st: &AppState, s: &nlpd_runtime::ModelStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    v["id"] = json!(s.name);
    v["object"] = json!("model");
    v["created"] = json!(st.started_unix_s);
    v["owned_by"] = json!("nlpd");
    v
}

pub async fn models(State(st): State<AppState>) -> Json<serde_json::Value> {
    let data: Vec<serde_json::Value> = st
        .registry
        .statuses()
        .iter()
        .map(|s| model_json(&st, s))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

pub async fn model(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    st.registry
        .statuses()
        .iter()
        .find(|s| s.name == name)
        .map(|s| Json(model_json(&st, s)))
        .ok_or_else(|| nlpd_runtime::RuntimeError::UnknownModel(name).into())
}

pub async fn load(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    st.registry.load(&name).await?;
    Ok(Json(json!({"name": name, "loaded": true})))
}

pub async fn unload(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let was = st.registry.unload(&name)?;
    Ok(Json(
        json!({"name": name, "loaded": false, "was_loaded": was}),
    ))
}

pub async fn metrics(State(st): State<AppState>) -> Response {
    metrics::gauge!(m::RESIDENT_BYTES).set(m::resident_bytes() as f64);
    if let Some(limit) = m::memory_limit_bytes() {
        metrics::gauge!(m::MEMORY_LIMIT).set(limit as f64);
    }
    if let Some(c) = &st.cache {
        c.refresh_metrics();
    }
    if let Some(s) = &st.store {
        s.refresh_metrics();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.prometheus.render(),
    )
        .into_response()
}

pub async fn stats(State(st): State<AppState>) -> Json<serde_json::Value> {
    let report = st.stats().report();
    let models = st.registry.statuses();
    let memory: Vec<serde_json::Value> = models
        .iter()
        .filter(|s| s.loaded)
        .map(|s| json!({"model": s.name, "bytes": s.bytes}))
        .collect();
    Json(json!({
        "uptime_s": report.uptime_s,
        "process_resident_bytes": m::resident_bytes(),
        "models_bytes": memory,
        "requests": report.series,
        "batching": report.batching,
        "cache": st.cache.as_ref().map(|c| c.stats()),
        "store": st.store.as_ref().map(|s| s.stats()),
        "evidence": st.corpus.as_ref().map(|c| c.stats()),
    }))
}

/// `GET /v1/cache`: the cache's settings and counters (`{"enabled": false}` when it is off).
pub async fn cache_stats(State(st): State<AppState>) -> Json<serde_json::Value> {
    match &st.cache {
        Some(c) => {
            let mut v = serde_json::to_value(c.stats()).unwrap_or_default();
            v["enabled"] = json!(true);
            Json(v)
        }
        None => Json(json!({"enabled": false})),
    }
}

/// `POST /v1/cache/clear[?level=l1|l2|all]`: empties L1 and/or deletes this deployment's keys
/// (its prefix) from Redis.
pub async fn cache_clear(
    State(st): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut level = "all";
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("level", v)) => level = v,
            _ => {
                return Err(ApiError::bad(
                    "level",
                    format!("unknown query parameter `{pair}` (only `level`)"),
                ))
            }
        }
    }
    let (l1, l2) = match level {
        "all" => (true, true),
        "l1" => (true, false),
        "l2" => (false, true),
        other => {
            return Err(ApiError::bad(
                "level",
                format!("level must be `l1`, `l2` or `all`, not `{other}`"),
            ))
        }
    };
    let Some(cache) = &st.cache else {
        return Ok(Json(json!({"enabled": false})));
    };
    let report = cache.clear(l1, l2).await;
    let mut v = serde_json::to_value(report).unwrap_or_default();
    v["enabled"] = json!(true);
    Ok(Json(v))
}
