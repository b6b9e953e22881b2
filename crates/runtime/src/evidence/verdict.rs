//! Aggregation: from the NLI scores of a claim's evidence passages to one verdict.
//!
//! Each passage that was retrieved (cosine ≥ `min_score`) has NLI probabilities (entailment,
//! neutral, contradiction) for "passage ⊨ claim". Let
//!
//! - `S` = the highest entailment probability over the passages (the best support),
//! - `R` = the highest contradiction probability (the best refutation).
//!
//! Treating "some passage supports the claim" and "some passage refutes it" as independent events
//! of probabilities `S` and `R`:
//!
//! - SUPPORTED: `S · (1 − R)` (supported, and not refuted),
//! - REFUTED: `R · (1 − S)`,
//! - NOT_ENOUGH_INFO: `(1 − S) · (1 − R)` (neither).
//!
//! These three are renormalized (the fourth case, `S · R`, is conflicting evidence, which leaves
//! the decision to the larger of the two); the verdict is the largest, its share is the
//! `confidence`, and exact ties go to NOT_ENOUGH_INFO. With no passage, the verdict is
//! NOT_ENOUGH_INFO with confidence 1. One strong passage decides, whatever the number of weak
//! ones: ten passages about the topic that neither entail nor contradict the claim do not dilute
//! one that does.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Supported,
    Refuted,
    NotEnoughInfo,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Supported => "SUPPORTED",
            Verdict::Refuted => "REFUTED",
            Verdict::NotEnoughInfo => "NOT_ENOUGH_INFO",
        }
    }
}

/// The verdict of a claim and how it was reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// The verdict's share of the three outcomes, in [1/3, 1].
    pub confidence: f32,
    /// `S`: the best entailment probability (0 without passages).
    pub support: f32,
    /// `R`: the best contradiction probability.
    pub refute: f32,
    /// The passage (index into the input) with `S`, and the one with `R`.
    #[serde(skip)]
    pub best_support: Option<usize>,
    #[serde(skip)]
    pub best_refute: Option<usize>,
}

/// Aggregates NLI scores `[entailment, neutral, contradiction]`, one per passage.
pub fn decide(scores: &[[f32; 3]]) -> Decision {
    let best = |label: usize| {
        scores
            .iter()
            .enumerate()
            .filter(|(_, s)| s[label].is_finite())
            .fold(None, |b: Option<(usize, f32)>, (i, s)| match b {
                Some((_, v)) if v >= s[label] => b,
                _ => Some((i, s[label].clamp(0.0, 1.0))),
            })
    };
    let (sup_i, s) = best(0).map_or((None, 0.0), |(i, v)| (Some(i), v));
    let (ref_i, r) = best(2).map_or((None, 0.0), |(i, v)| (Some(i), v));
    let supported = s * (1.0 - r);
    let refuted = r * (1.0 - s);
    let neither = (1.0 - s) * (1.0 - r);
    let total = supported + refuted + neither;
    let (verdict, share) = if total <= 0.0 {
        // S = R = 1: two passages say opposite things with certainty.
        (Verdict::NotEnoughInfo, 1.0 / 3.0)
    } else if supported > refuted && supported > neither {
        (Verdict::Supported, supported / total)
    } else if refuted > supported && refuted > neither {
        (Verdict::Refuted, refuted / total)
    } else {
        (
            Verdict::NotEnoughInfo,
            neither.max(supported).max(refuted) / total,
        )
    };
    Decision {
        verdict,
        confidence: share,
        support: s,
        refute: r,
        best_support: sup_i,
        best_refute: ref_i,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: [f32; 3] = [0.9, 0.05, 0.05];
    const N: [f32; 3] = [0.1, 0.8, 0.1];
    const C: [f32; 3] = [0.05, 0.05, 0.9];

    #[test]
    fn no_passage_means_not_enough_info() {
        let d = decide(&[]);
        assert_eq!(d.verdict, Verdict::NotEnoughInfo);
        assert_eq!(d.confidence, 1.0);
        assert_eq!((d.best_support, d.best_refute), (None, None));
    }

    #[test]
    fn one_entailing_passage_supports_among_neutral_ones() {
        let d = decide(&[N, N, E, N, N, N, N, N, N, N]);
        assert_eq!(d.verdict, Verdict::Supported);
        assert_eq!(d.best_support, Some(2));
        // S = 0.9, R = 0.1: 0.81 / (0.81 + 0.01 + 0.09).
        assert!((d.confidence - 0.81 / 0.91).abs() < 1e-6, "{d:?}");
    }

    #[test]
    fn one_contradicting_passage_refutes() {
        let d = decide(&[N, C, N]);
        assert_eq!(d.verdict, Verdict::Refuted);
        assert_eq!(d.best_refute, Some(1));
        assert!(d.confidence > 0.85);
    }

    #[test]
    fn neutral_or_weak_evidence_is_not_enough() {
        let d = decide(&[N, N]);
        assert_eq!(d.verdict, Verdict::NotEnoughInfo);
        assert!((d.confidence - 0.81 / (0.09 + 0.09 + 0.81)).abs() < 1e-6);
        // 0.45 support alone is not enough: 0.45·0.9 < 0.55·0.9.
        assert_eq!(decide(&[[0.45, 0.45, 0.1]]).verdict, Verdict::NotEnoughInfo);
        assert_eq!(decide(&[[0.6, 0.3, 0.1]]).verdict, Verdict::Supported);
    }

    #[test]
    fn conflicting_evidence_goes_to_the_stronger_side_or_to_not_enough_info() {
        assert_eq!(decide(&[E, [0.1, 0.2, 0.7]]).verdict, Verdict::Supported);
        assert_eq!(decide(&[[0.7, 0.2, 0.1], C]).verdict, Verdict::Refuted);
        let tie = decide(&[[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]);
        assert_eq!(tie.verdict, Verdict::NotEnoughInfo);
        let certain_both = decide(&[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]);
        assert_eq!(certain_both.verdict, Verdict::NotEnoughInfo);
        assert!(certain_both.confidence.is_finite());
    }

    #[test]
    fn confidence_is_a_share_and_bad_numbers_do_not_poison_it() {
        for s in [E, N, C, [0.34, 0.33, 0.33], [0.5, 0.0, 0.5]] {
            let d = decide(&[s]);
            assert!(
                (1.0 / 3.0 - 1e-6..=1.0).contains(&d.confidence),
                "{s:?} → {d:?}"
            );
        }
        let d = decide(&[[f32::NAN, 0.5, f32::NAN], E]);
        assert_eq!(d.verdict, Verdict::Supported);
        assert_eq!(d.best_support, Some(1));
    }
}
