//! `/v1/analyze`: sentiment, entities and an embedding of each input in one call. The three tasks
//! run concurrently on their own models' batchers; a sentiment head trained on the embedding
//! model's encoder (`nlpd train`) is applied to the embedding instead of running the encoder twice.

use super::respond;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::pipeline::{run_encoder, EncoderRun, Input, RunOpts};
use crate::state::{AppState, Served};
use crate::types::{check_count, Texts};
use axum::extract::State;
use axum::response::Response;
use nlpd_engine::{entities_of, Aggregation, EncoderOp, EntityOutput, OpOutput, TokenPredictions};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum AnalyzeTask {
    Sentiment,
    Entities,
    Embedding,
}

impl AnalyzeTask {
    /// The registry task whose default model does the work.
    fn registry_task(self) -> &'static str {
        match self {
            AnalyzeTask::Sentiment => "classify",
            AnalyzeTask::Entities => "entities",
            AnalyzeTask::Embedding => "embed",
        }
    }

    fn key(self) -> &'static str {
        match self {
            AnalyzeTask::Sentiment => "sentiment",
            AnalyzeTask::Entities => "entities",
            AnalyzeTask::Embedding => "embedding",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    inputs: Texts,
    /// Default: every task that has a model.
    tasks: Option<Vec<AnalyzeTask>>,
    #[serde(default = "crate::types::default_true")]
    truncate: bool,
    timeout_ms: Option<crate::types::TimeoutMs>,
    /// `false`: neither read nor fill the result cache.
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

pub async fn analyze(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<AnalyzeRequest>,
) -> Result<Response, ApiError> {
    let texts = req.inputs.into_vec();
    check_count(texts.len(), "inputs", st.config.max_inputs_per_request)?;
    let all = [
        AnalyzeTask::Sentiment,
        AnalyzeTask::Entities,
        AnalyzeTask::Embedding,
    ];
    let tasks: Vec<AnalyzeTask> = match req.tasks {
        Some(t) if t.is_empty() => {
            return Err(ApiError::unprocessable(
                "tasks",
                "`tasks` must not be empty",
            ))
        }
        Some(t) => {
            if let Some(missing) = t
                .iter()
                .find(|x| st.registry.default_for(x.registry_task()).is_none())
            {
                return Err(ApiError::NotFound {
                    message: format!(
                        "no model is configured for `{}` (a `{}` model)",
                        missing.key(),
                        missing.registry_task()
                    ),
                    param: Some("tasks".into()),
                });
            }
            t
        }
        None => all
            .into_iter()
            .filter(|x| st.registry.default_for(x.registry_task()).is_some())
            .collect(),
    };
    if tasks.is_empty() {
        return Err(ApiError::NotFound {
            message: "no model is configured for sentiment, entities or embeddings".into(),
            param: Some("tasks".into()),
        });
    }
    // A sentiment head trained on the embedding model's encoder reads the embedding itself:
    // then the encoder runs once for both (see `SharedHead`).
    let shared = match (
        tasks.contains(&AnalyzeTask::Sentiment) && tasks.contains(&AnalyzeTask::Embedding),
        st.registry.default_for("classify"),
        st.registry.default_for("embed"),
    ) {
        (true, Some(c), Some(e)) => st.registry.shared_head(c, e).map(|h| (c.to_string(), h)),
        _ => None,
    };
    let inputs: Vec<Input> = texts.iter().map(|t| (t.clone(), None)).collect();
    let run = |task: AnalyzeTask| {
        let (op, name) = match task {
            AnalyzeTask::Sentiment => (EncoderOp::Classify, "classify"),
            AnalyzeTask::Entities => (EncoderOp::Tokens, "entities"),
            AnalyzeTask::Embedding => (
                EncoderOp::Embed {
                    normalize: true,
                    dimensions: None,
                },
                "embed",
            ),
        };
        let wanted = tasks.contains(&task) && !(task == AnalyzeTask::Sentiment && shared.is_some());
        let (st, inputs) = (&st, inputs.clone());
        async move {
            if wanted {
                let opts = RunOpts::new(req.truncate, req.timeout_ms, req.cache);
                run_encoder(st, None, name, inputs, op, opts)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        }
    };
    let (sentiment, entities, embedding) = tokio::try_join!(
        run(AnalyzeTask::Sentiment),
        run(AnalyzeTask::Entities),
        run(AnalyzeTask::Embedding)
    )?;
    let mut results: Vec<Map<String, Value>> = vec![Map::new(); texts.len()];
    let mut models = Vec::new();
    if let Some(r) = sentiment {
        let scores = r.outputs.iter().map(|o| match o {
            OpOutput::Classification(c) => Some(c.scores.clone()),
            _ => None,
        });
        add_sentiment(&mut results, &r.handle.info.labels, scores);
        models.push(r.served.model);
    }
    if let Some(r) = entities {
        models.push(r.served.model.clone());
        add_entities(&mut results, r, &texts);
    }
    if let Some(r) = embedding {
        if let Some((classifier, head)) = &shared {
            let scores = r.outputs.iter().map(|o| match o {
                OpOutput::Embedding(v) => Some(head.scores(v)),
                _ => None,
            });
            add_sentiment(&mut results, &head.labels, scores);
            models.insert(0, classifier.clone());
        }
        for (slot, o) in results.iter_mut().zip(r.outputs) {
            if let OpOutput::Embedding(v) = o {
                slot.insert("embedding".into(), short_floats(&v));
            }
        }
        models.push(r.served.model);
    }
    let served = Served {
        task: "analyze",
        model: models.join("+"),
        inputs: texts.len(),
    };
    Ok(respond(served, json!({ "results": results })))
}

/// Each input's labels ranked by score (`None`: that input has no scores).
fn add_sentiment(
    results: &mut [Map<String, Value>],
    labels: &[String],
    scores: impl Iterator<Item = Option<Vec<f32>>>,
) {
    for (slot, scores) in results.iter_mut().zip(scores) {
        if let Some(scores) = scores {
            let mut ranked: Vec<(&String, f32)> = labels.iter().zip(scores).collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            let list: Vec<Value> = ranked
                .into_iter()
                .map(|(l, s)| json!({"label": l, "score": s}))
                .collect();
            slot.insert("sentiment".into(), json!(list));
        }
    }
}

fn add_entities(results: &mut [Map<String, Value>], r: EncoderRun, texts: &[String]) {
    let labels = &r.handle.info.labels;
    for ((slot, o), (encoded, text)) in results
        .iter_mut()
        .zip(r.outputs)
        .zip(r.encodings.into_iter().zip(texts))
    {
        if let (OpOutput::TokenProbs(probs), Some(encoded)) = (o, encoded) {
            let preds = TokenPredictions { encoded, probs };
            if let EntityOutput::Spans(spans) =
                entities_of(text, &preds, labels, Aggregation::Simple)
            {
                slot.insert("entities".into(), json!(spans));
            }
        }
    }
}

/// f32 values as JSON numbers in their shortest f32 form (not the f64 expansion `json!` gives).
fn short_floats(v: &[f32]) -> Value {
    Value::Array(
        v.iter()
            .map(|x| {
                x.to_string()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            })
            .collect(),
    )
}
