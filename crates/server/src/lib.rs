//! nlpd's HTTP layer: axum routes for every task, request validation with errors that name the
//! field, one error type mapped exhaustively to status codes, metrics and health.

pub mod app;
pub mod drain;
pub mod embed_input;
pub mod embedding_types;
pub mod error;
pub mod json;
pub mod nli;
pub mod openapi;
pub mod pipeline;
pub mod ratelimit;
pub mod routes;
pub mod state;
pub mod timing;
pub mod trace_context;
pub mod types;

pub use app::{app_state, router, serve};
pub use error::ApiError;
pub use nlpd_runtime as runtime;
pub use state::ServerConfig;
