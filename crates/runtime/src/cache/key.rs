//! Cache keys: a blake3 hash over everything that decides a result: the model (name and revision),
//! the operation and its output-affecting parameters, and the input. Every field is written with
//! a tag and a length prefix, so no two different field lists hash the same bytes.

use nlpd_engine::generate::{ChatMessage, GenerateOptions};
use nlpd_engine::EncoderOp;
use std::fmt;
use std::path::Path;

/// Bumped whenever the key composition or the value format changes, so old entries (in a shared
/// Redis) are never read as new ones.
pub const FORMAT_VERSION: u32 = 1;

/// A 256-bit cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.hex()[..16])
    }
}

/// Builds a key field by field.
pub struct KeyBuilder(blake3::Hasher);

impl KeyBuilder {
    /// A key of `kind` (`encoder`, `generate`) for one model at one revision.
    pub fn new(kind: &str, model: &str, revision: &str) -> Self {
        let mut b = KeyBuilder(blake3::Hasher::new());
        b.u64(FORMAT_VERSION as u64);
        b.str(kind);
        b.str(model);
        b.str(revision);
        b
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.update(&(v.len() as u64).to_le_bytes());
        self.0.update(v);
        self
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.update(b"u");
        self.0.update(&v.to_le_bytes());
        self
    }

    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.0.update(b"f");
        self.0.update(&v.to_bits().to_le_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.0.update(&[b'b', v as u8]);
        self
    }

    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) => {
                self.0.update(&[1]);
                self.str(s)
            }
            None => {
                self.0.update(&[0]);
                self
            }
        }
    }

    pub fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            Some(x) => {
                self.0.update(&[1]);
                self.u64(x)
            }
            None => {
                self.0.update(&[0]);
                self
            }
        }
    }

    pub fn finish(&self) -> CacheKey {
        CacheKey(*self.0.finalize().as_bytes())
    }
}

/// The key of one encoder input. The operation stands for the task: routes that ask the same
/// of the same model (e.g. `/v1/embed` with `normalize` and `/v1/embeddings`) share entries.
/// Parameters applied after the model (top_k, raw scores, aggregation, encoding format) are not
/// part of it: the cached value holds the full model output they are computed from.
pub fn encoder_key(
    model: &str,
    revision: &str,
    op: &EncoderOp,
    truncate: bool,
    text: &str,
    pair: Option<&str>,
) -> CacheKey {
    let mut b = KeyBuilder::new("encoder", model, revision);
    put_params(&mut b, op, truncate);
    put_input(&mut b, text, pair);
    b.finish()
}

/// The operation and its output-affecting parameters, as the encoder key writes them.
fn put_params(b: &mut KeyBuilder, op: &EncoderOp, truncate: bool) {
    match op {
        EncoderOp::Embed {
            normalize,
            dimensions,
        } => {
            b.str("embed")
                .bool(*normalize)
                .opt_u64(dimensions.map(|d| d as u64));
        }
        EncoderOp::Classify => {
            b.str("classify");
        }
        EncoderOp::Tokens => {
            b.str("tokens");
        }
    }
    b.bool(truncate);
}

/// The input (a text, or a pair), as the encoder key writes it.
fn put_input(b: &mut KeyBuilder, text: &str, pair: Option<&str>) {
    b.str(text).opt_str(pair);
}

/// A hash of one encoder input alone (the prediction log's `input_hash`): the same canonical
/// bytes the encoder key hashes for the input, without model or parameters.
pub fn input_hash(text: &str, pair: Option<&str>) -> [u8; 32] {
    let mut b = KeyBuilder(blake3::Hasher::new());
    b.u64(FORMAT_VERSION as u64).str("input");
    put_input(&mut b, text, pair);
    b.finish().0
}

/// A hash of an encoder operation and its output-affecting parameters (the prediction log's
/// `params_hash`): the same canonical bytes the encoder key hashes for them.
pub fn params_hash(op: &EncoderOp, truncate: bool) -> [u8; 32] {
    let mut b = KeyBuilder(blake3::Hasher::new());
    b.u64(FORMAT_VERSION as u64).str("params");
    put_params(&mut b, op, truncate);
    b.finish().0
}

/// What a generation is asked to continue.
pub enum GenPrompt<'a> {
    Chat(&'a [ChatMessage]),
    Text(&'a str),
}

/// Whether a generation is deterministic, so its result may be cached: greedy decoding, or
/// sampling with a seed the client chose.
pub fn generation_is_deterministic(opts: &GenerateOptions, seed_given: bool) -> bool {
    opts.temperature == 0.0 || seed_given
}

/// The key of one generation: the prompt (chat messages after nlpd's own prompt template, or raw
/// text) and every sampling setting. The seed counts only when sampling uses it.
pub fn generation_key(
    model: &str,
    revision: &str,
    prompt: GenPrompt<'_>,
    opts: &GenerateOptions,
) -> CacheKey {
    let mut b = KeyBuilder::new("generate", model, revision);
    match prompt {
        GenPrompt::Chat(messages) => {
            b.str("chat").u64(messages.len() as u64);
            for m in messages {
                b.str(&m.role).str(&m.content);
            }
        }
        GenPrompt::Text(t) => {
            b.str("text").str(t);
        }
    }
    b.u64(opts.max_tokens as u64)
        .f64(opts.temperature)
        .opt_u64(opts.top_p.map(f64::to_bits))
        .u64(if opts.temperature == 0.0 {
            0
        } else {
            opts.seed
        })
        .u64(opts.stop.len() as u64);
    for s in &opts.stop {
        b.str(s);
    }
    b.u64(opts.repeat_penalty.to_bits() as u64);
    // Only constrained generations hash the constraint: the keys of the others are unchanged.
    if let Some(c) = &opts.constraint {
        b.str("constraint").str(c.cache_key());
    }
    b.finish()
}

/// A model's revision: a hash of its weights file's path, size and modification time, of the
/// token cap the server applies (it changes truncation, so outputs) and of the precision it runs
/// at (`--quantize int8` changes outputs; replicas at different precisions share no entries).
/// Computed once at load.
pub fn revision_of(weights: &Path, token_cap: Option<usize>, precision: &str) -> String {
    let mut b = KeyBuilder(blake3::Hasher::new());
    b.str(&weights.display().to_string());
    b.str(precision);
    match std::fs::metadata(weights) {
        Ok(m) => {
            b.u64(m.len());
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            b.u64(mtime);
        }
        Err(_) => {
            b.str("no-metadata");
        }
    }
    b.opt_u64(token_cap.map(|c| c as u64));
    b.finish().hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_key() {
        let embed = EncoderOp::Embed {
            normalize: true,
            dimensions: None,
        };
        let base = encoder_key("m", "r1", &embed, true, "hello", None);
        assert_eq!(base, encoder_key("m", "r1", &embed, true, "hello", None));
        let others = [
            encoder_key("m2", "r1", &embed, true, "hello", None),
            encoder_key("m", "r2", &embed, true, "hello", None),
            encoder_key(
                "m",
                "r1",
                &EncoderOp::Embed {
                    normalize: false,
                    dimensions: None,
                },
                true,
                "hello",
                None,
            ),
            encoder_key(
                "m",
                "r1",
                &EncoderOp::Embed {
                    normalize: true,
                    dimensions: Some(8),
                },
                true,
                "hello",
                None,
            ),
            encoder_key("m", "r1", &EncoderOp::Classify, true, "hello", None),
            encoder_key("m", "r1", &EncoderOp::Tokens, true, "hello", None),
            encoder_key("m", "r1", &embed, false, "hello", None),
            encoder_key("m", "r1", &embed, true, "hello!", None),
            encoder_key("m", "r1", &embed, true, "hello", Some("")),
        ];
        for (i, k) in others.iter().enumerate() {
            assert_ne!(*k, base, "variant {i} collides");
        }
    }

    #[test]
    fn input_and_params_hashes_follow_their_fields_only() {
        let embed = EncoderOp::Embed {
            normalize: true,
            dimensions: None,
        };
        assert_eq!(input_hash("a", None), input_hash("a", None));
        assert_ne!(input_hash("a", None), input_hash("a", Some("")));
        assert_ne!(input_hash("ab", Some("c")), input_hash("a", Some("bc")));
        assert_eq!(params_hash(&embed, true), params_hash(&embed, true));
        assert_ne!(params_hash(&embed, true), params_hash(&embed, false));
        assert_ne!(
            params_hash(&embed, true),
            params_hash(&EncoderOp::Classify, true)
        );
        assert_ne!(
            input_hash("x", None),
            params_hash(&EncoderOp::Classify, true)
        );
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        // "ab" + "c" and "a" + "bc" must differ (length prefixes).
        let k1 = encoder_key("m", "r", &EncoderOp::Classify, true, "ab", Some("c"));
        let k2 = encoder_key("m", "r", &EncoderOp::Classify, true, "a", Some("bc"));
        assert_ne!(k1, k2);
    }

    #[test]
    fn generation_keys_ignore_the_seed_when_greedy() {
        let msgs = vec![ChatMessage::new("user", "hi")];
        let mut a = GenerateOptions {
            temperature: 0.0,
            seed: 1,
            ..GenerateOptions::default()
        };
        let k1 = generation_key("g", "r", GenPrompt::Chat(&msgs), &a);
        a.seed = 2;
        assert_eq!(k1, generation_key("g", "r", GenPrompt::Chat(&msgs), &a));
        a.temperature = 0.7;
        let k3 = generation_key("g", "r", GenPrompt::Chat(&msgs), &a);
        a.seed = 3;
        assert_ne!(k3, generation_key("g", "r", GenPrompt::Chat(&msgs), &a));
        assert_ne!(k1, generation_key("g", "r", GenPrompt::Text("hi"), &a));
        assert!(generation_is_deterministic(
            &GenerateOptions {
                temperature: 0.0,
                ..a.clone()
            },
            false
        ));
        assert!(!generation_is_deterministic(&a, false));
        assert!(generation_is_deterministic(&a, true));
    }

    #[test]
    fn generation_keys_follow_the_output_constraint() {
        use nlpd_engine::generate::OutputConstraint;
        let msgs = vec![ChatMessage::new("user", "hi")];
        let free = GenerateOptions::default();
        let key = |o: &GenerateOptions| generation_key("g", "r", GenPrompt::Chat(&msgs), o);
        let schema = |t: &str| {
            let s = serde_json::json!({"type": "object", "properties": {"a": {"type": t}}});
            Some(OutputConstraint::json_schema(&s).unwrap())
        };
        let ints = GenerateOptions {
            constraint: schema("integer"),
            ..free.clone()
        };
        let strs = GenerateOptions {
            constraint: schema("string"),
            ..free.clone()
        };
        let object = GenerateOptions {
            constraint: Some(OutputConstraint::json_object().unwrap()),
            ..free.clone()
        };
        assert_ne!(key(&free), key(&ints));
        assert_ne!(key(&ints), key(&strs));
        assert_ne!(key(&free), key(&object));
        assert_eq!(key(&ints), key(&ints.clone()));
    }

    #[test]
    fn revision_follows_the_file_and_the_cap() {
        let dir = std::env::temp_dir().join(format!("nlpd-rev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("w.bin");
        std::fs::write(&f, b"1234").unwrap();
        let r1 = revision_of(&f, None, "f32");
        assert_eq!(r1, revision_of(&f, None, "f32"));
        assert_ne!(r1, revision_of(&f, Some(128), "f32"));
        assert_ne!(r1, revision_of(&f, None, "int8"));
        std::fs::write(&f, b"12345").unwrap();
        assert_ne!(r1, revision_of(&f, None, "f32"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
