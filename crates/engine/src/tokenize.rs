//! Tokenization for encoders: the model's `tokenizer.json` with its own padding and truncation turned
//! off, nlpd's truncation (to the model's limit) applied instead, and character offsets kept.

use crate::error::{tok_err, EngineError, Result};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokenizers::{
    PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// One input of an encoder task: a text, or a pair (premise/hypothesis, query/document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextInput<'a> {
    Single(&'a str),
    Pair(&'a str, &'a str),
}

impl<'a> TextInput<'a> {
    pub fn first(&self) -> &'a str {
        match self {
            TextInput::Single(a) | TextInput::Pair(a, _) => a,
        }
    }
}

/// The tokens of one input, with everything the heads need.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Character (not byte) offsets into the input text of each token; `(0, 0)` for special tokens.
    pub offsets: Vec<(usize, usize)>,
    /// Index of the pre-tokenized word each token belongs to (`None` for special tokens).
    pub word_ids: Vec<Option<u32>>,
    /// Which sequence of a pair the token comes from (`None` for special tokens).
    pub sequence_ids: Vec<Option<usize>>,
    pub special: Vec<bool>,
    /// True when the input was cut to the model's limit.
    pub truncated: bool,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A tokenizer bound to one model's length limit.
#[derive(Clone)]
pub struct TextTokenizer {
    truncating: Tokenizer,
    /// The same tokenizer without truncation, made on first need (length errors, [`Self::keep_end`]).
    untruncated: Arc<OnceLock<Tokenizer>>,
    max_len: usize,
    pad_id: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, drops its padding and truncation, and truncates to `max_len` instead.
    pub fn from_file(path: &Path, max_len: usize, fallback_pad_id: u32) -> Result<Self> {
        if !path.is_file() {
            return Err(EngineError::invalid_model(
                path.parent().unwrap_or(path),
                "tokenizer.json is missing",
            ));
        }
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| EngineError::invalid_model(path, format!("cannot load tokenizer: {e}")))?;
        Self::new(tokenizer, max_len, fallback_pad_id)
    }

    pub fn new(mut tokenizer: Tokenizer, max_len: usize, fallback_pad_id: u32) -> Result<Self> {
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .unwrap_or(fallback_pad_id);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(tok_err)?;
        Ok(TextTokenizer {
            truncating: tokenizer,
            untruncated: Arc::new(OnceLock::new()),
            max_len,
            pad_id,
        })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.truncating
    }

    fn untruncated(&self) -> &Tokenizer {
        self.untruncated.get_or_init(|| {
            let mut full = self.truncating.clone();
            // Turning truncation off cannot fail (only invalid parameters are refused).
            let _ = full.with_truncation(None);
            full
        })
    }

    /// Truncation from the start, for a single text: the byte index into `text` where the part
    /// to keep begins, so that `prefix + &text[i..]` fits the model's limit with its special
    /// tokens (`0` when it fits whole). `prefix` (a prompt) is always kept. The cut falls on the
    /// start of a word (a pre-tokenized word, so no word piece is split off), hence the kept
    /// part can be a few tokens shorter than the limit. When even the prefix leaves no room,
    /// the text's last word is kept (and the end truncation that follows cuts the rest).
    pub fn keep_end(&self, prefix: &str, text: &str) -> Result<usize> {
        let full = self.untruncated();
        let specials = full
            .get_post_processor()
            .map(|p| p.added_tokens(false))
            .unwrap_or(0);
        let budget = self.max_len.saturating_sub(specials).max(1);
        let prefix_chars = prefix.chars().count();
        let mut cut = 0usize;
        // A cut text can tokenize slightly differently at its new start (byte-level BPE loses
        // the leading space): check again, and move on by words until it fits.
        for _ in 0..8 {
            let joined = format!("{prefix}{}", &text[cut..]);
            let enc = full
                .encode_char_offsets(joined.as_str(), false)
                .map_err(tok_err)?;
            let n = enc.len();
            if n <= budget {
                return Ok(cut);
            }
            let offsets = enc.get_offsets();
            let words = enc.get_word_ids();
            let Some(first) = offsets.iter().position(|o| o.0 >= prefix_chars) else {
                return Ok(cut);
            };
            // Drop the first `n - budget` tokens, then on to the next word start; when the
            // last word itself is cut, back to its start instead.
            let continues = |k: usize| k > first && words[k].is_some() && words[k] == words[k - 1];
            let want = (first + (n - budget)).min(n - 1);
            let mut k = want;
            while k < n && continues(k) {
                k += 1;
            }
            if k >= n {
                k = want;
                while continues(k) {
                    k -= 1;
                }
            }
            let chars = offsets[k].0.saturating_sub(prefix_chars);
            let rest = &text[cut..];
            let step = rest
                .char_indices()
                .nth(chars)
                .map_or(rest.len(), |(b, _)| b);
            if step == 0 {
                return Ok(cut);
            }
            cut += step;
        }
        Ok(cut)
    }

    /// Encodes one input. With `truncate == false`, an input longer than the limit is an error
    /// naming the limit (`index` is the input's position in the caller's list).
    pub fn encode(&self, input: TextInput<'_>, truncate: bool, index: usize) -> Result<Encoded> {
        let check = |text: &str, field: &str| {
            if text.trim().is_empty() {
                Err(EngineError::EmptyInput {
                    field: format!("{field}[{index}]"),
                })
            } else {
                Ok(())
            }
        };
        let enc = match input {
            TextInput::Single(a) => {
                check(a, "inputs")?;
                self.truncating.encode_char_offsets(a, true)
            }
            TextInput::Pair(a, b) => {
                check(a, "inputs")?;
                check(b, "inputs")?;
                self.truncating.encode_char_offsets((a, b), true)
            }
        }
        .map_err(tok_err)?;
        let truncated = !enc.get_overflowing().is_empty();
        if truncated && !truncate {
            let full = self.untruncated();
            let tokens = match input {
                TextInput::Single(a) => full.encode(a, true),
                TextInput::Pair(a, b) => full.encode((a, b), true),
            }
            .map_err(tok_err)?
            .len();
            return Err(EngineError::InputTooLong {
                index,
                tokens,
                limit: self.max_len,
            });
        }
        let special: Vec<bool> = enc
            .get_special_tokens_mask()
            .iter()
            .map(|&m| m == 1)
            .collect();
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            offsets: enc.get_offsets().to_vec(),
            word_ids: enc.get_word_ids().to_vec(),
            sequence_ids: enc.get_sequence_ids(),
            special,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(max_len: usize) -> TextTokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/golden/tiny/bert-base/tokenizer.json");
        TextTokenizer::from_file(&path, max_len, 0).unwrap()
    }

    fn words(enc: &Encoded, t: &TextTokenizer) -> Vec<String> {
        enc.ids
            .iter()
            .map(|&i| t.inner().id_to_token(i).unwrap_or_default())
            .collect()
    }

    #[test]
    fn keep_end_keeps_the_last_tokens_that_fit() {
        let t = tiny(8); // [CLS] + 6 + [SEP]
        let text = "a b c d e f g h i j";
        assert_eq!(t.keep_end("", "a b c").unwrap(), 0);
        let cut = t.keep_end("", text).unwrap();
        assert_eq!(&text[cut..], "e f g h i j");
        let enc = t.encode(TextInput::Single(&text[cut..]), false, 0).unwrap();
        assert_eq!(enc.len(), 8);
        // The prefix (a prompt) is kept and its tokens count.
        let cut = t.keep_end("q : ", text).unwrap();
        assert_eq!(&text[cut..], "g h i j");
        let kept = format!("q : {}", &text[cut..]);
        let enc = t.encode(TextInput::Single(&kept), false, 0).unwrap();
        assert_eq!(words(&enc, &t)[..3], ["[CLS]", "q", ":"]);
        assert_eq!(enc.len(), 8);
    }

    #[test]
    fn keep_end_cuts_at_word_starts_and_counts_characters() {
        let t = tiny(6);
        // Multi-byte characters before the cut: the index is a byte index on a char boundary.
        let text = "é é é é a b c";
        let cut = t.keep_end("", text).unwrap();
        assert!(text.is_char_boundary(cut));
        let kept = &text[cut..];
        let enc = t.encode(TextInput::Single(kept), false, 0).unwrap();
        assert!(enc.len() <= 6, "{kept:?}");
        assert!(kept.ends_with("a b c"), "{kept:?}");
        // A word of several pieces is never split.
        let text = "a b c d zzzzzzzz";
        let cut = t.keep_end("", text).unwrap();
        assert!(
            cut > 0 && text[..cut].ends_with(' '),
            "cut inside a word: {:?}",
            &text[cut..]
        );
    }

    #[test]
    fn too_long_without_truncation_names_the_real_length() {
        let t = tiny(8);
        let e = t
            .encode(TextInput::Single("a b c d e f g h i j"), false, 3)
            .unwrap_err();
        assert!(
            matches!(
                e,
                EngineError::InputTooLong {
                    index: 3,
                    tokens: 12,
                    limit: 8
                }
            ),
            "{e:?}"
        );
    }
}
