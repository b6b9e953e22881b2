//! Cached values and their compact binary form (the Redis value): a version byte, a kind byte,
//! then little-endian fields; embeddings and scores as raw f32 bytes. Decoding checks every
//! length, so a foreign or truncated value is an error, never a panic or a wrong result.

use nlpd_engine::generate::FinishReason;
use nlpd_engine::{Classification, Encoded, EncoderOp, OpOutput};

const VERSION: u8 = 1;
const EMBEDDING: u8 = 1;
const CLASSIFICATION: u8 = 2;
const TOKEN_PROBS: u8 = 3;
const GENERATION: u8 = 4;

/// What one encoder input produced: the model's output before post-processing, the number of
/// tokens (usage), and for token classification the encoding (offsets and words for aggregation).
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderResult {
    pub tokens: u32,
    pub output: OpOutput,
    pub encoding: Option<Encoded>,
}

impl EncoderResult {
    /// What is kept of one computed input: its token count, the output, and the encoding for
    /// token classification only (aggregation needs its offsets and words). Requests and cache
    /// warming both build values here, so a warmed entry equals a computed one.
    pub fn from_run(op: &EncoderOp, enc: Encoded, output: OpOutput) -> Self {
        let tokens = enc.len() as u32;
        EncoderResult {
            tokens,
            output,
            encoding: matches!(op, EncoderOp::Tokens).then_some(enc),
        }
    }
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenResult {
    pub text: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CachedValue {
    Encoder(EncoderResult),
    Generation(GenResult),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("value truncated")]
    Truncated,
    #[error("unknown value version {0}")]
    Version(u8),
    #[error("unknown value kind {0}")]
    Kind(u8),
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

impl CachedValue {
    /// Bytes the value occupies in memory (its L1 weight): the encoded size plus a fixed overhead
    /// for the allocation and the map entry.
    pub fn weight(&self) -> u32 {
        let body = match self {
            CachedValue::Encoder(r) => {
                let out = match &r.output {
                    OpOutput::Embedding(v) => v.len() * 4,
                    OpOutput::Classification(c) => (c.logits.len() + c.scores.len()) * 4,
                    OpOutput::TokenProbs(p) => p.iter().map(|r| r.len() * 4 + 24).sum(),
                };
                out + r.encoding.as_ref().map(|e| e.len() * 30).unwrap_or(0)
            }
            CachedValue::Generation(g) => g.text.len(),
        };
        (body + 160).min(u32::MAX as usize) as u32
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(self.weight() as usize);
        w.push(VERSION);
        match self {
            CachedValue::Encoder(r) => {
                match &r.output {
                    OpOutput::Embedding(v) => {
                        w.push(EMBEDDING);
                        put_u32(&mut w, r.tokens);
                        put_f32s(&mut w, v);
                    }
                    OpOutput::Classification(c) => {
                        w.push(CLASSIFICATION);
                        put_u32(&mut w, r.tokens);
                        put_f32s(&mut w, &c.logits);
                        put_f32s(&mut w, &c.scores);
                    }
                    OpOutput::TokenProbs(p) => {
                        w.push(TOKEN_PROBS);
                        put_u32(&mut w, r.tokens);
                        put_u32(&mut w, p.len() as u32);
                        for row in p {
                            put_f32s(&mut w, row);
                        }
                    }
                }
                match &r.encoding {
                    None => w.push(0),
                    Some(e) => {
                        w.push(1);
                        put_encoding(&mut w, e);
                    }
                }
            }
            CachedValue::Generation(g) => {
                w.push(GENERATION);
                w.push(match g.finish_reason {
                    FinishReason::Stop => 0,
                    FinishReason::Length => 1,
                    FinishReason::Cancelled => 2,
                });
                put_u32(&mut w, g.prompt_tokens);
                put_u32(&mut w, g.completion_tokens);
                put_bytes(&mut w, g.text.as_bytes());
            }
        }
        w
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(CodecError::Version(version));
        }
        let kind = r.u8()?;
        let value = match kind {
            EMBEDDING | CLASSIFICATION | TOKEN_PROBS => {
                let tokens = r.u32()?;
                let output = match kind {
                    EMBEDDING => OpOutput::Embedding(r.f32s()?),
                    CLASSIFICATION => OpOutput::Classification(Classification {
                        logits: r.f32s()?,
                        scores: r.f32s()?,
                    }),
                    _ => {
                        let rows = r.len_prefix(4)?;
                        let mut p = Vec::with_capacity(rows);
                        for _ in 0..rows {
                            p.push(r.f32s()?);
                        }
                        OpOutput::TokenProbs(p)
                    }
                };
                let encoding = match r.u8()? {
                    0 => None,
                    1 => Some(read_encoding(&mut r)?),
                    _ => return Err(CodecError::Invalid("encoding flag")),
                };
                CachedValue::Encoder(EncoderResult {
                    tokens,
                    output,
                    encoding,
                })
            }
            GENERATION => {
                let finish_reason = match r.u8()? {
                    0 => FinishReason::Stop,
                    1 => FinishReason::Length,
                    2 => FinishReason::Cancelled,
                    _ => return Err(CodecError::Invalid("finish reason")),
                };
                let prompt_tokens = r.u32()?;
                let completion_tokens = r.u32()?;
                let text = String::from_utf8(r.bytes()?.to_vec())
                    .map_err(|_| CodecError::Invalid("text is not UTF-8"))?;
                CachedValue::Generation(GenResult {
                    text,
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                })
            }
            k => return Err(CodecError::Kind(k)),
        };
        if !r.0.is_empty() {
            return Err(CodecError::Trailing(r.0.len()));
        }
        Ok(value)
    }
}

fn put_u32(w: &mut Vec<u8>, v: u32) {
    w.extend_from_slice(&v.to_le_bytes());
}

fn put_f32s(w: &mut Vec<u8>, v: &[f32]) {
    put_u32(w, v.len() as u32);
    for x in v {
        w.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_bytes(w: &mut Vec<u8>, v: &[u8]) {
    put_u32(w, v.len() as u32);
    w.extend_from_slice(v);
}

/// Per token: id, type id, start, end, word (u32::MAX: none), sequence (255: none), special;
/// then the truncated flag.
fn put_encoding(w: &mut Vec<u8>, e: &Encoded) {
    let n = e.len();
    put_u32(w, n as u32);
    for i in 0..n {
        put_u32(w, e.ids[i]);
        put_u32(w, e.type_ids.get(i).copied().unwrap_or(0));
        let (s, t) = e.offsets.get(i).copied().unwrap_or((0, 0));
        put_u32(w, s as u32);
        put_u32(w, t as u32);
        put_u32(w, e.word_ids.get(i).copied().flatten().unwrap_or(u32::MAX));
        w.push(match e.sequence_ids.get(i).copied().flatten() {
            Some(s) => s.min(254) as u8,
            None => 255,
        });
        w.push(e.special.get(i).copied().unwrap_or(false) as u8);
    }
    w.push(e.truncated as u8);
}

fn read_encoding(r: &mut Reader<'_>) -> Result<Encoded, CodecError> {
    let n = r.len_prefix(22)?;
    let mut e = Encoded {
        ids: Vec::with_capacity(n),
        type_ids: Vec::with_capacity(n),
        offsets: Vec::with_capacity(n),
        word_ids: Vec::with_capacity(n),
        sequence_ids: Vec::with_capacity(n),
        special: Vec::with_capacity(n),
        truncated: false,
    };
    for _ in 0..n {
        e.ids.push(r.u32()?);
        e.type_ids.push(r.u32()?);
        let s = r.u32()? as usize;
        let t = r.u32()? as usize;
        e.offsets.push((s, t));
        let word = r.u32()?;
        e.word_ids.push((word != u32::MAX).then_some(word));
        let seq = r.u8()?;
        e.sequence_ids.push((seq != 255).then_some(seq as usize));
        e.special.push(match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(CodecError::Invalid("special flag")),
        });
    }
    e.truncated = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(CodecError::Invalid("truncated flag")),
    };
    Ok(e)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count whose items take at least `min_item` bytes each: refused when the rest cannot hold
    /// them (no huge allocation from a garbage length).
    fn len_prefix(&mut self, min_item: usize) -> Result<usize, CodecError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.0.len() {
            return Err(CodecError::Truncated);
        }
        Ok(n)
    }

    fn f32s(&mut self) -> Result<Vec<f32>, CodecError> {
        let n = self.len_prefix(4)?;
        let b = self.take(n * 4)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.len_prefix(1)?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding() -> Encoded {
        Encoded {
            ids: vec![101, 7592, 102],
            type_ids: vec![0, 0, 0],
            offsets: vec![(0, 0), (0, 5), (0, 0)],
            word_ids: vec![None, Some(0), None],
            sequence_ids: vec![None, Some(0), None],
            special: vec![true, false, true],
            truncated: true,
        }
    }

    fn samples() -> Vec<CachedValue> {
        vec![
            CachedValue::Encoder(EncoderResult {
                tokens: 7,
                output: OpOutput::Embedding(vec![0.5, -1.25, f32::MIN_POSITIVE, 3.0e-8]),
                encoding: None,
            }),
            CachedValue::Encoder(EncoderResult {
                tokens: 3,
                output: OpOutput::Classification(Classification {
                    logits: vec![1.0, -2.0],
                    scores: vec![0.95, 0.05],
                }),
                encoding: None,
            }),
            CachedValue::Encoder(EncoderResult {
                tokens: 3,
                output: OpOutput::TokenProbs(vec![vec![0.1, 0.9], vec![0.7, 0.3], vec![1.0, 0.0]]),
                encoding: Some(encoding()),
            }),
            CachedValue::Generation(GenResult {
                text: "sorts the list — in place".into(),
                finish_reason: FinishReason::Length,
                prompt_tokens: 40,
                completion_tokens: 12,
            }),
        ]
    }

    #[test]
    fn values_round_trip_exactly() {
        for v in samples() {
            let bytes = v.encode();
            assert_eq!(CachedValue::decode(&bytes), Ok(v.clone()));
            assert!(v.weight() as usize >= bytes.len() / 2, "{v:?}");
        }
    }

    #[test]
    fn embeddings_are_raw_f32_bytes() {
        let v = CachedValue::Encoder(EncoderResult {
            tokens: 2,
            output: OpOutput::Embedding(vec![0.0; 384]),
            encoding: None,
        });
        // version, kind, tokens, length, 384 floats, encoding flag.
        assert_eq!(v.encode().len(), 1 + 1 + 4 + 4 + 384 * 4 + 1);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(CachedValue::decode(b""), Err(CodecError::Truncated));
        assert_eq!(
            CachedValue::decode(b"hello"),
            Err(CodecError::Version(b'h'))
        );
        assert_eq!(CachedValue::decode(&[1, 99]), Err(CodecError::Kind(99)));
        for v in samples() {
            let bytes = v.encode();
            for cut in 0..bytes.len() {
                assert!(CachedValue::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(CachedValue::decode(&longer), Err(CodecError::Trailing(1)));
        }
        // A huge length must not allocate.
        let mut huge = vec![1, EMBEDDING, 0, 0, 0, 0];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(CachedValue::decode(&huge), Err(CodecError::Truncated));
    }
}
