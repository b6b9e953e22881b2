//! Multi-head self-attention per sequence, straight from the fused QKV buffer: no padding, no mask,
//! no transposed copies of Q, K or V. The softmax scale is folded into the query weights at load.

use super::kernels::{axpy, softmax};
use std::cell::RefCell;

/// Where one sequence's rows sit in the token-major buffers.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

/// Shape of the attention: `hidden = heads × head_dim`; `qkv` rows are `[q | k | v]`, `3 × hidden`.
#[derive(Clone, Copy)]
pub struct Shape {
    pub hidden: usize,
    pub heads: usize,
}

thread_local! {
    /// Per thread: one row of scores and the transposed keys of the current (sequence, head).
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Keys per block of the score loop (two 8-lane registers).
const KB: usize = 16;

/// Attention of one head of one sequence: writes that head's columns of the sequence's `ctx` rows.
///
/// Keys are transposed once into `[head_dim × len]` (padded to 16 keys), so each query's scores
/// are multiply-adds across 16 keys at a time in registers (no horizontal sums); the context is a
/// weighted sum of value rows accumulated in registers for the common head sizes 32 and 64.
///
/// # Safety
/// `qkv` must hold `(span.start + span.len) × 3·hidden` floats and `ctx` `(span.start + span.len) × hidden`;
/// no other thread may write the same (rows, head columns) of `ctx` concurrently.
pub unsafe fn head(qkv: *const f32, ctx: *mut f32, span: Span, head: usize, s: Shape) {
    match s.hidden / s.heads {
        64 => head_d::<64>(qkv, ctx, span, head, s),
        32 => head_d::<32>(qkv, ctx, span, head, s),
        _ => head_d::<0>(qkv, ctx, span, head, s),
    }
}

/// `D`: the head size when known at compile time (0: read it from `s`).
#[inline(always)]
unsafe fn head_d<const D: usize>(
    qkv: *const f32,
    ctx: *mut f32,
    span: Span,
    head: usize,
    s: Shape,
) {
    let d = if D > 0 { D } else { s.hidden / s.heads };
    let stride = 3 * s.hidden;
    let l = span.len;
    let lp = l.div_ceil(KB) * KB;
    let row = |i: usize, part: usize| -> &[f32] {
        let off = (span.start + i) * stride + part * s.hidden + head * d;
        std::slice::from_raw_parts(qkv.add(off), d)
    };
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (scores, kt) = &mut *guard;
        if scores.len() < lp {
            scores.resize(lp, 0.0);
        }
        if kt.len() < lp * d {
            kt.resize(lp * d, 0.0);
        }
        let kt = &mut kt[..lp * d];
        for j in 0..l {
            for (c, &v) in row(j, 1).iter().enumerate() {
                kt[c * lp + j] = v;
            }
        }
        for c in 0..d {
            kt[c * lp + l..(c + 1) * lp].fill(0.0);
        }
        for i in 0..l {
            let q = row(i, 0);
            for jb in (0..lp).step_by(KB) {
                let mut acc = [0f32; KB];
                for (c, &qc) in q.iter().enumerate() {
                    let k: &[f32; KB] = kt[c * lp + jb..][..KB].try_into().expect("16 keys");
                    for t in 0..KB {
                        acc[t] += qc * k[t];
                    }
                }
                scores[jb..jb + KB].copy_from_slice(&acc);
            }
            let p = &mut scores[..l];
            softmax(p);
            let out =
                std::slice::from_raw_parts_mut(ctx.add((span.start + i) * s.hidden + head * d), d);
            if D > 0 {
                let mut acc = [0f32; D];
                for (j, &pj) in p.iter().enumerate() {
                    let v: &[f32; D] = row(j, 2).try_into().expect("head size D");
                    for c in 0..D {
                        acc[c] += pj * v[c];
                    }
                }
                out.copy_from_slice(&acc);
            } else {
                out.fill(0.0);
                for (j, &pj) in p.iter().enumerate() {
                    axpy(out, pj, row(j, 2));
                }
            }
        }
    });
}

/// Pointer that may cross threads: tasks write disjoint parts of the buffer it points into.
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: only used for buffers whose concurrent users touch disjoint elements (see `head`).
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// All heads of all `spans`, on this thread.
pub fn serial(qkv: &[f32], ctx: &mut [f32], spans: &[Span], s: Shape) {
    let total = spans.last().map(|sp| sp.start + sp.len).unwrap_or(0);
    assert!(qkv.len() >= total * 3 * s.hidden && ctx.len() >= total * s.hidden);
    for &span in spans {
        for h in 0..s.heads {
            // SAFETY: sizes checked above; one thread.
            unsafe { head(qkv.as_ptr(), ctx.as_mut_ptr(), span, h, s) };
        }
    }
}

/// All heads of all `spans`, spread over the rayon pool (for batches too small to split by sequence).
pub fn parallel(qkv: &[f32], ctx: &mut [f32], spans: &[Span], s: Shape) {
    use rayon::prelude::*;
    let total = spans.last().map(|sp| sp.start + sp.len).unwrap_or(0);
    assert!(qkv.len() >= total * 3 * s.hidden && ctx.len() >= total * s.hidden);
    let q = SendPtr(qkv.as_ptr() as *mut f32);
    let c = SendPtr(ctx.as_mut_ptr());
    let tasks: Vec<(Span, usize)> = spans
        .iter()
        .flat_map(|&sp| (0..s.heads).map(move |h| (sp, h)))
        .collect();
    tasks.into_par_iter().for_each(move |(span, h)| {
        let (q, c) = (q, c);
        // SAFETY: sizes checked above; each task owns one (sequence, head) block of `ctx`.
        unsafe { head(q.0, c.0, span, h, s) };
    });
}
