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
/// Keys are transposed 16 × 16 at a time in registers (padding keys become zeros on the way).
/// Four query rows at a time: their scores against 32 keys are 4 × 2 accumulators fed by one
/// broadcast per query value and two key loads per head channel; the softmax runs on whole
/// vectors with the padding lanes masked off; the context rows are `4 × DV` accumulators fed by
/// `DV` loads of each value row, scaled by the softmax's `1 / Σ` once at the end.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Shape, Span, SCRATCH};
    pub use crate::encoder::fast::kernels::avx512::available;
    use crate::encoder::fast::kernels::avx512::{exp, first_lanes};
    use std::arch::x86_64::*;

    /// Query rows per tile.
    const R: usize = 4;
    /// Keys per score block (two vectors).
    const KB2: usize = 32;

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
            transpose_keys(k0, stride, l, lp, d, kt.as_mut_ptr());
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
                let mut inv = [0f32; R];
                for (r, inv) in inv.iter_mut().enumerate().take(rows) {
                    *inv = softmax_unscaled(p.add(r * lp), lp, l);
                }
                let p = scores.as_ptr();
                match rows {
                    4 => context_tile::<4, DV>(p, lp, l, inv, v0, stride, out, s.hidden),
                    3 => context_tile::<3, DV>(p, lp, l, inv, v0, stride, out, s.hidden),
                    2 => context_tile::<2, DV>(p, lp, l, inv, v0, stride, out, s.hidden),
                    _ => context_tile::<1, DV>(p, lp, l, inv, v0, stride, out, s.hidden),
                }
                i += rows;
            }
        });
    }

    /// `kt[c · lp + j] = k_j[c]` for the `l` keys (`stride` apart, `d` channels each) and zero for
    /// `l ≤ j < lp`; `lp` and `d` are multiples of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_keys(
        k0: *const f32,
        stride: usize,
        l: usize,
        lp: usize,
        d: usize,
        kt: *mut f32,
    ) {
        for jb in (0..lp).step_by(16) {
            for cb in (0..d).step_by(16) {
                let mut rows = [_mm512_setzero_ps(); 16];
                for (t, x) in rows.iter_mut().enumerate().take(l.saturating_sub(jb)) {
                    *x = _mm512_loadu_ps(k0.add((jb + t) * stride + cb));
                }
                for (c, x) in transpose16(rows).into_iter().enumerate() {
                    _mm512_storeu_ps(kt.add((cb + c) * lp + jb), x);
                }
            }
        }
    }

    /// A 16 × 16 transpose in registers: pairs of rows interleaved, then 2 × 2 blocks within each
    /// 128-bit lane, then the 128-bit lanes themselves (64 shuffles).
    #[inline(always)]
    unsafe fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            // Per 128-bit lane L (columns 4L..4L+3) of rows a, b: a0 b0 a1 b1 | a2 b2 a3 b3.
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            // u[4g + k], lane L: column 4L + k of rows 4g..4g+3.
            let (t0, t1, t2, t3) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
            u[4 * g] = _mm512_shuffle_ps::<0x44>(t0, t2);
            u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(t0, t2);
            u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(t1, t3);
            u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(t1, t3);
        }
        let mut out = [_mm512_setzero_ps(); 16];
        for k in 0..4 {
            // Gather lane L of u[k], u[4 + k], u[8 + k], u[12 + k]: column 4L + k, all 16 rows.
            let even = _mm512_shuffle_f32x4::<0x88>(u[k], u[4 + k]);
            let odd = _mm512_shuffle_f32x4::<0xDD>(u[k], u[4 + k]);
            let even2 = _mm512_shuffle_f32x4::<0x88>(u[8 + k], u[12 + k]);
            let odd2 = _mm512_shuffle_f32x4::<0xDD>(u[8 + k], u[12 + k]);
            out[k] = _mm512_shuffle_f32x4::<0x88>(even, even2);
            out[8 + k] = _mm512_shuffle_f32x4::<0xDD>(even, even2);
            out[4 + k] = _mm512_shuffle_f32x4::<0x88>(odd, odd2);
            out[12 + k] = _mm512_shuffle_f32x4::<0xDD>(odd, odd2);
        }
        out
    }

    /// The lanes `j < l` of vector `v` (of 16) of a row.
    #[inline(always)]
    fn valid(v: usize, l: usize) -> __mmask16 {
        first_lanes(l.saturating_sub(16 * v))
    }

    /// `row[j] = e^(row[j] - max)` for `j < l` and 0 for `l ≤ j < lp`; returns `1 / Σ`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn softmax_unscaled(row: *mut f32, lp: usize, l: usize) -> f32 {
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        for v in 0..lp / 16 {
            let x = _mm512_loadu_ps(row.add(16 * v));
            m = _mm512_mask_max_ps(m, valid(v, l), m, x);
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(m));
        let mut sum = _mm512_setzero_ps();
        for v in 0..lp / 16 {
            let x = _mm512_loadu_ps(row.add(16 * v));
            let e = _mm512_maskz_mov_ps(valid(v, l), exp(_mm512_sub_ps(x, max)));
            sum = _mm512_add_ps(sum, e);
            _mm512_storeu_ps(row.add(16 * v), e);
        }
        1.0 / _mm512_reduce_add_ps(sum)
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

    /// `out_r = inv_r · Σ_j p[r · lp + j] · v_j` for `ROWS` rows (`hidden` apart) of `16 · DV` values.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn context_tile<const ROWS: usize, const DV: usize>(
        p: *const f32,
        lp: usize,
        l: usize,
        inv: [f32; R],
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
            let s = _mm512_set1_ps(inv[r]);
            for (t, x) in a.iter().enumerate() {
                _mm512_storeu_ps(out.add(r * hidden + 16 * t), _mm512_mul_ps(*x, s));
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn register_transpose_and_masked_softmax() {
        if !avx512::available() {
            eprintln!("no AVX-512: nothing to check here");
            return;
        }
        let (stride, d) = (80, 32);
        for l in [1usize, 15, 16, 17, 31, 32, 33, 47] {
            let lp = l.div_ceil(32) * 32;
            let k: Vec<f32> = (0..l * stride).map(|i| i as f32 * 0.5 - 7.0).collect();
            let mut kt = vec![f32::NAN; lp * d];
            // SAFETY: AVX-512F present; `k` holds `l` rows of `stride`, `kt` `lp × d`.
            unsafe { avx512::transpose_keys(k.as_ptr().add(3), stride, l, lp, d, kt.as_mut_ptr()) };
            for c in 0..d {
                for j in 0..lp {
                    let want = if j < l { k[j * stride + 3 + c] } else { 0.0 };
                    assert_eq!(kt[c * lp + j], want, "l {l}: channel {c}, key {j}");
                }
            }
            let mut row: Vec<f32> = (0..lp).map(|j| (j as f32 * 0.9).sin() * 4.0).collect();
            let x = row.clone();
            // SAFETY: AVX-512F present; the row holds `lp` floats.
            let inv = unsafe { avx512::softmax_unscaled(row.as_mut_ptr(), lp, l) };
            let m = x[..l]
                .iter()
                .fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
            let z: f64 = x[..l].iter().map(|&v| (v as f64 - m).exp()).sum();
            for j in 0..lp {
                let want = if j < l {
                    (x[j] as f64 - m).exp() / z
                } else {
                    0.0
                };
                let got = row[j] as f64 * inv as f64;
                assert!((got - want).abs() < 1e-6, "l {l}, key {j}: {got} vs {want}");
            }
        }
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
