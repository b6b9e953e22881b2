//! One claim's verification result as `/v1/verify` and `nlpd verify` write it.

use super::{decide, Hit, Verdict};
use nlpd_engine::generate::NLI_LABELS;
use serde::Serialize;
use std::collections::BTreeMap;

/// One pair's NLI result as the API writes it: `{"label", "scores": {label: probability}}`.
#[derive(Debug, Clone, Serialize)]
pub struct NliOut {
    /// The most probable label (the first on a tie).
    pub label: &'static str,
    pub scores: BTreeMap<&'static str, f32>,
}

impl NliOut {
    pub fn new(s: &[f32; 3]) -> Self {
        let best = (0..3).fold(0, |b, i| if s[i] > s[b] { i } else { b });
        NliOut {
            label: NLI_LABELS[best],
            scores: NLI_LABELS.iter().copied().zip(s.iter().copied()).collect(),
        }
    }
}

/// A retrieved passage, in retrieval order (most similar first).
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceItem {
    pub document_id: String,
    pub position: i32,
    pub text: String,
    pub start_char: i32,
    pub end_char: i32,
    /// Cosine similarity to the claim.
    pub similarity: f32,
    pub nli: NliOut,
    /// The passage that decided a SUPPORTED or REFUTED verdict.
    pub decisive: bool,
}

/// Milliseconds per stage of one claim (the claims' embedding is one batch for all of them).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ClaimTimings {
    pub retrieve: f64,
    pub nli: f64,
    pub aggregate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimReport {
    pub claim: String,
    pub verdict: Verdict,
    pub confidence: f32,
    /// The best entailment probability over the passages.
    pub support: f32,
    /// The best contradiction probability.
    pub refute: f32,
    pub evidence: Vec<EvidenceItem>,
    pub timings_ms: ClaimTimings,
}

/// Decides a claim from its retrieved passages and their NLI scores (`[entailment, neutral,
/// contradiction]` per passage, in `hits` order); the aggregation's time is added to `timings`.
pub fn report(
    claim: &str,
    hits: &[Hit],
    scores: &[[f32; 3]],
    mut timings: ClaimTimings,
) -> ClaimReport {
    let t = std::time::Instant::now();
    let d = decide(scores);
    let decisive = match d.verdict {
        Verdict::Supported => d.best_support,
        Verdict::Refuted => d.best_refute,
        Verdict::NotEnoughInfo => None,
    };
    let evidence = hits
        .iter()
        .zip(scores)
        .enumerate()
        .map(|(i, (h, s))| EvidenceItem {
            document_id: h.passage.document_id.to_string(),
            position: h.passage.position,
            text: h.passage.text.to_string(),
            start_char: h.passage.start_char,
            end_char: h.passage.end_char,
            similarity: h.score,
            nli: NliOut::new(s),
            decisive: decisive == Some(i),
        })
        .collect();
    timings.aggregate = t.elapsed().as_secs_f64() * 1000.0;
    ClaimReport {
        claim: claim.to_string(),
        verdict: d.verdict,
        confidence: d.confidence,
        support: d.support,
        refute: d.refute,
        evidence,
        timings_ms: timings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::PassageRef;

    fn hit(doc: &str, score: f32) -> Hit {
        Hit {
            passage: PassageRef {
                document_id: doc.into(),
                position: 0,
                text: format!("text of {doc}").into(),
                start_char: 0,
                end_char: 10,
            },
            score,
        }
    }

    #[test]
    fn the_decisive_passage_is_marked_and_json_has_the_documented_shape() {
        let hits = [hit("a", 0.8), hit("b", 0.6)];
        let r = report(
            "claim",
            &hits,
            &[[0.1, 0.8, 0.1], [0.05, 0.05, 0.9]],
            ClaimTimings::default(),
        );
        assert_eq!(r.verdict, Verdict::Refuted);
        assert!(!r.evidence[0].decisive && r.evidence[1].decisive);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["verdict"], "REFUTED");
        assert_eq!(v["evidence"][1]["nli"]["label"], "contradiction");
        assert!(
            v["evidence"][0]["nli"]["scores"]["neutral"]
                .as_f64()
                .unwrap()
                > 0.79
        );
        assert!(v["timings_ms"]["aggregate"].as_f64().unwrap() >= 0.0);
        let none = report("c", &[], &[], ClaimTimings::default());
        assert_eq!(
            serde_json::to_value(&none).unwrap()["verdict"],
            "NOT_ENOUGH_INFO"
        );
    }
}
