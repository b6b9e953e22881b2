//! Splitting documents into passages: sentence-aware and bounded in tokens.
//!
//! 1. The text is cut into sentences: after `.`, `!`, `?` or `…` (and any closing quotes or
//!    brackets) followed by white space and a capital letter (or a letter of a script without
//!    case), a digit, a quote or a bracket, unless the
//!    word before the period is a common abbreviation or an initial; and at every line break that
//!    ends a paragraph or a list item.
//! 2. Sentences are packed greedily into passages of at most `max_tokens` word pieces (counted by
//!    the embedding model's tokenizer, without special tokens); a sentence never straddles two
//!    passages unless it alone is longer than `max_tokens`, in which case it is cut at word
//!    boundaries.
//!
//! Passages are byte ranges of the original text, trimmed of surrounding white space.

use std::ops::Range;

/// Words before a period that do not end a sentence (compared in lower case, without the period).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "cf", "al",
    "fig", "no", "vol", "inc", "ltd", "co", "corp", "approx", "jan", "feb", "mar", "apr", "jun",
    "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "gen", "col", "lt", "sgt",
    "rev", "est", "dept",
];

fn is_closing(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '}' | '»' | '”' | '’')
}

/// A capital letter, a letter of a script without case (CJK, ...), a digit or an opening mark.
fn starts_sentence(c: char) -> bool {
    (c.is_alphabetic() && !c.is_lowercase())
        || c.is_ascii_digit()
        || matches!(c, '"' | '\'' | '(' | '[' | '«' | '“' | '‘')
}

/// The word just before byte `end` (where a period sits), lower case.
fn word_before(text: &str, end: usize) -> String {
    // The boundary character may be several bytes long (U+1680, U+3000 are white space).
    let start = text[..end]
        .char_indices()
        .rev()
        .find(|&(_, c)| c.is_whitespace() || c == '(' || c == '"')
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    text[start..end].to_lowercase()
}

/// Sentence byte ranges (trimmed, non-empty) covering the text's non-blank parts.
pub fn sentences(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let mut cut = None;
        if c == '\n' {
            // A line break ends a sentence when a blank line or a list item follows, or when the
            // line itself ends in sentence punctuation (handled below); soft wraps are joined.
            let rest = text[at + 1..].trim_start_matches([' ', '\t', '\r']);
            let para = rest.starts_with('\n')
                || rest.starts_with(['-', '*', '•'])
                || rest
                    .split_once(['.', ')'])
                    .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|d| d.is_ascii_digit()));
            if para {
                cut = Some(at);
            }
        } else if matches!(c, '.' | '!' | '?' | '…') {
            let mut j = i + 1;
            while j < chars.len()
                && (matches!(chars[j].1, '.' | '!' | '?') || is_closing(chars[j].1))
            {
                j += 1;
            }
            let end = chars.get(j).map(|&(b, _)| b).unwrap_or(text.len());
            let mut k = j;
            while k < chars.len() && chars[k].1.is_whitespace() {
                k += 1;
            }
            let spaced = k > j || j == chars.len();
            let next_ok = chars.get(k).is_none_or(|&(_, n)| starts_sentence(n));
            let abbrev = c == '.' && {
                let w = word_before(text, at);
                ABBREVIATIONS.contains(&w.as_str())
                    || (w.chars().count() == 1 && w.chars().all(char::is_alphabetic))
            };
            if spaced && next_ok && !abbrev {
                cut = Some(end);
            }
            i = j.max(i + 1) - 1;
        }
        if let Some(end) = cut {
            push_trimmed(text, start..end, &mut out);
            start = end;
        }
        i += 1;
    }
    push_trimmed(text, start..text.len(), &mut out);
    out
}

fn push_trimmed(text: &str, r: Range<usize>, out: &mut Vec<Range<usize>>) {
    let s = &text[r.clone()];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if lead + trail < s.len() {
        out.push(r.start + lead..r.end - trail);
    }
}

/// Word byte ranges of a span (split at white space).
fn words(text: &str, r: Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text[r.clone()].char_indices() {
        let at = r.start + i;
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push(s..at);
                start = None;
            }
            (false, None) => start = Some(at),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..r.end);
    }
    out
}

/// Passages of at most `max_tokens` tokens (by `count`, which counts a string's word pieces),
/// each one or more whole sentences, or part of a sentence longer than `max_tokens`. A single
/// word longer than `max_tokens` makes a passage of its own (the encoder truncates it).
pub fn passages(
    text: &str,
    max_tokens: usize,
    count: impl Fn(&str) -> usize,
) -> Vec<(Range<usize>, usize)> {
    let max_tokens = max_tokens.max(1);
    let mut out: Vec<(Range<usize>, usize)> = Vec::new();
    let mut cur: Option<(Range<usize>, usize)> = None;
    let flush = |cur: &mut Option<(Range<usize>, usize)>, out: &mut Vec<(Range<usize>, usize)>| {
        if let Some(c) = cur.take() {
            out.push(c);
        }
    };
    for s in sentences(text) {
        let n = count(&text[s.clone()]);
        if n > max_tokens {
            flush(&mut cur, &mut out);
            // Cut the long sentence at word boundaries; a word's pieces do not depend on its
            // neighbours (the tokenizers split at white space first), so counts add up.
            let mut part: Option<(Range<usize>, usize)> = None;
            for w in words(text, s) {
                let wn = count(&text[w.clone()]);
                match &mut part {
                    Some((r, pn)) if *pn + wn <= max_tokens => {
                        r.end = w.end;
                        *pn += wn;
                    }
                    _ => {
                        flush(&mut part, &mut out);
                        part = Some((w, wn));
                    }
                }
            }
            flush(&mut part, &mut out);
            continue;
        }
        match &mut cur {
            Some((r, cn)) if *cn + n <= max_tokens => {
                r.end = s.end;
                *cn += n;
            }
            _ => {
                flush(&mut cur, &mut out);
                cur = Some((s, n));
            }
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// Byte offset → character offset, for a sorted list of byte offsets.
pub fn char_offsets(text: &str, bytes: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut chars = 0;
    let mut last = 0;
    for &b in bytes {
        chars += text[last..b].chars().count();
        last = b;
        out.push(chars);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sents(t: &str) -> Vec<&str> {
        sentences(t).into_iter().map(|r| &t[r]).collect()
    }

    fn words_count(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn sentences_end_at_punctuation_before_a_capital() {
        assert_eq!(
            sents("The tower is in Paris. It opened in 1889! Was it tall? Yes."),
            vec![
                "The tower is in Paris.",
                "It opened in 1889!",
                "Was it tall?",
                "Yes."
            ]
        );
    }

    #[test]
    fn abbreviations_initials_and_decimals_do_not_end_sentences() {
        assert_eq!(
            sents("Dr. Smith met J. R. Tolkien in the U.S. Army. Pi is 3.14 and e.g. more."),
            vec![
                "Dr. Smith met J. R. Tolkien in the U.S. Army.",
                "Pi is 3.14 and e.g. more."
            ]
        );
        assert_eq!(
            sents("see fig. 3 for details"),
            vec!["see fig. 3 for details"]
        );
    }

    #[test]
    fn quotes_stay_with_their_sentence_and_lower_case_continues() {
        assert_eq!(
            sents("He said \"stop.\" Then he left. version 2.0. is out"),
            vec!["He said \"stop.\"", "Then he left. version 2.0. is out"]
        );
    }

    #[test]
    fn paragraphs_and_list_items_end_sentences_but_soft_wraps_do_not() {
        assert_eq!(
            sents("A title\n\nSome text that\nwraps here\n- item one\n- item two\n1. first"),
            vec![
                "A title",
                "Some text that\nwraps here",
                "- item one",
                "- item two",
                "1. first"
            ]
        );
    }

    #[test]
    fn blank_and_unicode_texts() {
        assert!(sentences("").is_empty());
        assert!(sentences("  \n\n ").is_empty());
        assert_eq!(
            sents("Ça va… Très bien. 東京は日本の首都です。"),
            vec!["Ça va…", "Très bien.", "東京は日本の首都です。"]
        );
    }

    #[test]
    fn passages_pack_whole_sentences_up_to_the_budget() {
        let t = "One two three. Four five six. Seven eight nine ten. Eleven.";
        let p: Vec<(&str, usize)> = passages(t, 7, words_count)
            .into_iter()
            .map(|(r, n)| (&t[r], n))
            .collect();
        assert_eq!(
            p,
            vec![
                ("One two three. Four five six.", 6),
                ("Seven eight nine ten. Eleven.", 5)
            ]
        );
    }

    #[test]
    fn a_long_sentence_is_cut_at_words() {
        let t = "Short one. Aa bb cc dd ee ff gg hh ii jj. Tail.";
        let p: Vec<&str> = passages(t, 4, words_count)
            .into_iter()
            .map(|(r, _)| &t[r])
            .collect();
        assert_eq!(
            p,
            vec![
                "Short one.",
                "Aa bb cc dd",
                "ee ff gg hh",
                "ii jj.",
                "Tail."
            ]
        );
        for (r, n) in passages(t, 4, words_count) {
            assert!(n <= 4 && n == words_count(&t[r]));
        }
    }

    #[test]
    fn multi_byte_white_space_before_a_period_is_a_word_boundary() {
        // U+1680 (Ogham space mark) and U+3000 (ideographic space) are 3 bytes long; schemathesis
        // found the word-before-the-period lookup cutting inside one (a panic answered 500).
        let t = "᚛ᚄᚓᚐ\u{1680}ᚑᚄᚂ᚜:X¼.\u{3000}Dr.\u{3000}Ab. Ok";
        assert_eq!(word_before(t, t.find('.').unwrap()), "ᚑᚄᚂ᚜:x¼");
        let s = sents(t);
        assert_eq!(
            s.join(" ").split_whitespace().count(),
            t.split_whitespace().count()
        );
        for (r, _) in passages(t, 2, words_count) {
            assert!(!t[r].is_empty());
        }
    }

    #[test]
    fn every_white_space_and_punctuation_mix_splits_without_panicking() {
        let spaces: Vec<char> = (0..=0x3000u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .collect();
        for &w in &spaces {
            for p in ['.', '!', '?', '…'] {
                let t = format!("{w}ᚋ{w}Dr{p}{w}X{p}\u{1F600}{p}{w}\n{w}-{w}é{p}{w}({w}Q{p}");
                let joined = sents(&t).join(" ");
                assert_eq!(
                    joined.split_whitespace().count(),
                    t.split_whitespace().count(),
                    "{t:?}"
                );
                for (r, _) in passages(&t, 1, words_count) {
                    assert!(t.is_char_boundary(r.start) && t.is_char_boundary(r.end));
                }
            }
        }
    }

    #[test]
    fn char_offsets_count_characters() {
        let t = "é1 ü2";
        assert_eq!(char_offsets(t, &[0, 3, 4, t.len()]), vec![0, 2, 3, 5]);
    }
}
