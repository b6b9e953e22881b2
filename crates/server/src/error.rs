//! The one error type of the HTTP layer and its exhaustive mapping to status codes, with the body
//! `{"error": {"message", "type", "param"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nlpd_engine::EngineError;
use nlpd_runtime::cache::CacheError;
use nlpd_runtime::evidence::{CorpusError, IndexError};
use nlpd_runtime::RuntimeError;
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400: malformed JSON, wrong types, bad values. `param` names the field.
    BadRequest {
        message: String,
        param: Option<String>,
    },
    /// 401: missing or invalid API key.
    Unauthorized,
    /// 404: unknown model, route, or no model for a task.
    NotFound {
        message: String,
        param: Option<String>,
    },
    /// 405: the route exists with another method.
    MethodNotAllowed { message: String },
    /// 413: body too large, or too many inputs.
    TooLarge {
        message: String,
        param: Option<String>,
    },
    /// 422: well-formed but unprocessable: empty input, too long in strict mode, wrong task.
    Unprocessable {
        message: String,
        param: Option<String>,
    },
    /// 429: a queue is full.
    Overloaded { message: String, retry_after_s: u64 },
    /// 503: not ready (model failed to load, budget held, shutting down).
    Unavailable { message: String },
    /// 504: the deadline passed.
    Timeout { message: String },
    /// 500: a bug; never for anything a client can send.
    Internal { message: String },
}

impl ApiError {
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    pub fn unprocessable(param: &str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "invalid_request_error",
            ApiError::Unauthorized => "authentication_error",
            ApiError::NotFound { .. } => "not_found_error",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed_error",
            ApiError::TooLarge { .. } => "request_too_large",
            ApiError::Unprocessable { .. } => "invalid_input_error",
            ApiError::Overloaded { .. } => "overloaded_error",
            ApiError::Unavailable { .. } => "unavailable_error",
            ApiError::Timeout { .. } => "timeout_error",
            ApiError::Internal { .. } => "internal_error",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthorized => {
                "missing or invalid API key (send `Authorization: Bearer <key>`)".into()
            }
            ApiError::BadRequest { message, .. }
            | ApiError::NotFound { message, .. }
            | ApiError::TooLarge { message, .. }
            | ApiError::Unprocessable { message, .. }
            | ApiError::Overloaded { message, .. }
            | ApiError::Unavailable { message }
            | ApiError::MethodNotAllowed { message }
            | ApiError::Timeout { message }
            | ApiError::Internal { message } => message.clone(),
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { param, .. }
            | ApiError::NotFound { param, .. }
            | ApiError::TooLarge { param, .. }
            | ApiError::Unprocessable { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    /// The JSON body (also sent as an SSE event when a stream fails midway).
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message(), "type": self.kind(), "param": self.param()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal { message } = &self {
            tracing::error!(%message, "internal error");
        }
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        if let ApiError::Overloaded { retry_after_s, .. } = &self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// Input errors of the engine name the request's `inputs` field.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::EmptyInput { field } => ApiError::Unprocessable {
                message: e_msg(&field),
                param: Some(field),
            },
            EngineError::InputTooLong { index, .. } => ApiError::Unprocessable {
                message: e.to_string(),
                param: Some(format!("inputs[{index}]")),
            },
            EngineError::InvalidInput(m) => ApiError::BadRequest {
                message: m,
                param: None,
            },
            EngineError::InvalidParameter { param, message } => ApiError::BadRequest {
                message,
                param: Some(param.to_string()),
            },
            EngineError::UnsupportedTask { .. } => ApiError::Unprocessable {
                message: e.to_string(),
                param: Some("model".into()),
            },
            EngineError::ModelNotFound { .. }
            | EngineError::InvalidModel { .. }
            | EngineError::UnsupportedArchitecture { .. }
            | EngineError::Io { .. }
            | EngineError::Json { .. }
            | EngineError::IncompatibleOption { .. } => ApiError::Unavailable {
                message: e.to_string(),
            },
            EngineError::Tokenizer(_)
            | EngineError::Template(_)
            | EngineError::Compute(_)
            | EngineError::Internal(_) => ApiError::Internal {
                message: e.to_string(),
            },
        }
    }
}

fn e_msg(field: &str) -> String {
    format!("empty input: {field} must be a non-empty string")
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Mismatch { .. } => ApiError::Internal {
                message: e.to_string(),
            },
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::UnknownModel(_) => ApiError::NotFound {
                message: e.to_string(),
                param: Some("model".into()),
            },
            RuntimeError::NoModelForTask(_) => ApiError::NotFound {
                message: e.to_string(),
                param: Some("model".into()),
            },
            RuntimeError::WrongTask { .. } => ApiError::Unprocessable {
                message: e.to_string(),
                param: Some("model".into()),
            },
            RuntimeError::NeverFits { .. } => ApiError::Unprocessable {
                message: e.to_string(),
                param: Some("model".into()),
            },
            RuntimeError::LoadFailed { .. }
            | RuntimeError::BudgetBusy { .. }
            | RuntimeError::ShuttingDown => ApiError::Unavailable {
                message: e.to_string(),
            },
            RuntimeError::Overloaded { retry_after_s, .. } => ApiError::Overloaded {
                message: e.to_string(),
                retry_after_s,
            },
            RuntimeError::DeadlineExceeded => ApiError::Timeout {
                message: e.to_string(),
            },
            RuntimeError::TooManyItems { .. } => ApiError::TooLarge {
                message: e.to_string(),
                param: Some("inputs".into()),
            },
            RuntimeError::Engine(inner) => inner.into(),
            RuntimeError::Internal(m) => ApiError::Internal { message: m },
        }
    }
}

impl From<CorpusError> for ApiError {
    fn from(e: CorpusError) -> Self {
        match e {
            // The database is down or slow: the corpus is unavailable, the request was fine.
            CorpusError::Store(_) | CorpusError::LoadFailed(_) | CorpusError::Loading => {
                ApiError::Unavailable {
                    message: e.to_string(),
                }
            }
            CorpusError::Index(IndexError::Degenerate) => ApiError::Unprocessable {
                message: format!("{e}: the text's embedding has no direction"),
                param: None,
            },
            // Vectors of another size than the index: the embedding model changed under it.
            CorpusError::Index(IndexError::Dimensions { .. }) => ApiError::Internal {
                message: e.to_string(),
            },
        }
    }
}
