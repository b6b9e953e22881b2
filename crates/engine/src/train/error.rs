//! Errors of training: bad data (with the file and line), bad options, and engine failures.
//! Variants with a `source` leave it out of their message: `{:#}` (anyhow) appends it once.

use crate::error::EngineError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not valid JSON")]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}:{line}: {message}")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: missing field `{field}`")]
    MissingField {
        path: PathBuf,
        line: usize,
        field: String,
    },
    #[error("{path}:{line}: label `{label}` is not one of the labels ({known})")]
    UnknownLabel {
        path: PathBuf,
        line: usize,
        label: String,
        known: String,
    },
    #[error("{path}: no examples (the file is empty or holds only blank lines)")]
    Empty { path: PathBuf },
    #[error("{path}: {message}")]
    BadData { path: PathBuf, message: String },
    #[error("invalid option `{option}`: {message}")]
    InvalidOption {
        option: &'static str,
        message: String,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

pub type Result<T> = std::result::Result<T, TrainError>;
