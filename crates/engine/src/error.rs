//! Engine errors: one enum for everything the compute layer can refuse or fail at.

use std::path::PathBuf;

/// Errors raised by the engine. Input errors (`EmptyInput`, `InputTooLong`, `InvalidInput`,
/// `InvalidParameter`) are the caller's fault; `Internal` is a broken invariant (a bug or a model
/// inconsistent with itself); the others concern models on disk, their configuration or the
/// compute itself.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model path {path} does not exist")]
    ModelNotFound { path: PathBuf },
    #[error("{path}: {message}")]
    InvalidModel { path: PathBuf, message: String },
    #[error("unsupported architecture `{architecture}` in {path} (supported: {supported})")]
    UnsupportedArchitecture {
        path: PathBuf,
        architecture: String,
        supported: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("empty input: {field} must be a non-empty string")]
    EmptyInput { field: String },
    #[error("input {index} has {tokens} tokens, more than the model's limit of {limit} (truncation is off)")]
    InputTooLong {
        index: usize,
        tokens: usize,
        limit: usize,
    },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("invalid `{param}`: {message}")]
    InvalidParameter {
        param: &'static str,
        message: String,
    },
    /// A load option the model cannot run with (the operator's configuration, not a request's):
    /// the model is unavailable as configured.
    #[error("`{option}`: {message}")]
    IncompatibleOption {
        option: &'static str,
        message: String,
    },
    /// A broken internal invariant: the server's own inconsistency or a model that contradicts
    /// itself, never the caller's input (answered 500, with the cause logged).
    #[error("internal error: {0}")]
    Internal(String),
    #[error("model `{model}` does not support {task}")]
    UnsupportedTask { model: String, task: &'static str },
    #[error("chat template: {0}")]
    Template(String),
    #[error("compute: {0}")]
    Compute(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        EngineError::Internal(message.into())
    }

    pub(crate) fn invalid_model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        EngineError::InvalidModel {
            path: path.into(),
            message: message.into(),
        }
    }

    /// True when the error is the caller's input, not the model or the machine.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            EngineError::EmptyInput { .. }
                | EngineError::InputTooLong { .. }
                | EngineError::InvalidInput(_)
                | EngineError::InvalidParameter { .. }
        )
    }
}

pub(crate) fn tok_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(e.to_string())
}
