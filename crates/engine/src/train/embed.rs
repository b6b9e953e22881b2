//! Embedding the texts a head trains on, with the frozen encoder, in fixed chunks.

use super::error::{Result, TrainError};
use crate::model::{EmbedOptions, EncoderModel};
use std::path::Path;

/// Texts per engine call. Fixed (not an option) so that the batches the encoder sees, and so the
/// embeddings, depend on the data only.
pub const EMBED_CHUNK: usize = 1024;

/// Embeds `texts` with `model`'s own pooling (and normalization, for models ending in a
/// Normalize module), truncating to its token limit; `[texts × hidden]` row-major.
/// `progress(n)` is told after each chunk how many texts are done.
pub fn embed_texts(
    model: &EncoderModel,
    texts: &[String],
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<f32>> {
    let dim = model.config().hidden_size;
    let mut out = Vec::with_capacity(texts.len() * dim);
    let opts = EmbedOptions::new();
    let mut done = 0;
    for chunk in texts.chunks(EMBED_CHUNK) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for v in model.embed(&refs, &opts)? {
            out.extend_from_slice(&v);
        }
        done += chunk.len();
        progress(done);
    }
    Ok(out)
}

/// Refuses an encoder that cannot carry a pooled head (a head directory itself).
pub fn check_encoder(model: &EncoderModel, path: &Path) -> Result<()> {
    if model.dir().head.is_some() {
        return Err(TrainError::BadData {
            path: path.to_path_buf(),
            message: "this is a head trained by nlpd, not an encoder: pass the encoder it sits on"
                .into(),
        });
    }
    Ok(())
}
