//! Engine errors: one enum for everything the compute layer can refuse or fail at.

use std::path::PathBuf;

/// Errors raised by the engine. Input errors (`EmptyInput`, `InputTooLong`, `InvalidInput`) are the
/// caller's fault; the others concern models on disk or the compute itself.
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
    #[error("model `{model}` does not support {task}")]
    UnsupportedTask { model: String, task: &'static str },
    #[error("chat template: {0}")]
    Template(String),
    #[error("compute: {0}")]
    Compute(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
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
