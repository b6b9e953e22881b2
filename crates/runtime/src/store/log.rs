//! The request side of the prediction log: turning a served encoder request into log rows and
//! handing them to the writer without waiting. One channel reservation per request; when the
//! queue cannot take every row of the request, the request's rows are dropped and counted.

use super::counters::{Counters, DropReason};
use crate::cache::{input_hash, params_hash, CachedValue};
use nlpd_engine::EncoderOp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// An encoder operation and its output-affecting parameters as the log stores them (the
/// `params` column, JSON): enough to compute the same result again, under the same cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpParams {
    /// `embed`, `classify` or `tokens`.
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    pub truncate: bool,
}

impl OpParams {
    pub fn new(op: &EncoderOp, truncate: bool) -> Self {
        let (name, normalize, dimensions) = match op {
            EncoderOp::Embed {
                normalize,
                dimensions,
            } => ("embed", Some(*normalize), *dimensions),
            EncoderOp::Classify => ("classify", None, None),
            EncoderOp::Tokens => ("tokens", None, None),
        };
        OpParams {
            op: name.to_string(),
            normalize,
            dimensions,
            truncate,
        }
    }

    /// The operation and `truncate` back; `None` for what no nlpd version writes.
    pub fn to_op(&self) -> Option<(EncoderOp, bool)> {
        let op = match (self.op.as_str(), self.normalize, self.dimensions) {
            ("embed", Some(normalize), dimensions) => EncoderOp::Embed {
                normalize,
                dimensions,
            },
            ("classify", None, None) => EncoderOp::Classify,
            ("tokens", None, None) => EncoderOp::Tokens,
            _ => return None,
        };
        Some((op, self.truncate))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
}

/// What the rows of one request share.
#[derive(Debug)]
pub(crate) struct Meta {
    pub model: String,
    pub revision: String,
    pub task: &'static str,
    pub params: String,
    pub params_hash: [u8; 32],
}

/// One served input, waiting to be written.
#[derive(Debug)]
pub(crate) struct LogRow {
    pub meta: Arc<Meta>,
    pub input_hash: [u8; 32],
    pub text: Option<String>,
    pub pair: Option<String>,
    pub value: Arc<CachedValue>,
    pub latency_ms: Option<f64>,
    pub at_ms: i64,
}

/// The handle requests log through (cheap; never waits, never fails).
pub struct PredictionLog {
    pub(crate) tx: mpsc::Sender<LogRow>,
    pub(crate) log_inputs: bool,
    pub(crate) counters: Arc<Counters>,
}

impl PredictionLog {
    /// Logs every input of one served encoder request: `values[i]` is what input `i` got (from
    /// the cache or computed) and `latency_ms[i]` the compute time when it was computed for this
    /// request (`None`: a hit). The text is kept only with `--log-inputs`.
    #[allow(clippy::too_many_arguments)]
    pub fn encoder(
        &self,
        model: &str,
        revision: &str,
        task: &'static str,
        op: &EncoderOp,
        truncate: bool,
        inputs: &[(String, Option<String>)],
        values: &[Arc<CachedValue>],
        latency_ms: &[Option<f64>],
    ) {
        let n = inputs.len().min(values.len());
        if n == 0 {
            return;
        }
        let permits = match self.tx.try_reserve_many(n) {
            Ok(p) => p,
            Err(TrySendError::Full(())) => {
                self.counters.dropped(DropReason::QueueFull, n as u64);
                return;
            }
            Err(TrySendError::Closed(())) => {
                self.counters.dropped(DropReason::Shutdown, n as u64);
                return;
            }
        };
        let params = OpParams::new(op, truncate);
        let meta = Arc::new(Meta {
            model: model.to_string(),
            revision: revision.to_string(),
            task,
            params: params.to_json(),
            params_hash: params_hash(op, truncate),
        });
        let at_ms = super::now_ms();
        for (i, permit) in permits.enumerate().take(n) {
            let (text, pair) = &inputs[i];
            permit.send(LogRow {
                meta: meta.clone(),
                input_hash: input_hash(text, pair.as_deref()),
                text: self.log_inputs.then(|| text.clone()),
                pair: if self.log_inputs { pair.clone() } else { None },
                value: values[i].clone(),
                latency_ms: latency_ms.get(i).copied().flatten(),
                at_ms,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_through_json() {
        for (op, truncate) in [
            (
                EncoderOp::Embed {
                    normalize: true,
                    dimensions: None,
                },
                true,
            ),
            (
                EncoderOp::Embed {
                    normalize: false,
                    dimensions: Some(128),
                },
                false,
            ),
            (EncoderOp::Classify, true),
            (EncoderOp::Tokens, false),
        ] {
            let p = OpParams::new(&op, truncate);
            let back = OpParams::from_json(&p.to_json()).unwrap();
            assert_eq!(back, p);
            assert_eq!(back.to_op(), Some((op, truncate)));
        }
        assert_eq!(
            OpParams::new(&EncoderOp::Classify, true).to_json(),
            r#"{"op":"classify","truncate":true}"#
        );
        let odd = OpParams::from_json(r#"{"op":"classify","normalize":true,"truncate":true}"#);
        assert_eq!(odd.unwrap().to_op(), None);
        assert!(OpParams::from_json("not json").is_none());
    }
}
