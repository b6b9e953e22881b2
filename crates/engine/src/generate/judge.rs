//! NLI without an NLI model: an instruct LM judges a premise / hypothesis pair in one forward pass.
//!
//! The pair goes into a chat prompt that asks for a one-word answer; the scores are the model's
//! next-token probabilities of the three answer words, renormalized over the three. No sampling:
//! the same pair always gets the same scores.

use super::llm::PrefixState;
use super::prefill::{Prefill, PrefillPrefix};
use super::{ChatMessage, GenModel};
use crate::error::{EngineError, Result};

/// The labels, in the order of `NliJudge::scores`' output.
pub const NLI_LABELS: [&str; 3] = ["entailment", "neutral", "contradiction"];

/// Where each of [`NLI_LABELS`] sits among a classifier's labels (any case): how to read an NLI
/// cross-encoder's scores in this order. `Err` names the first label it lacks.
pub fn nli_label_positions(
    labels: &[impl AsRef<str>],
) -> std::result::Result<[usize; 3], &'static str> {
    let mut at = [0; 3];
    for (slot, want) in at.iter_mut().zip(NLI_LABELS) {
        *slot = labels
            .iter()
            .position(|l| l.as_ref().eq_ignore_ascii_case(want))
            .ok_or(want)?;
    }
    Ok(at)
}

/// How a pair is asked, and which answer words stand for which label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgePrompt {
    /// "Is the hypothesis true, false, or unknown given the premise?": true / unknown / false.
    TrueFalse,
    /// "Does the premise imply the hypothesis?": yes / maybe / no.
    YesNo,
}

impl JudgePrompt {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "true-false" => Some(JudgePrompt::TrueFalse),
            "yes-no" => Some(JudgePrompt::YesNo),
            _ => None,
        }
    }

    /// Answer words per label (entailment, neutral, contradiction).
    fn words(self) -> [&'static str; 3] {
        match self {
            JudgePrompt::TrueFalse => ["true", "unknown", "false"],
            JudgePrompt::YesNo => ["yes", "maybe", "no"],
        }
    }

    pub fn messages(self, premise: &str, hypothesis: &str) -> Vec<ChatMessage> {
        let (premise, hypothesis) = (premise.trim(), hypothesis.trim());
        let text = match self {
            JudgePrompt::TrueFalse => format!(
                "Read the premise and decide whether the hypothesis is true, false, or unknown \
                 based only on the premise.\n\nPremise: {premise}\nHypothesis: {hypothesis}\n\n\
                 Answer with one word: true, false, or unknown."
            ),
            JudgePrompt::YesNo => format!(
                "Premise: {premise}\nHypothesis: {hypothesis}\n\nDoes the premise imply the \
                 hypothesis? Answer with one word: yes (it must be true), no (it must be false), \
                 or maybe (the premise does not say)."
            ),
        };
        vec![ChatMessage::new("user", &text)]
    }
}

/// The judge for one model: the answer words' first tokens, resolved once, and the model's state
/// after the part of the prompt that every pair shares (computed on first use), so each pair
/// costs only its own tokens.
pub struct NliJudge {
    prompt: JudgePrompt,
    /// Per label, the token ids that start its answer word (lower case and capitalized).
    tokens: [Vec<u32>; 3],
    prefix: Option<PrefixState>,
    prefix_tried: bool,
    /// The batched f32 pass over the same GGUF ([`Prefill`]) and its shared prefix, made on the
    /// first [`NliJudge::scores_batch`]; `None` after a failed or disabled load.
    batched: Option<(Prefill, Option<PrefillPrefix>)>,
    batched_tried: bool,
}

/// Most prompt tokens (beyond the shared prefix) in one batched pass: bounds the pass' buffers
/// (about 60 MB for SmolLM2) and how long a deadline may wait for it.
const PASS_TOKENS: usize = 2048;

impl std::fmt::Debug for NliJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NliJudge")
            .field("prompt", &self.prompt)
            .field("tokens", &self.tokens)
            .field("prefix_tokens", &self.prefix.as_ref().map(PrefixState::len))
            .finish()
    }
}

impl NliJudge {
    pub fn new(model: &GenModel, prompt: JudgePrompt) -> Result<Self> {
        let mut tokens: [Vec<u32>; 3] = Default::default();
        for (slot, word) in tokens.iter_mut().zip(prompt.words()) {
            let mut cap = word.to_string();
            cap[..1].make_ascii_uppercase();
            for w in [word.to_string(), cap] {
                let ids = model.encode(&w)?;
                let first = *ids.first().ok_or_else(|| {
                    EngineError::invalid_model(
                        model.path(),
                        format!("the tokenizer gives no token for `{w}`"),
                    )
                })?;
                if !slot.contains(&first) {
                    slot.push(first);
                }
            }
        }
        // Two labels starting with the same token could not be told apart.
        for i in 0..3 {
            for j in i + 1..3 {
                if tokens[i].iter().any(|t| tokens[j].contains(t)) {
                    return Err(EngineError::invalid_model(
                        model.path(),
                        format!(
                            "the answer words of `{}` and `{}` start with the same token",
                            NLI_LABELS[i], NLI_LABELS[j]
                        ),
                    ));
                }
            }
        }
        Ok(NliJudge {
            prompt,
            tokens,
            prefix: None,
            prefix_tried: false,
            batched: None,
            batched_tried: false,
        })
    }

    pub fn prompt(&self) -> JudgePrompt {
        self.prompt
    }

    /// The prompt's token ids for one pair.
    pub fn prompt_ids(
        &self,
        model: &GenModel,
        premise: &str,
        hypothesis: &str,
    ) -> Result<Vec<u32>> {
        let text = model.render_chat(&self.prompt.messages(premise, hypothesis))?;
        model.encode(&text)
    }

    /// Probabilities of entailment, neutral, contradiction (summing to 1) from next-token logits.
    pub fn scores_from_logits(&self, logits: &[f32]) -> Result<[f32; 3]> {
        let mut label = [0f64; 3];
        for (l, ids) in label.iter_mut().zip(&self.tokens) {
            let xs: Vec<f64> = ids
                .iter()
                .map(|&t| {
                    logits.get(t as usize).map(|&x| x as f64).ok_or_else(|| {
                        EngineError::internal(format!(
                            "token {t} is outside the {} logits",
                            logits.len()
                        ))
                    })
                })
                .collect::<Result<_>>()?;
            let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            *l = m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        }
        let m = label.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = label.iter().map(|x| (x - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        Ok([
            (e[0] / sum) as f32,
            (e[1] / sum) as f32,
            (e[2] / sum) as f32,
        ])
    }

    /// The tokens every pair's prompt starts with: the rendered template up to the pair, less
    /// its last token (which could merge with the text after it). `None` when too short to matter.
    fn shared_prefix(&self, model: &GenModel) -> Result<Option<Vec<u32>>> {
        const MARK: &str = "\u{2063}\u{2063}PAIR\u{2063}\u{2063}";
        let text = model.render_chat(&self.prompt.messages(MARK, MARK))?;
        let Some(at) = text.find(MARK) else {
            return Ok(None);
        };
        let mut ids = model.encode(text[..at].trim_end())?;
        ids.pop();
        Ok((ids.len() >= 8).then_some(ids))
    }

    /// Judges one pair: one forward pass over the prompt (over its own part only, once the
    /// shared prefix is cached: the same logits up to float rounding).
    pub fn scores(
        &mut self,
        model: &mut GenModel,
        premise: &str,
        hypothesis: &str,
    ) -> Result<[f32; 3]> {
        if !self.prefix_tried {
            self.prefix_tried = true;
            if let Some(ids) = self.shared_prefix(model)? {
                self.prefix = model.prefix_state(&ids)?;
            }
        }
        let ids = self.prompt_ids(model, premise, hypothesis)?;
        let logits = match &self.prefix {
            Some(state) => model.next_token_logits_after(state, &ids)?,
            None => model.next_token_logits(&ids)?,
        };
        self.scores_from_logits(&logits)
    }

    /// Judges many pairs, in order. The prompts run in batched passes of the dequantized model
    /// ([`Prefill`]: all pairs' tokens in one padding-free pass of at most [`PASS_TOKENS`],
    /// after the shared prefix) when the model is on the CPU and its weights load; otherwise
    /// (or with the environment variable `NLPD_JUDGE_BATCH=0`) one pair at a time through
    /// [`NliJudge::scores`].
    /// `keep_going` is asked before each pass or pair; when it says no, the scores so far are
    /// returned (fewer than the pairs).
    pub fn scores_batch(
        &mut self,
        model: &mut GenModel,
        pairs: &[(&str, &str)],
        keep_going: &mut dyn FnMut() -> bool,
    ) -> Result<Vec<[f32; 3]>> {
        if !self.batched_tried {
            self.batched_tried = true;
            // The f32 copy runs on the CPU kernels: a model on a GPU keeps its own forward pass.
            let disabled = std::env::var("NLPD_JUDGE_BATCH").is_ok_and(|v| v == "0")
                || !model.device().is_cpu();
            if !disabled {
                match Prefill::load(model.path()) {
                    Ok(pre) => {
                        let prefix = match self.shared_prefix(model)? {
                            Some(ids) => Some(pre.prefix(&ids)?),
                            None => None,
                        };
                        self.batched = Some((pre, prefix));
                    }
                    Err(e) => tracing::warn!(
                        "NLI judge: batched pass unavailable ({e}); judging one pair at a time"
                    ),
                }
            }
        }
        let mut out = Vec::with_capacity(pairs.len());
        let Some((pre, prefix)) = &self.batched else {
            for (premise, hypothesis) in pairs {
                if !keep_going() {
                    break;
                }
                out.push(self.scores(model, premise, hypothesis)?);
            }
            return Ok(out);
        };
        let ids = pairs
            .iter()
            .map(|(p, h)| self.prompt_ids(model, p, h))
            .collect::<Result<Vec<_>>>()?;
        for ids in &ids {
            model.check_prompt(ids, 1)?;
        }
        let skip = prefix.as_ref().map_or(0, |p| p.ids().len());
        let mut start = 0;
        while start < ids.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < ids.len()
                && (end == start || tokens + ids[end].len().saturating_sub(skip) <= PASS_TOKENS)
            {
                tokens += ids[end].len().saturating_sub(skip);
                end += 1;
            }
            if !keep_going() {
                break;
            }
            let prompts: Vec<&[u32]> = ids[start..end].iter().map(Vec::as_slice).collect();
            let usable = prefix.as_ref().filter(|p| {
                prompts
                    .iter()
                    .all(|q| q.len() > skip && q[..skip] == *p.ids())
            });
            let logits = pre.next_token_logits(usable, &prompts)?;
            for l in &logits {
                out.push(self.scores_from_logits(l)?);
            }
            start = end;
        }
        Ok(out)
    }

    /// Judges one pair without the cached prefix (the reference for [`NliJudge::scores`]).
    pub fn scores_uncached(
        &self,
        model: &mut GenModel,
        premise: &str,
        hypothesis: &str,
    ) -> Result<[f32; 3]> {
        let ids = self.prompt_ids(model, premise, hypothesis)?;
        let logits = model.next_token_logits(&ids)?;
        self.scores_from_logits(&logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nli_labels_are_found_in_any_order_and_case() {
        assert_eq!(
            nli_label_positions(&["CONTRADICTION", "Entailment", "neutral"]),
            Ok([1, 2, 0])
        );
        assert_eq!(
            nli_label_positions(&["entailment", "not_entailment"]),
            Err("neutral")
        );
    }

    #[test]
    fn scores_renormalize_the_answer_words_and_sum_to_one() {
        let judge = NliJudge {
            prompt: JudgePrompt::TrueFalse,
            tokens: [vec![1, 2], vec![3], vec![4]],
            prefix: None,
            prefix_tried: false,
            batched: None,
            batched_tried: false,
        };
        // Token 0 (not an answer word) is the most likely: it does not count.
        let logits = [10.0, 1.0, 1.0, 1.0, 0.0];
        let s = judge.scores_from_logits(&logits).unwrap();
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // Two spellings of entailment add up: e + e against e and 1.
        let e = std::f32::consts::E;
        assert!((s[0] - 2.0 * e / (3.0 * e + 1.0)).abs() < 1e-6, "{s:?}");
        assert!((s[1] - e / (3.0 * e + 1.0)).abs() < 1e-6, "{s:?}");
        assert!(judge.scores_from_logits(&logits[..3]).is_err());
    }

    #[test]
    fn prompts_carry_the_pair_and_the_answer_words() {
        for p in [JudgePrompt::TrueFalse, JudgePrompt::YesNo] {
            let m = p.messages(" A man eats. ", "Someone eats.");
            assert_eq!(m.len(), 1);
            assert!(m[0].content.contains("Premise: A man eats.\n"));
            assert!(m[0].content.contains("Hypothesis: Someone eats."));
            for w in p.words() {
                assert!(m[0].content.contains(w), "{p:?}: {w}");
            }
        }
        assert_eq!(JudgePrompt::parse("yes-no"), Some(JudgePrompt::YesNo));
        assert_eq!(JudgePrompt::parse("nope"), None);
    }
}
