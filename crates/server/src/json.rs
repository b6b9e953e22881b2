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
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = (path != "." && !path.is_empty()).then_some(path.clone());
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else if let Some(p) = &param {
            format!("invalid `{p}`: {inner}")
        } else {
            format!("invalid request: {inner}")
        };
        ApiError::BadRequest { message, param }
    })
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
}
