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
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        match s.hidden / s.heads {
            64 => return avx512::head::<4>(qkv, ctx, span, head, s),
            32 => return avx512::head::<2>(qkv, ctx, span, head, s),
            _ => {}
        }
    }
    head_portable(qkv, ctx, span, head, s)
}

/// [`head`] without AVX-512 (any head size; AVX2 where the build targets it).
///
/// # Safety
/// As [`head`].
pub unsafe fn head_portable(qkv: *const f32, ctx: *mut f32, span: Span, head: usize, s: Shape) {
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

/// Attention with AVX-512 register tiles for head sizes 32 and 64 (`DV` vectors of 16 per row).
///
/// Four query rows at a time: their scores against 32 keys are 4 × 2 accumulators fed by one
/// broadcast per query value and two key loads per head channel; their context rows are
/// `4 × DV` accumulators fed by `DV` loads of each value row. Softmax is the shared kernel.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{softmax, Shape, Span, SCRATCH};
    use std::arch::x86_64::*;

    /// Query rows per tile.
    const R: usize = 4;
    /// Keys per score block (two vectors).
    const KB2: usize = 32;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// # Safety
    /// As [`super::head`]; the CPU must have AVX-512F and the head size must be `16 · DV`.
    pub unsafe fn head<const DV: usize>(
        qkv: *const f32,
        ctx: *mut f32,
        span: Span,
        head: usize,
        s: Shape,
    ) {
        let d = 16 * DV;
        debug_assert_eq!(d, s.hidden / s.heads);
        let stride = 3 * s.hidden;
        let l = span.len;
        let lp = l.div_ceil(KB2) * KB2;
        let q0 = qkv.add(span.start * stride + head * d);
        let k0 = q0.add(s.hidden);
        let v0 = q0.add(2 * s.hidden);
        let c0 = ctx.add(span.start * s.hidden + head * d);
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let (scores, kt) = &mut *guard;
            if scores.len() < R * lp {
                scores.resize(R * lp, 0.0);
            }
            if kt.len() < lp * d {
                kt.resize(lp * d, 0.0);
            }
            for j in 0..l {
                let k = std::slice::from_raw_parts(k0.add(j * stride), d);
                for (c, &v) in k.iter().enumerate() {
                    kt[c * lp + j] = v;
                }
            }
            for c in 0..d {
                kt[c * lp + l..(c + 1) * lp].fill(0.0);
            }
            let mut i = 0;
            while i < l {
                let rows = R.min(l - i);
                let q = q0.add(i * stride);
                let out = c0.add(i * s.hidden);
                let p = scores.as_mut_ptr();
                match rows {
                    4 => scores_tile::<4>(q, stride, kt.as_ptr(), lp, d, p),
                    3 => scores_tile::<3>(q, stride, kt.as_ptr(), lp, d, p),
                    2 => scores_tile::<2>(q, stride, kt.as_ptr(), lp, d, p),
                    _ => scores_tile::<1>(q, stride, kt.as_ptr(), lp, d, p),
                }
                for row in scores[..rows * lp].chunks_exact_mut(lp) {
                    softmax(&mut row[..l]);
                }
                let p = scores.as_ptr();
                match rows {
                    4 => context_tile::<4, DV>(p, lp, l, v0, stride, out, s.hidden),
                    3 => context_tile::<3, DV>(p, lp, l, v0, stride, out, s.hidden),
                    2 => context_tile::<2, DV>(p, lp, l, v0, stride, out, s.hidden),
                    _ => context_tile::<1, DV>(p, lp, l, v0, stride, out, s.hidden),
                }
                i += rows;
            }
        });
    }

    /// `out[r · lp + j] = q_r · k_j` for `ROWS` query rows (`stride` apart) and all `lp` keys.
    #[target_feature(enable = "avx512f")]
    unsafe fn scores_tile<const ROWS: usize>(
        q: *const f32,
        stride: usize,
        kt: *const f32,
        lp: usize,
        d: usize,
        out: *mut f32,
    ) {
        let mut jb = 0;
        while jb < lp {
            let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
            for c in 0..d {
                let k = kt.add(c * lp + jb);
                let ka = _mm512_loadu_ps(k);
                let kb = _mm512_loadu_ps(k.add(16));
                for (r, a) in acc.iter_mut().enumerate() {
                    let qv = _mm512_set1_ps(*q.add(r * stride + c));
                    a[0] = _mm512_fmadd_ps(qv, ka, a[0]);
                    a[1] = _mm512_fmadd_ps(qv, kb, a[1]);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(r * lp + jb), a[0]);
                _mm512_storeu_ps(out.add(r * lp + jb + 16), a[1]);
            }
            jb += KB2;
        }
    }

    /// `out_r = Σ_j p[r · lp + j] · v_j` for `ROWS` rows (`hidden` apart) of `16 · DV` values.
    #[target_feature(enable = "avx512f")]
    unsafe fn context_tile<const ROWS: usize, const DV: usize>(
        p: *const f32,
        lp: usize,
        l: usize,
        v: *const f32,
        stride: usize,
        out: *mut f32,
        hidden: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); DV]; ROWS];
        for j in 0..l {
            let vj = v.add(j * stride);
            let mut vv = [_mm512_setzero_ps(); DV];
            for (t, x) in vv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(vj.add(16 * t));
            }
            for (r, a) in acc.iter_mut().enumerate() {
                let pv = _mm512_set1_ps(*p.add(r * lp + j));
                for t in 0..DV {
                    a[t] = _mm512_fmadd_ps(pv, vv[t], a[t]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (t, x) in a.iter().enumerate() {
                _mm512_storeu_ps(out.add(r * hidden + 16 * t), *x);
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention in f64, straight from the definition.
    fn naive(qkv: &[f32], spans: &[Span], s: Shape) -> Vec<f64> {
        let d = s.hidden / s.heads;
        let total = spans.last().map(|sp| sp.start + sp.len).unwrap_or(0);
        let at = |i: usize, part: usize, h: usize, c: usize| {
            qkv[i * 3 * s.hidden + part * s.hidden + h * d + c] as f64
        };
        let mut out = vec![0f64; total * s.hidden];
        for sp in spans {
            for h in 0..s.heads {
                for i in sp.start..sp.start + sp.len {
                    let sc: Vec<f64> = (sp.start..sp.start + sp.len)
                        .map(|j| (0..d).map(|c| at(i, 0, h, c) * at(j, 1, h, c)).sum())
                        .collect();
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (jj, j) in (sp.start..sp.start + sp.len).enumerate() {
                        for c in 0..d {
                            out[i * s.hidden + h * d + c] += e[jj] / z * at(j, 2, h, c);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn tiled_attention_matches_the_definition() {
        // Head sizes 32 and 64 (register paths) and 24 (generic); lengths around the tile and block
        // edges; the dispatching entry points and the portable path.
        for (hidden, heads) in [(64, 2), (128, 2), (48, 2)] {
            let s = Shape { hidden, heads };
            let lens = [1, 3, 4, 5, 16, 17, 37];
            let mut spans = Vec::new();
            let mut t = 0;
            for &len in &lens {
                spans.push(Span { start: t, len });
                t += len;
            }
            let qkv: Vec<f32> = (0..t * 3 * hidden)
                .map(|i| ((i as f32) * 0.731).sin() * 1.5)
                .collect();
            let want = naive(&qkv, &spans, s);
            for run in 0..3 {
                let mut ctx = vec![f32::NAN; t * hidden];
                match run {
                    0 => serial(&qkv, &mut ctx, &spans, s),
                    1 => parallel(&qkv, &mut ctx, &spans, s),
                    _ => {
                        for &sp in &spans {
                            for h in 0..heads {
                                // SAFETY: the buffers hold every span; one thread.
                                unsafe { head_portable(qkv.as_ptr(), ctx.as_mut_ptr(), sp, h, s) };
                            }
                        }
                    }
                }
                let worst = ctx
                    .iter()
                    .zip(&want)
                    .fold(0f64, |a, (g, w)| a.max((*g as f64 - w).abs()));
                assert!(
                    worst < 1e-5,
                    "hidden {hidden}, run {run}: worst error {worst}"
                );
            }
        }
    }
}
