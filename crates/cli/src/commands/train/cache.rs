//! An optional on-disk cache of training embeddings (`nlpd train --cache DIR`), so that trying
//! other heads or hyper-parameters on the same data does not run the encoder again. A file is
//! keyed by everything that decides the embeddings: the encoder's weights and tokenizer, its
//! pooling, normalization, token limit, backend and precision, the texts themselves and the
//! fixed chunking of `embed_texts`.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub struct EmbeddingCache {
    dir: PathBuf,
}

/// What makes an encoder's embeddings (hashed into every key).
pub struct EncoderIdentity {
    pub weights_blake3: String,
    pub tokenizer_blake3: String,
    pub settings: String,
}

impl EmbeddingCache {
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the cache directory {}", dir.display()))?;
        Ok(EmbeddingCache {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, encoder: &EncoderIdentity, texts: &[String]) -> PathBuf {
        let mut h = blake3::Hasher::new();
        h.update(b"nlpd-train-embeddings-v1\0");
        for part in [
            &encoder.weights_blake3,
            &encoder.tokenizer_blake3,
            &encoder.settings,
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&(nlpd_engine::train::EMBED_CHUNK as u64).to_le_bytes());
        for t in texts {
            h.update(&(t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        self.dir.join(format!("{}.f32", h.finalize().to_hex()))
    }

    /// The cached embeddings of `texts`, if present and of the expected size.
    pub fn get(&self, encoder: &EncoderIdentity, texts: &[String], dim: usize) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.path(encoder, texts)).ok()?;
        if bytes.len() != texts.len() * dim * 4 {
            return None;
        }
        Some(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    /// Stores embeddings (written to a temporary file, then renamed).
    pub fn put(&self, encoder: &EncoderIdentity, texts: &[String], x: &[f32]) -> Result<()> {
        let path = self.path(encoder, texts);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// blake3 of a file, hex.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    )
    .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keys_on_texts_and_encoder() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("nlpd-embcache-{}", std::process::id()));
        let cache = EmbeddingCache::new(&dir)?;
        let enc = EncoderIdentity {
            weights_blake3: "w".into(),
            tokenizer_blake3: "t".into(),
            settings: "mean".into(),
        };
        let texts = vec!["a".to_string(), "b".to_string()];
        assert!(cache.get(&enc, &texts, 2).is_none());
        cache.put(&enc, &texts, &[1.0, 2.0, 3.0, -0.5])?;
        assert_eq!(cache.get(&enc, &texts, 2), Some(vec![1.0, 2.0, 3.0, -0.5]));
        assert!(cache.get(&enc, &texts, 3).is_none(), "size is checked");
        assert!(cache
            .get(&enc, &["a".to_string(), "c".to_string()], 2)
            .is_none());
        let other = EncoderIdentity {
            settings: "cls".into(),
            ..enc
        };
        assert!(cache.get(&other, &texts, 2).is_none());
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }
}
