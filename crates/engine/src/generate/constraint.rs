//! Structured output: decoding constrained to a JSON schema with llguidance.
//!
//! Three pieces, each built once at the right scope:
//! - [`OutputConstraint`]: a request's JSON schema compiled into a grammar (once per request,
//!   without the model: schema errors surface before any generation starts);
//! - [`ConstraintVocab`]: the model's token trie (every token id mapped to its bytes) and
//!   llguidance's `ParserFactory` over it (once per loaded model, on first use);
//! - [`ConstrainedDecoder`]: one generation's parser state, which masks the logits of each step
//!   (tokens the grammar forbids get `-inf`) and advances with each sampled token.

use llguidance::api::{GrammarInit, ParserLimits, TopLevelGrammar};
use llguidance::earley::lexerspec::LexerSpec;
use llguidance::earley::Grammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use tokenizers::Tokenizer;

/// Why a constraint could not be compiled or followed.
#[derive(Debug, thiserror::Error)]
pub enum ConstraintError {
    /// The JSON schema is invalid or uses something llguidance does not support (the caller's
    /// input); the message is llguidance's.
    #[error("{0}")]
    InvalidSchema(String),
    /// The model's tokenizer cannot be mapped to bytes (neither byte-level nor byte-fallback BPE).
    #[error("structured output is not available for this model's tokenizer: {0}")]
    UnsupportedTokenizer(String),
    /// The parser failed mid-generation (a broken invariant, not the caller's input).
    #[error("the output constraint failed: {0}")]
    Decoding(String),
}

/// What a generation's output must be: a JSON value matching a schema, compiled into a grammar
/// once per request. Cheap to clone (shared).
#[derive(Clone)]
pub struct OutputConstraint {
    inner: Arc<Compiled>,
}

struct Compiled {
    grammar: Grammar,
    lexer: LexerSpec,
    /// Canonical text of what was compiled: the result cache's key part.
    key: String,
}

impl std::fmt::Debug for OutputConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = &self.inner.key;
        let shown: String = key.chars().take(80).collect();
        f.debug_struct("OutputConstraint")
            .field("key", &shown)
            .field("key_len", &key.len())
            .finish()
    }
}

impl OutputConstraint {
    /// Any JSON object (OpenAI's `json_object`).
    pub fn json_object() -> Result<Self, ConstraintError> {
        Self::compile(
            serde_json::json!({"type": "object"}),
            "json_object".to_string(),
        )
    }

    /// A JSON value valid against `schema` (OpenAI's `json_schema`; JSON Schema draft 2020-12 as
    /// far as llguidance supports it, local `#/...` `$ref`s included). An invalid or unsupported
    /// schema is [`ConstraintError::InvalidSchema`] with llguidance's message.
    pub fn json_schema(schema: &Value) -> Result<Self, ConstraintError> {
        if !(schema.is_object() || schema.is_boolean()) {
            return Err(ConstraintError::InvalidSchema(
                "a JSON schema must be an object (or a boolean)".into(),
            ));
        }
        let key = format!("json_schema:{schema}");
        Self::compile(schema.clone(), key)
    }

    fn compile(schema: Value, key: String) -> Result<Self, ConstraintError> {
        let init = GrammarInit::Serialized(TopLevelGrammar::from_json_schema(schema));
        // llguidance reports bad schemas as errors, but a panic on odd input must not take the
        // server down: caught and reported the same way.
        let (grammar, lexer) = llguidance::panic_utils::catch_unwind(|| {
            init.to_internal(None, ParserLimits::default())
        })
        .map_err(|e| ConstraintError::InvalidSchema(e.to_string()))?;
        Ok(OutputConstraint {
            inner: Arc::new(Compiled {
                grammar,
                lexer,
                key,
            }),
        })
    }

    /// What was compiled, as text: equal keys mean equal constraints (the result cache's key).
    pub fn cache_key(&self) -> &str {
        &self.inner.key
    }
}

/// A model's vocabulary as llguidance sees it: the bytes of every token and the parser factory
/// over them. Built once per loaded model ([`ConstraintVocab::new`] takes ~0.1-0.3 s for a 49k
/// vocabulary).
pub struct ConstraintVocab {
    factory: ParserFactory,
}

impl ConstraintVocab {
    /// Maps each token of `tokenizer` to its bytes: byte-level BPE (GPT-2's printable characters,
    /// `Ġ` for a space) or SentencePiece-style BPE (`▁` for a space, `<0xNN>` byte tokens). Special
    /// tokens (and the end-of-sequence ones, whatever their flag) are marked special: the grammar
    /// never produces them as text, and allows the `eos_ids` exactly where the output may end.
    pub fn new(tokenizer: &Tokenizer, eos_ids: &[u32]) -> Result<Self, ConstraintError> {
        let words = token_bytes(tokenizer, eos_ids)?;
        let vocab_size = words.len() as u32;
        let eos: Vec<TokenId> = eos_ids
            .iter()
            .copied()
            .filter(|&t| t < vocab_size)
            .collect();
        let Some(&first_eos) = eos.first() else {
            return Err(ConstraintError::UnsupportedTokenizer(
                "the model has no end-of-sequence token".into(),
            ));
        };
        let info = TokRxInfo::new(vocab_size, first_eos);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos);
        let env: TokEnv = Arc::new(NlpdTokEnv {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| ConstraintError::UnsupportedTokenizer(e.to_string()))?;
        // Warnings would go to stderr; errors come back as values.
        factory.quiet();
        // Parser errors mid-generation are internal: keep them short (no grammar dump).
        factory.limits_mut().verbose_errors = false;
        Ok(ConstraintVocab { factory })
    }

    /// The vocabulary size the trie covers (token ids beyond it are never allowed).
    pub fn vocab_size(&self) -> usize {
        self.factory.tok_env().tok_trie().vocab_size()
    }

    /// The bytes token `id` stands for (special tokens start with 0xff).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let trie = self.factory.tok_env().tok_trie();
        if (id as usize) < trie.vocab_size() {
            trie.token(id).to_vec()
        } else {
            Vec::new()
        }
    }

    /// A fresh parser for one generation under `constraint`.
    pub fn decoder(
        &self,
        constraint: &OutputConstraint,
    ) -> Result<ConstrainedDecoder, ConstraintError> {
        let c = &constraint.inner;
        let init = GrammarInit::Internal(c.grammar.clone(), c.lexer.clone());
        let parser = self
            .factory
            .create_parser_from_init_default(init)
            .map_err(|e| ConstraintError::InvalidSchema(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(ConstraintError::InvalidSchema(e));
        }
        Ok(ConstrainedDecoder {
            matcher,
            vocab_size: self.vocab_size(),
        })
    }
}

/// One generation's grammar state.
pub struct ConstrainedDecoder {
    matcher: Matcher,
    vocab_size: usize,
}

impl ConstrainedDecoder {
    /// Sets the logit of every token the grammar does not allow next to `-inf` (ids beyond the
    /// tokenizer's vocabulary included). The end-of-sequence tokens stay allowed only where the
    /// output may end; once the grammar is complete they are the only ones allowed.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        let mask = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| ConstraintError::Decoding(e.to_string()))?;
        if mask.is_zero() {
            return Err(ConstraintError::Decoding(
                "the grammar allows no token here".into(),
            ));
        }
        let n = logits.len().min(self.vocab_size).min(mask.len());
        mask.iter_unset_entries(|i| {
            if i < n {
                logits[i] = f32::NEG_INFINITY;
            }
        });
        for l in logits.iter_mut().skip(n) {
            *l = f32::NEG_INFINITY;
        }
        Ok(())
    }

    /// Advances the grammar with the sampled token (one the mask allowed).
    pub fn commit(&mut self, token: u32) -> Result<(), ConstraintError> {
        self.matcher
            .consume_token(token)
            .map_err(|e| ConstraintError::Decoding(e.to_string()))
    }

    /// True when the output is complete and nothing may follow (only end-of-sequence is allowed):
    /// the generation can stop without another forward pass.
    pub fn is_complete(&self) -> bool {
        self.matcher.is_stopped() && !self.matcher.is_error()
    }

    /// True when the output so far is a complete value (it may end here).
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}

/// The token environment llguidance runs on: the trie, and nlpd's tokenizer for the (rare)
/// re-tokenization of text.
struct NlpdTokEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for NlpdTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            match self.tokenizer.encode(text, false) {
                Ok(enc) => enc.get_ids().to_vec(),
                Err(_) => self.trie.greedy_tokenize(text.as_bytes()),
            }
        })
    }
}

/// GPT-2's byte-level alphabet, reversed: the printable character standing for each byte.
fn byte_level_chars() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        if printable(b) {
            map.insert(b as char, b);
        } else if let Some(c) = char::from_u32(next) {
            map.insert(c, b);
            next += 1;
        }
    }
    map
}

/// How a tokenizer spells bytes in its vocabulary, read off its decoder.
#[derive(Debug, Default)]
struct Spelling {
    byte_level: bool,
    byte_fallback: bool,
    /// The character standing for a space (SentencePiece's `▁`), if any.
    space: Option<char>,
}

fn spelling(decoder: &Value, s: &mut Spelling) {
    match decoder["type"].as_str() {
        Some("ByteLevel") => s.byte_level = true,
        Some("ByteFallback") => s.byte_fallback = true,
        Some("Metaspace") => {
            let c = decoder["replacement"]
                .as_str()
                .and_then(|r| r.chars().next());
            s.space = Some(c.unwrap_or('▁'));
        }
        Some("Replace") if decoder["content"].as_str() == Some(" ") => {
            if let Some(p) = decoder["pattern"]["String"].as_str() {
                let mut cs = p.chars();
                if let (Some(c), None) = (cs.next(), cs.next()) {
                    s.space = Some(c);
                }
            }
        }
        Some("Sequence") => {
            for d in decoder["decoders"].as_array().into_iter().flatten() {
                spelling(d, s);
            }
        }
        _ => {}
    }
}

/// `<0xNN>`: a byte-fallback token.
fn fallback_byte(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The bytes of every token id (empty for ids the tokenizer does not know, which are then never
/// allowed).
fn token_bytes(tokenizer: &Tokenizer, eos_ids: &[u32]) -> Result<Vec<Vec<u8>>, ConstraintError> {
    let decoder = tokenizer
        .get_decoder()
        .and_then(|d| serde_json::to_value(d).ok())
        .unwrap_or(Value::Null);
    let mut sp = Spelling::default();
    spelling(&decoder, &mut sp);
    if !sp.byte_level && !sp.byte_fallback && sp.space.is_none() {
        return Err(ConstraintError::UnsupportedTokenizer(format!(
            "cannot tell how its tokens spell bytes (decoder {})",
            decoder["type"]
        )));
    }
    let vocab = tokenizer.get_vocab(true);
    let size = vocab.values().copied().max().map_or(0, |m| m as usize + 1);
    let added = tokenizer.get_added_tokens_decoder();
    let eos: HashSet<u32> = eos_ids.iter().copied().collect();
    let chars = byte_level_chars();
    let mut words = vec![Vec::new(); size];
    for (text, &id) in &vocab {
        let word = &mut words[id as usize];
        if let Some(a) = added.get(&id) {
            let special = a.special
                || eos.contains(&id)
                || (a.content.starts_with('<') && a.content.ends_with('>'));
            if special {
                word.push(TokTrie::SPECIAL_TOKEN_MARKER);
            }
            word.extend_from_slice(a.content.as_bytes());
        } else if eos.contains(&id) {
            word.push(TokTrie::SPECIAL_TOKEN_MARKER);
            word.extend_from_slice(text.as_bytes());
        } else if sp.byte_level {
            // A character outside the alphabet leaves the token empty: never allowed.
            if let Some(bytes) = text
                .chars()
                .map(|c| chars.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
            {
                *word = bytes;
            }
        } else if let Some(b) = fallback_byte(text).filter(|_| sp.byte_fallback) {
            word.push(b);
        } else {
            let text = match sp.space {
                Some(c) => text.replace(c, " "),
                None => text.clone(),
            };
            *word = text.into_bytes();
        }
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_covers_every_byte() {
        let m = byte_level_chars();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'Ġ'], b' ');
        assert_eq!(m[&'Ċ'], b'\n');
        assert_eq!(m[&'a'], b'a');
    }

    #[test]
    fn fallback_bytes_parse() {
        assert_eq!(fallback_byte("<0x0A>"), Some(b'\n'));
        assert_eq!(fallback_byte("<0xff>"), Some(0xff));
        assert_eq!(fallback_byte("<0x0A"), None);
        assert_eq!(fallback_byte("<0xZZ>"), None);
        assert_eq!(fallback_byte("<0x123>"), None);
    }

    #[test]
    fn schemas_compile_or_say_why() {
        assert!(OutputConstraint::json_object().is_ok());
        let ok = serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}},
            "required": ["a"], "additionalProperties": false});
        assert!(OutputConstraint::json_schema(&ok).is_ok());
        let e = OutputConstraint::json_schema(&serde_json::json!({"type": "nonsense"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nonsense"), "{e}");
        let e = OutputConstraint::json_schema(&serde_json::json!("a string"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be an object"), "{e}");
        let e = OutputConstraint::json_schema(&serde_json::json!({"$ref": "#/$defs/missing"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
