//! Output encodings of embeddings (Cohere `embedding_types`), computed from the float vector the
//! model returned. Every vector nlpd encodes this way is L2-normalized (unit length), so every
//! value lies in [-1, 1] and one fixed scale serves all vectors and all requests:
//!
//! - `int8`: `round(127 * x)`, in [-127, 127]. The scale is the same for every vector, so dot
//!   products of int8 vectors are 127² times the float dot product (up to rounding): cosine and
//!   ranking carry over, within and across requests (per-vector scaling would break dot-product
//!   ranking between documents).
//! - `uint8`: `int8 + 128`, in [1, 255].
//! - `ubinary`: one bit per dimension, 1 where `x > 0`, packed 8 per byte, most significant bit
//!   first (numpy `packbits`); `ceil(dims / 8)` bytes, the last padded with 0 bits.
//! - `binary`: the same bytes as signed values, `ubinary - 128` (Cohere's and
//!   sentence-transformers' definition).
//! - `base64`: base64 of the little-endian f32 bytes (as OpenAI's `encoding_format: base64`).
//! - `float`: the vector itself.

use base64::Engine as _;
use serde::Serialize;

/// One of Cohere's `embedding_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EmbeddingType {
    Float,
    Int8,
    Uint8,
    Binary,
    Ubinary,
    Base64,
}

impl EmbeddingType {
    pub const ALL: [EmbeddingType; 6] = [
        EmbeddingType::Float,
        EmbeddingType::Int8,
        EmbeddingType::Uint8,
        EmbeddingType::Binary,
        EmbeddingType::Ubinary,
        EmbeddingType::Base64,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The name in requests and the key in the response's `embeddings` object.
    pub fn name(self) -> &'static str {
        match self {
            EmbeddingType::Float => "float",
            EmbeddingType::Int8 => "int8",
            EmbeddingType::Uint8 => "uint8",
            EmbeddingType::Binary => "binary",
            EmbeddingType::Ubinary => "ubinary",
            EmbeddingType::Base64 => "base64",
        }
    }
}

/// The int8 scale: a unit vector's values times this, rounded.
pub const INT8_SCALE: f32 = 127.0;

pub fn int8(v: &[f32]) -> Vec<i8> {
    v.iter()
        .map(|x| (x * INT8_SCALE).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

pub fn uint8(v: &[f32]) -> Vec<u8> {
    int8(v)
        .into_iter()
        .map(|q| (q as i16 + 128) as u8)
        .collect()
}

pub fn ubinary(v: &[f32]) -> Vec<u8> {
    v.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (i, x)| if *x > 0.0 { b | (0x80 >> i) } else { b })
        })
        .collect()
}

pub fn binary(v: &[f32]) -> Vec<i8> {
    ubinary(v)
        .into_iter()
        .map(|b| (b as i16 - 128) as i8)
        .collect()
}

pub fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One encoding of every vector of a response.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Encoded {
    Float(Vec<Vec<f32>>),
    Signed(Vec<Vec<i8>>),
    Unsigned(Vec<Vec<u8>>),
    Base64(Vec<String>),
}

pub fn encode(t: EmbeddingType, vectors: &[Vec<f32>]) -> Encoded {
    match t {
        EmbeddingType::Float => Encoded::Float(vectors.to_vec()),
        EmbeddingType::Int8 => Encoded::Signed(vectors.iter().map(|v| int8(v)).collect()),
        EmbeddingType::Uint8 => Encoded::Unsigned(vectors.iter().map(|v| uint8(v)).collect()),
        EmbeddingType::Binary => Encoded::Signed(vectors.iter().map(|v| binary(v)).collect()),
        EmbeddingType::Ubinary => Encoded::Unsigned(vectors.iter().map(|v| ubinary(v)).collect()),
        EmbeddingType::Base64 => Encoded::Base64(vectors.iter().map(|v| base64_f32(v)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in EmbeddingType::ALL {
            assert_eq!(EmbeddingType::parse(t.name()), Some(t));
        }
        assert_eq!(EmbeddingType::parse("FLOAT"), None);
        assert_eq!(EmbeddingType::parse("int4"), None);
    }

    #[test]
    fn int8_and_uint8_use_the_fixed_scale() {
        let v = [1.0, -1.0, 0.0, 0.5, -0.5, 0.004, -0.004, 1.5];
        assert_eq!(int8(&v), vec![127, -127, 0, 64, -64, 1, -1, 127]);
        assert_eq!(uint8(&v), vec![255, 1, 128, 192, 64, 129, 127, 255]);
    }

    #[test]
    fn binary_packs_sign_bits_msb_first() {
        // 10 dims: 2 bytes, the second padded with zeros.
        let v = [0.1, -0.1, 0.2, 0.0, -3.0, 0.5, 0.5, -0.5, 0.9, -0.9];
        // bits 1 0 1 0 0 1 1 0 | 1 0 (000000)
        assert_eq!(ubinary(&v), vec![0b1010_0110, 0b1000_0000]);
        // 166 - 128, 128 - 128.
        assert_eq!(binary(&v), vec![38, 0]);
        assert!(ubinary(&[]).is_empty());
    }

    #[test]
    fn base64_is_little_endian_f32() {
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
    }

    #[test]
    fn int8_dot_products_track_the_float_cosine() {
        // Two pseudo-random unit vectors of 384 dims.
        let unit = |seed: u32| {
            let mut s = seed;
            let mut v: Vec<f32> = (0..384)
                .map(|_| {
                    s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= n);
            v
        };
        let (a, b) = (unit(1), unit(2));
        let cos: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let (qa, qb) = (int8(&a), int8(&b));
        let qdot: i32 = qa.iter().zip(&qb).map(|(x, y)| *x as i32 * *y as i32).sum();
        let approx = qdot as f32 / (INT8_SCALE * INT8_SCALE);
        assert!((approx - cos).abs() < 0.01, "{approx} vs {cos}");
    }
}
