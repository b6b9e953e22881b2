pub mod analyze;
pub mod cohere;
pub mod encode;
pub mod evidence;
pub mod generate;
pub mod hf;
pub mod ops;
pub mod tei;
pub mod verify;

use crate::state::Served;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A JSON response carrying what the metrics middleware records.
pub fn respond<T: Serialize>(served: Served, body: T) -> Response {
    let mut r = axum::Json(body).into_response();
    r.extensions_mut().insert(served);
    r
}
