//! The fast encoder's forward pass allocates per batch, not per token or layer: after a warm-up,
//! a batch's heap allocations (counted by this test binary's global allocator) stay a small
//! constant per sequence, whatever the sequences' lengths. Tokenization is outside the count.

mod common;

use common::*;
use nlpd_engine::{EncoderModel, EncoderOp, LoadOptions, Quantize, TextInput};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count(model: &EncoderModel, texts: &[String]) -> usize {
    let inputs: Vec<TextInput> = texts.iter().map(|t| TextInput::Single(t)).collect();
    let encs = model.encode(&inputs, true).unwrap();
    let op = EncoderOp::Embed {
        normalize: true,
        dimensions: None,
    };
    let items: Vec<_> = encs.iter().map(|e| (e, &op)).collect();
    for _ in 0..2 {
        model.run_batch(&items).unwrap();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    model.run_batch(&items).unwrap();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn a_forward_pass_allocates_per_batch_not_per_token() {
    let Some(dir) = pack_model("all-MiniLM-L6-v2") else {
        return;
    };
    for quantize in [Quantize::None, Quantize::Int8, Quantize::Bf16] {
        let opts = LoadOptions {
            quantize,
            ..LoadOptions::default()
        };
        let model = EncoderModel::load_opts(&dir, &opts).unwrap();
        let short: Vec<String> = (0..16).map(|i| format!("A short sentence {i}.")).collect();
        let long: Vec<String> = (0..16)
            .map(|i| format!("A much longer sentence number {i} ").repeat(8))
            .collect();
        let (s, l) = (count(&model, &short), count(&model, &long));
        let inputs: Vec<TextInput> = short.iter().map(|t| TextInput::Single(t)).collect();
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        model.encode(&inputs, true).unwrap();
        let tok = ALLOCATIONS.load(Ordering::Relaxed) - before;
        eprintln!(
            "{quantize:?}: forward + pooling: 16 short inputs {s} allocations, 16 long inputs {l}; \
             tokenizing the 16 short inputs (not asserted): {tok}"
        );
        assert!(
            s <= 16 * 8,
            "{quantize:?}: {s} allocations for 16 short inputs"
        );
        assert!(
            l <= s + 16,
            "{quantize:?}: longer inputs allocate more ({l} vs {s})"
        );
    }
}
