//! Runtime errors: what can go wrong between a validated request and its result.

use nlpd_engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("model `{0}` is not configured (see GET /v1/models)")]
    UnknownModel(String),
    #[error("no model is configured for task `{0}`")]
    NoModelForTask(String),
    #[error("model `{name}` failed to load: {message}")]
    LoadFailed { name: String, message: String },
    #[error(
        "model `{name}` needs {needed} bytes, more than the whole memory budget of {budget} bytes"
    )]
    NeverFits {
        name: String,
        needed: u64,
        budget: u64,
    },
    #[error("model `{name}` needs {needed} bytes and the memory budget ({budget} bytes) is held by models in use; retry later")]
    BudgetBusy {
        name: String,
        needed: u64,
        budget: u64,
    },
    #[error("model `{name}` cannot do {task}")]
    WrongTask { name: String, task: &'static str },
    #[error("the queue of model `{model}` is full ({depth} items waiting)")]
    Overloaded {
        model: String,
        depth: usize,
        retry_after_s: u64,
    },
    #[error("the request has {items} inputs, more than a model's whole queue holds ({max}, --max-queue)")]
    TooManyItems { items: usize, max: usize },
    #[error("the request's deadline passed before it was computed")]
    DeadlineExceeded,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;
