//! NLI scores for (premise, hypothesis) pairs, shared by `/v1/nli` and `/v1/verify`: a
//! cross-encoder whose labels name entailment / neutral / contradiction (batched and cached like
//! every encoder), or the generative judge (one prompt per pair in the generation worker's
//! queue, not cached) when the request names a generative model, when a generative model is the
//! `nli` default, or when no NLI model is configured at all.

use crate::error::ApiError;
use crate::pipeline::{deadline, run_encoder, Input, RunOpts};
use crate::state::{AppState, Served};
use crate::types::check_count;
use nlpd_engine::generate::nli_label_positions;
use nlpd_engine::{EncoderOp, OpOutput};
use nlpd_runtime::ModelKind;

/// Which implementation judges the pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NliBy {
    /// The generative model of this name.
    Judge(String),
    /// A cross-encoder: the named one, or the `nli` default.
    CrossEncoder(Option<String>),
}

/// The implementation for a request's `model` (or its absence).
pub fn nli_by(st: &AppState, model: Option<&str>) -> NliBy {
    let generator = |n: &str| {
        st.registry
            .spec(n)
            .is_some_and(|s| s.kind == ModelKind::Generator)
    };
    match model {
        Some(m) if generator(m) => NliBy::Judge(m.to_string()),
        Some(m) => NliBy::CrossEncoder(Some(m.to_string())),
        None => match st.registry.default_for("nli") {
            Some(n) if generator(n) => NliBy::Judge(n.to_string()),
            Some(_) => NliBy::CrossEncoder(None),
            None => match st.registry.default_for("generate") {
                Some(g) => NliBy::Judge(g.to_string()),
                None => NliBy::CrossEncoder(None),
            },
        },
    }
}

/// Scores of every pair, as `[entailment, neutral, contradiction]` probabilities.
pub struct NliScores {
    pub scores: Vec<[f32; 3]>,
    pub served: Served,
    /// Whether the generative judge produced them.
    pub judge: bool,
}

/// Scores `pairs` (premise, hypothesis). `field` names the request field for errors.
pub async fn nli_scores(
    st: &AppState,
    model: Option<&str>,
    pairs: Vec<(String, String)>,
    field: &str,
    opts: RunOpts,
) -> Result<NliScores, ApiError> {
    check_count(pairs.len(), field, st.config.max_inputs_per_request)?;
    match nli_by(st, model) {
        NliBy::Judge(name) => judge(st, name, pairs, field, opts).await,
        NliBy::CrossEncoder(model) => cross_encoder(st, model.as_deref(), pairs, opts).await,
    }
}

async fn cross_encoder(
    st: &AppState,
    model: Option<&str>,
    pairs: Vec<(String, String)>,
    opts: RunOpts,
) -> Result<NliScores, ApiError> {
    let inputs: Vec<Input> = pairs.into_iter().map(|(p, h)| (p, Some(h))).collect();
    let run = run_encoder(st, model, "nli", inputs, EncoderOp::Classify, opts).await?;
    let labels = &run.handle.info.labels;
    let at = nli_label_positions(labels).map_err(|want| {
        ApiError::unprocessable(
            "model",
            format!(
                "model `{}` is not an NLI model: its labels {labels:?} lack `{want}`",
                run.served.model
            ),
        )
    })?;
    let scores = run
        .outputs
        .iter()
        .map(|o| match o {
            OpOutput::Classification(c) => Ok(at.map(|i| c.scores.get(i).copied().unwrap_or(0.0))),
            _ => Err(ApiError::Internal {
                message: "an NLI model returned no class scores".into(),
            }),
        })
        .collect::<Result<_, _>>()?;
    Ok(NliScores {
        scores,
        served: run.served,
        judge: false,
    })
}

/// The generative judge (`NliJudge`): one prompt per pair in the worker's queue. Not cached.
async fn judge(
    st: &AppState,
    name: String,
    pairs: Vec<(String, String)>,
    field: &str,
    opts: RunOpts,
) -> Result<NliScores, ApiError> {
    if let Some(i) = pairs
        .iter()
        .position(|(p, h)| p.trim().is_empty() || h.trim().is_empty())
    {
        return Err(ApiError::unprocessable(
            field,
            format!("{field}[{i}]: the premise and the hypothesis must not be empty"),
        ));
    }
    let handle = st.registry.generator(&name).await?;
    let (dl, _) = deadline(st, opts.timeout_ms);
    let n = pairs.len();
    // The one generative worker may be busy past the deadline: the answer is a 504 at the
    // deadline, not when the worker reaches the job (it then finds nobody waiting and skips it).
    let scores = tokio::time::timeout_at(tokio::time::Instant::from_std(dl), handle.nli(pairs, dl))
        .await
        .map_err(|_| ApiError::from(nlpd_runtime::RuntimeError::DeadlineExceeded))??;
    Ok(NliScores {
        scores,
        served: Served {
            task: "nli",
            model: name,
            inputs: n,
        },
        judge: true,
    })
}
