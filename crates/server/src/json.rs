//! A JSON body extractor whose errors name the offending field (400) or report the size limit (413).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge {
                    message: "request body is larger than --max-request-bytes".into(),
                    param: None,
                }
            } else {
                ApiError::BadRequest {
                    message: format!("cannot read the body: {e}"),
                    param: None,
                }
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses JSON, reporting the path of the field that failed (`inputs[2]`, `messages[0].role`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            message: "the request body is empty: send a JSON object".into(),
            param: None,
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).or_else(|e| {
        // JSON has one number type: `3.0` is the integer 3 to JSON Schema (and to pydantic's
        // clients). Only a body that failed on a float is parsed again with such numbers made
        // integers, so well-typed bodies are parsed once.
        if e.inner().classify() == serde_json::error::Category::Data
            && e.inner()
                .to_string()
                .contains("invalid type: floating point")
        {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
                return from_value(v);
            }
        }
        Err(bad_request(e))
    })
}

/// Deserializes an already parsed body, naming the failing field like [`parse`]; numbers written
/// as floats with no fractional part (`3.0`) count as integers.
pub fn from_value<T: DeserializeOwned>(mut v: serde_json::Value) -> Result<T, ApiError> {
    integral_floats(&mut v);
    serde_path_to_error::deserialize(v).map_err(bad_request)
}

/// A 400 naming the field that failed (none for the whole body or malformed JSON).
fn bad_request(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let param = (path != "." && !path.is_empty()).then_some(path);
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("malformed JSON: {inner}")
    } else if let Some(p) = &param {
        format!("invalid `{p}`: {inner}")
    } else {
        format!("invalid request: {inner}")
    };
    ApiError::BadRequest { message, param }
}

/// Rewrites every float that is a whole number within the 64-bit integer range as an integer.
fn integral_floats(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                // |f| < 2^53: exact in both types.
                *v = Value::from(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_floats),
        Value::Object(o) => o.values_mut().for_each(integral_floats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct R {
        inputs: Vec<String>,
        top_k: Option<u32>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<R>(br#"{"inputs": ["a", 3]}"#).unwrap_err();
        assert_eq!(e, ApiError::BadRequest { message: "invalid `inputs[1]`: invalid type: integer `3`, expected a string at line 1 column 18".into(), param: Some("inputs[1]".into()) });
        let e = parse::<R>(br#"{"inputs": [], "top_k": -1}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::BadRequest { param: Some(ref p), .. } if p == "top_k"),
            "{e:?}"
        );
        let e = parse::<R>(br#"{"inputs": "#).unwrap_err();
        assert!(e.message().starts_with("malformed JSON"), "{e:?}");
        let e = parse::<R>(b"").unwrap_err();
        assert!(e.message().contains("empty"));
        let e = parse::<R>(br#"{"inputs": [], "bogus": 1}"#).unwrap_err();
        assert!(e.message().contains("unknown field `bogus`"), "{e:?}");
    }

    #[test]
    fn whole_floats_are_integers_and_fractions_name_the_field() {
        let r = parse::<R>(br#"{"inputs": ["a"], "top_k": 3.0}"#).unwrap();
        assert_eq!(r.top_k, Some(3));
        let e = parse::<R>(br#"{"inputs": ["a"], "top_k": 2.5}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::BadRequest { param: Some(ref p), .. } if p == "top_k"),
            "{e:?}"
        );
        let e = parse::<R>(br#"{"inputs": ["a"], "top_k": -1.0}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::BadRequest { param: Some(ref p), .. } if p == "top_k"),
            "{e:?}"
        );
        // A float where a string belongs is still a type error.
        let e = parse::<R>(br#"{"inputs": [1.0]}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::BadRequest { param: Some(ref p), .. } if p == "inputs[0]"),
            "{e:?}"
        );
    }
}
