//! `POST /v1/verify`: claim → embed → retrieve evidence → NLI → verdict.
//!
//! The claims are embedded in one batch by the corpus' embedding model; each claim then, in
//! parallel with the others: retrieves its `top_k` nearest passages with a cosine of at least
//! `min_score` (exact search), has every retrieved (passage, claim) pair judged by NLI (the
//! cross-encoder or the generative judge, as `/v1/nli` chooses, or `nli_model`), and is given a
//! verdict by [`nlpd_runtime::evidence::decide`] (see its documentation, and `docs/API.md`).
//! Top-level `timings_ms` of retrieve, nli and aggregate are sums over the claims, which run
//! concurrently: they can add up to more than `total`.

use super::evidence::{corpus, evidence_model};
use super::respond;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::nli::{nli_by, nli_scores, NliBy};
use crate::pipeline::{deadline, run_encoder_as, Input, RunOpts};
use crate::state::{AppState, Served};
use crate::types::{check_count, Texts};
use axum::extract::State;
use axum::response::Response;
use futures_util::future::join_all;
use nlpd_engine::{EncoderOp, OpOutput};
use nlpd_runtime::evidence::{report, ClaimTimings, DEFAULT_MIN_SCORE, DEFAULT_TOP_K};
use serde::Deserialize;
use serde_json::json;
use std::time::Instant;

/// The most a request may retrieve per claim.
const MAX_TOP_K: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    claims: Texts,
    top_k: Option<usize>,
    min_score: Option<f32>,
    /// The NLI model: a cross-encoder, or a generative model for the judge (default: as
    /// `/v1/nli` chooses).
    nli_model: Option<String>,
    timeout_ms: Option<crate::types::TimeoutMs>,
    /// `false`: neither read nor fill the result cache (claim embeddings, cross-encoder NLI).
    #[serde(default = "crate::types::default_true")]
    cache: bool,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

pub async fn verify(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let corpus = corpus(&st)?.clone();
    let claims = req.claims.into_vec();
    check_count(claims.len(), "claims", st.config.max_inputs_per_request)?;
    if let Some(i) = claims.iter().position(|c| c.trim().is_empty()) {
        return Err(ApiError::unprocessable(
            &format!("claims[{i}]"),
            format!("claims[{i}] must be a non-empty string"),
        ));
    }
    let top_k = req.top_k.unwrap_or(DEFAULT_TOP_K);
    if !(1..=MAX_TOP_K).contains(&top_k) {
        return Err(ApiError::unprocessable(
            "top_k",
            format!("top_k must be between 1 and {MAX_TOP_K}, not {top_k}"),
        ));
    }
    let min_score = req.min_score.unwrap_or(DEFAULT_MIN_SCORE);
    if !(-1.0..=1.0).contains(&min_score) {
        return Err(ApiError::unprocessable(
            "min_score",
            format!("min_score is a cosine similarity between -1 and 1, not {min_score}"),
        ));
    }
    // Fail before any work when the NLI model does not exist.
    if let Some(m) = &req.nli_model {
        if st.registry.spec(m).is_none() {
            return Err(ApiError::NotFound {
                message: format!("model `{m}` is not configured (see GET /v1/models)"),
                param: Some("nli_model".into()),
            });
        }
    }
    let (_, wait) = deadline(&st, req.timeout_ms);
    corpus.ready(wait).await?;
    let model = evidence_model(&st)?;
    let opts = RunOpts::new(true, req.timeout_ms, req.cache);

    let t = Instant::now();
    let inputs: Vec<Input> = claims.iter().map(|c| (c.clone(), None)).collect();
    let op = EncoderOp::Embed {
        normalize: true,
        dimensions: None,
    };
    let run = run_encoder_as(&st, Some(&model), "embed", "verify", inputs, op, opts).await?;
    let vectors: Vec<Vec<f32>> = run
        .outputs
        .into_iter()
        .map(OpOutput::into_embedding)
        .collect::<Option<_>>()
        .ok_or_else(|| ApiError::Internal {
            message: "the embedding model returned no vector for a claim".into(),
        })?;
    let embed_ms = ms(t);

    let nli_model = req.nli_model.as_deref();
    let checked = join_all(claims.iter().zip(&vectors).map(|(claim, v)| {
        let (st, corpus) = (&st, &corpus);
        async move {
            let mut timings = ClaimTimings::default();
            let t = Instant::now();
            let hits = corpus.search(v, top_k, min_score)?;
            timings.retrieve = ms(t);
            let t = Instant::now();
            let (scores, nli_served) = if hits.is_empty() {
                (Vec::new(), None)
            } else {
                let pairs = hits
                    .iter()
                    .map(|h| (h.passage.text.to_string(), claim.clone()))
                    .collect();
                let out = nli_scores(st, nli_model, pairs, "claims", opts).await?;
                (out.scores, Some(out.served.model))
            };
            timings.nli = ms(t);
            Ok::<_, ApiError>((report(claim, &hits, &scores, timings), nli_served))
        }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    let mut totals = ClaimTimings::default();
    let mut nli_used = None;
    let mut results = Vec::with_capacity(checked.len());
    for (r, served) in checked {
        totals.retrieve += r.timings_ms.retrieve;
        totals.nli += r.timings_ms.nli;
        totals.aggregate += r.timings_ms.aggregate;
        nli_used = nli_used.or(served);
        results.push(r);
    }
    let nli = nli_used.or_else(|| match nli_by(&st, nli_model) {
        NliBy::Judge(n) | NliBy::CrossEncoder(Some(n)) => Some(n),
        NliBy::CrossEncoder(None) => st.registry.default_for("nli").map(str::to_string),
    });
    let served = Served {
        task: "verify",
        model: model.clone(),
        inputs: claims.len(),
    };
    Ok(respond(
        served,
        json!({
            "results": results,
            "models": { "embedding": model, "nli": nli },
            "timings_ms": {
                "embed": embed_ms,
                "retrieve": totals.retrieve,
                "nli": totals.nli,
                "aggregate": totals.aggregate,
                "total": ms(start),
            },
        }),
    ))
}
