//! nlpd's HTTP layer (axum routes, request validation, error mapping). It is built by the server
//! issue; until then the `nlpd` binary offers the one-shot task commands only.

pub use nlpd_runtime as runtime;
