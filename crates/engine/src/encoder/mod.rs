//! Encoder backbones behind one seam: a batch of token ids in, hidden states out.
//!
//! [`EncoderBackend`] is the seam where a faster CPU path (or a GPU path) can sit beside the candle
//! implementation without the heads or the layers above noticing.

mod bert;
mod deberta;
pub(crate) mod fast;
pub mod kernel;

pub use bert::BertEncoder;
pub use deberta::DebertaEncoder;
pub use fast::FastBert;
pub use kernel::Kernel;

use crate::error::Result;
use crate::tokenize::Encoded;
use candle_core::{Device, Tensor};

/// A padded batch ready for a forward pass (right padding).
pub struct Batch {
    /// `[batch, seq]` u32 token ids.
    pub ids: Tensor,
    /// `[batch, seq]` u32 token type ids.
    pub type_ids: Tensor,
    /// `[batch, seq]` f32, 1 for real tokens and 0 for padding.
    pub mask: Tensor,
    /// Real length of each sequence.
    pub lengths: Vec<usize>,
    /// Token ids of all sequences back to back, without padding (the fast path's input).
    pub flat_ids: Vec<u32>,
    /// Token type ids, laid out as `flat_ids`.
    pub flat_types: Vec<u32>,
}

impl Batch {
    pub fn new(items: &[&Encoded], pad_id: u32, device: &Device) -> Result<Self> {
        let b = items.len();
        let t = items.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![pad_id; b * t];
        let mut types = vec![0u32; b * t];
        let mut mask = vec![0f32; b * t];
        for (row, e) in items.iter().enumerate() {
            let base = row * t;
            ids[base..base + e.len()].copy_from_slice(&e.ids);
            types[base..base + e.len()].copy_from_slice(&e.type_ids);
            mask[base..base + e.len()].iter_mut().for_each(|m| *m = 1.0);
        }
        let flat_ids = items.iter().flat_map(|e| e.ids.iter().copied()).collect();
        let flat_types = items
            .iter()
            .flat_map(|e| e.type_ids.iter().copied())
            .collect();
        Ok(Batch {
            flat_ids,
            flat_types,
            ids: Tensor::from_vec(ids, (b, t), device)?,
            type_ids: Tensor::from_vec(types, (b, t), device)?,
            mask: Tensor::from_vec(mask, (b, t), device)?,
            lengths: items.iter().map(|e| e.len()).collect(),
        })
    }

    pub fn size(&self) -> usize {
        self.lengths.len()
    }
}

/// Runs the encoder stack: `[batch, seq]` ids → `[batch, seq, hidden]` last hidden states.
pub trait EncoderBackend: Send + Sync {
    fn forward(&self, batch: &Batch) -> Result<Tensor>;
    /// The hidden states without padding (`[Σ lengths, hidden]`, sequences back to back), for
    /// backends that compute them that way; `None` when the backend only has [`Self::forward`].
    fn forward_flat(&self, _batch: &Batch) -> Option<Result<Vec<f32>>> {
        None
    }
    /// Short name for logs and `/v1/models` (e.g. `candle-bert`).
    fn name(&self) -> &'static str;
    /// The kernel running the linear layers (candle's graph unless the backend says otherwise).
    fn kernel(&self) -> Kernel {
        Kernel::Candle
    }
}

/// Finds the prefix under which a checkpoint stores the encoder (`""`, `"bert."`, `"roberta."`, ...).
pub(crate) fn encoder_prefix(vb: &candle_nn::VarBuilder, probe: &str) -> Option<String> {
    [
        "",
        "bert.",
        "roberta.",
        "distilbert.",
        "deberta.",
        "model.",
        "encoder.",
    ]
    .iter()
    .map(|p| p.to_string())
    .find(|p| vb.contains_tensor(&format!("{p}{probe}")))
}
