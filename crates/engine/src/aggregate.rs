//! Token labels → entity spans (BIO aggregation over the tokenizer's words), as specified in
//! DESIGN.md: special tokens are skipped; a continuation piece joins the open span whatever its own
//! label; `B-T` opens a span of type T; `I-T` extends an open T span or opens a new one; `O` closes.

use serde::Serialize;

/// An entity span with character offsets into the original text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entity {
    pub label: String,
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub score: f32,
}

/// One token's prediction (aggregation `none`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLabel {
    pub label: String,
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub score: f32,
}

/// A token as the aggregator sees it.
#[derive(Debug, Clone, Copy)]
pub struct TokenView<'a> {
    pub label: &'a str,
    pub score: f32,
    pub start: usize,
    pub end: usize,
    pub word: Option<u32>,
    pub special: bool,
}

/// Slices `text` by character offsets (not bytes); out-of-range offsets are clamped.
pub fn char_slice(text: &str, start: usize, end: usize) -> String {
    text.chars()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect()
}

fn split_bio(label: &str) -> (Option<char>, &str) {
    match label.split_once('-') {
        Some((p, t)) if p == "B" || p == "I" || p == "E" || p == "S" => (p.chars().next(), t),
        _ if label == "O" => (Some('O'), ""),
        _ => (None, label),
    }
}

struct Open {
    label: String,
    start: usize,
    end: usize,
    scores: Vec<f32>,
}

impl Open {
    fn close(self, text: &str) -> Entity {
        let score = self.scores.iter().sum::<f32>() / self.scores.len().max(1) as f32;
        Entity {
            text: char_slice(text, self.start, self.end),
            label: self.label,
            start: self.start,
            end: self.end,
            score,
        }
    }
}

/// Aggregates token predictions of one text into entity spans (`simple`), exactly by the rules
/// above.
pub fn aggregate_simple(text: &str, tokens: &[TokenView<'_>]) -> Vec<Entity> {
    aggregate(text, tokens, false)
}

/// [`aggregate_simple`], then spans of the same type that touch (no character between them) are
/// joined. BERT's pre-tokenizer makes every punctuation mark a word of its own, so a model that
/// tags each piece of `alex@example.com` as `B-EMAIL` would otherwise yield five spans.
pub fn aggregate_joined(text: &str, tokens: &[TokenView<'_>]) -> Vec<Entity> {
    aggregate(text, tokens, true)
}

fn aggregate(text: &str, tokens: &[TokenView<'_>], join_touching: bool) -> Vec<Entity> {
    let mut done: Vec<Open> = Vec::new();
    let mut open: Option<Open> = None;
    let mut prev_word: Option<u32> = None;
    let start_span =
        |done: &mut Vec<Open>, open: &mut Option<Open>, kind: &str, tok: &TokenView<'_>| {
            if let Some(o) = open.take() {
                done.push(o);
            }
            if join_touching {
                if let Some(last) = done.last() {
                    if last.label == kind && last.end == tok.start {
                        let mut o = done.pop().expect("checked above");
                        o.end = tok.end;
                        o.scores.push(tok.score);
                        *open = Some(o);
                        return;
                    }
                }
            }
            *open = Some(Open {
                label: kind.to_string(),
                start: tok.start,
                end: tok.end,
                scores: vec![tok.score],
            });
        };
    for tok in tokens.iter().filter(|t| !t.special) {
        let continuation = tok.word.is_some() && tok.word == prev_word;
        prev_word = tok.word;
        if continuation {
            if let Some(o) = open.as_mut() {
                o.end = tok.end;
                o.scores.push(tok.score);
                continue;
            }
        }
        let (prefix, kind) = split_bio(tok.label);
        match prefix {
            Some('O') => {
                if let Some(o) = open.take() {
                    done.push(o);
                }
            }
            Some('B') | Some('S') => start_span(&mut done, &mut open, kind, tok),
            _ => match open.as_mut() {
                // `I-T`, `E-T` or a bare label: extend a span of the same type, else open one.
                Some(o) if o.label == kind => {
                    o.end = tok.end;
                    o.scores.push(tok.score);
                }
                _ => start_span(&mut done, &mut open, kind, tok),
            },
        }
    }
    done.extend(open);
    done.into_iter().map(|o| o.close(text)).collect()
}

/// Every non-special token with its label (`none`).
pub fn tokens_none(text: &str, tokens: &[TokenView<'_>]) -> Vec<TokenLabel> {
    tokens
        .iter()
        .filter(|t| !t.special)
        .map(|t| TokenLabel {
            label: t.label.to_string(),
            start: t.start,
            end: t.end,
            text: char_slice(text, t.start, t.end),
            score: t.score,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(label: &str, start: usize, end: usize, word: u32) -> TokenView<'_> {
        TokenView {
            label,
            score: 0.5,
            start,
            end,
            word: Some(word),
            special: false,
        }
    }

    fn special() -> TokenView<'static> {
        TokenView {
            label: "B-PER",
            score: 1.0,
            start: 0,
            end: 0,
            word: None,
            special: true,
        }
    }

    #[test]
    fn continuation_joins_whatever_its_label() {
        // "Alexandra lives" -> alex ##andra lives; ##andra predicted O must still join.
        let text = "Alexandra lives";
        let toks = [
            special(),
            tok("B-PER", 0, 4, 0),
            tok("O", 4, 9, 0),
            tok("O", 10, 15, 1),
            special(),
        ];
        let e = aggregate_simple(text, &toks);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (
                e[0].label.as_str(),
                e[0].start,
                e[0].end,
                e[0].text.as_str()
            ),
            ("PER", 0, 9, "Alexandra")
        );
    }

    #[test]
    fn b_closes_and_i_extends_only_same_type() {
        let text = "Ann Lee Paris";
        let toks = [
            tok("B-PER", 0, 3, 0),
            tok("I-PER", 4, 7, 1),
            tok("I-LOC", 8, 13, 2),
        ];
        let e = aggregate_simple(text, &toks);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].text, "Ann Lee");
        assert_eq!((e[1].label.as_str(), e[1].text.as_str()), ("LOC", "Paris"));
        let toks = [tok("B-PER", 0, 3, 0), tok("B-PER", 4, 7, 1)];
        assert_eq!(aggregate_simple(text, &toks).len(), 2);
    }

    #[test]
    fn continuation_without_open_span_uses_its_label() {
        let text = "xy";
        let toks = [tok("O", 0, 1, 0), tok("I-ORG", 1, 2, 0)];
        let e = aggregate_simple(text, &toks);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].label.as_str(), e[0].text.as_str()), ("ORG", "y"));
    }

    #[test]
    fn offsets_are_characters_not_bytes() {
        let text = "Zoë Ünal ok";
        let toks = [
            tok("B-PER", 0, 3, 0),
            tok("I-PER", 4, 8, 1),
            tok("O", 9, 11, 2),
        ];
        let e = aggregate_simple(text, &toks);
        assert_eq!(e[0].text, "Zoë Ünal");
        assert_eq!(e[0].end, 8);
    }

    #[test]
    fn joined_merges_touching_spans_of_one_type() {
        let text = "a@b.c x";
        let toks = [
            tok("B-EMAIL", 0, 1, 0),
            tok("B-EMAIL", 1, 2, 1),
            tok("B-EMAIL", 2, 3, 2),
            tok("B-EMAIL", 3, 4, 3),
            tok("B-EMAIL", 4, 5, 4),
            tok("B-EMAIL", 6, 7, 5),
        ];
        assert_eq!(aggregate_simple(text, &toks).len(), 6);
        let e = aggregate_joined(text, &toks);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].text.as_str(), e[0].start, e[0].end), ("a@b.c", 0, 5));
        assert_eq!(e[1].text, "x");
    }

    #[test]
    fn score_is_mean_of_token_scores() {
        let mut toks = [tok("B-PER", 0, 1, 0), tok("I-PER", 2, 3, 1)];
        toks[0].score = 0.9;
        toks[1].score = 0.7;
        let e = aggregate_simple("a b", &toks);
        assert!((e[0].score - 0.8).abs() < 1e-6);
    }
}
