//! Request and response shapes shared by several routes.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};

/// A request's `timeout_ms`: its deadline in milliseconds, 1 ms to a day. 0 would be a deadline
/// already past (every request a 504), so it is refused as a bad value instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct TimeoutMs(u64);

impl TimeoutMs {
    /// The largest deadline a request may ask for: a day.
    pub const MAX: u64 = 86_400_000;

    /// A deadline computed by the server itself (clamped into the allowed range).
    pub fn clamped(d: std::time::Duration) -> Self {
        TimeoutMs((d.as_millis().min(u128::from(Self::MAX)) as u64).max(1))
    }

    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl TryFrom<u64> for TimeoutMs {
    type Error = String;
    fn try_from(ms: u64) -> Result<Self, String> {
        if (1..=Self::MAX).contains(&ms) {
            Ok(TimeoutMs(ms))
        } else {
            Err(format!(
                "timeout_ms must be between 1 and {} (a day), got {ms}",
                Self::MAX
            ))
        }
    }
}

/// `inputs`: one text or a list of texts.
#[derive(Debug, Clone)]
pub enum Texts {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Texts;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Texts, E> {
                Ok(Texts::One(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Texts, E> {
                Ok(Texts::One(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Texts, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Texts::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Texts {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Texts::One(s) => vec![s],
            Texts::Many(v) => v,
        }
    }

    pub fn is_one(&self) -> bool {
        matches!(self, Texts::One(_))
    }
}

/// Classification inputs: a text, a list of texts, or a list of `[text, text_pair]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ClassifyInputs {
    One(String),
    Many(Vec<TextOrPair>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TextOrPair {
    Text(String),
    Pair([String; 2]),
}

impl ClassifyInputs {
    pub fn into_vec(self) -> Vec<(String, Option<String>)> {
        match self {
            ClassifyInputs::One(s) => vec![(s, None)],
            ClassifyInputs::Many(v) => v
                .into_iter()
                .map(|x| match x {
                    TextOrPair::Text(t) => (t, None),
                    TextOrPair::Pair([a, b]) => (a, Some(b)),
                })
                .collect(),
        }
    }
}

/// Checks the list is not empty and within the per-request limit.
pub fn check_count(n: usize, field: &str, max: usize) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::unprocessable(
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    if n > max {
        return Err(ApiError::TooLarge {
            message: format!("`{field}` has {n} items; the limit per request is {max} (--max-inputs-per-request)"),
            param: Some(field.to_string()),
        });
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

#[derive(Debug, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// serde default for flags that are on unless turned off (`normalize`, `truncate`, ...).
pub fn default_true() -> bool {
    true
}
