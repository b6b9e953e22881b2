//! Tokenization for encoders: the model's `tokenizer.json` with its own padding and truncation turned
//! off, nlpd's truncation (to the model's limit) applied instead, and character offsets kept.

use crate::error::{tok_err, EngineError, Result};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

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
            let mut full = self.truncating.clone();
            full.with_truncation(None).map_err(tok_err)?;
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
