//! int8 linear layers: weights quantized per output channel at load, activations quantized per
//! token at run time, products summed in i32 by AVX-512 VNNI (`vpdpbusd`) where the CPU has it
//! (a portable loop gives the same numbers elsewhere).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: activations are quantized asymmetrically per
//! token to `u8` with a zero point (256 levels over `[min, max]`, which doubles the resolution of
//! one-sided inputs such as GELU outputs), and the `zp · Σ w` this adds is subtracted in the
//! epilogue with the weight column sums kept from packing.

use super::attention::SendPtr;
use super::kernels::Dense;
use super::mode::Mode;
use super::packed::for_column_blocks;

/// Output columns per packed block (one 512-bit register of i32 lanes).
const LANES: usize = 16;

/// Inputs per AMX tile row (64 bytes): rows and weights are padded to a multiple of it, so that
/// the AMX kernel runs every layer in whole tiles (the padding's weights are zeros).
const TILE_INPUTS: usize = 64;

/// The width a row of `k` inputs is stored at: `k` rounded up to a multiple of 64.
fn padded(k: usize) -> usize {
    k.div_ceil(TILE_INPUTS) * TILE_INPUTS
}

/// A dense layer as packed int8: `[n/16 blocks][k4 steps][16 columns][4 k-values]`,
/// `k4 = padded(k) / 4` (AMX's B-operand layout as well as `vpdpbusd`'s).
pub struct QDense {
    packed: Vec<i8>,
    /// Per output column: the weight scale.
    scale: Vec<f32>,
    /// Per output column: `Σ_k q[k][c]` (times a row's zero point: what the u8 shift adds).
    colsum: Vec<i32>,
    pub b: Vec<f32>,
    pub n_in: usize,
    pub n_out: usize,
    k4: usize,
}

impl QDense {
    /// Quantizes a `[in, out]` f32 layer; `None` when the output width is not a multiple of 16.
    pub fn quantize(d: &Dense) -> Option<QDense> {
        let (k, n) = (d.n_in, d.n_out);
        if n % LANES != 0 || k == 0 {
            return None;
        }
        let k4 = padded(k) / 4;
        let mut scale = vec![0f32; n];
        for (c, sc) in scale.iter_mut().enumerate() {
            let m = (0..k).map(|r| d.at(r, c).abs()).fold(0f32, f32::max);
            *sc = if m > 0.0 { m / 127.0 } else { 1.0 };
        }
        let q = |r: usize, c: usize| -> i8 {
            if r >= k {
                0
            } else {
                (d.at(r, c) / scale[c])
                    .round_ties_even()
                    .clamp(-127.0, 127.0) as i8
            }
        };
        let mut packed = vec![0i8; n * k4 * 4];
        let mut colsum = vec![0i32; n];
        for cb in 0..n / LANES {
            for s in 0..k4 {
                for l in 0..LANES {
                    for j in 0..4 {
                        let v = q(s * 4 + j, cb * LANES + l);
                        packed[((cb * k4 + s) * LANES + l) * 4 + j] = v;
                        colsum[cb * LANES + l] += v as i32;
                    }
                }
            }
        }
        Some(QDense {
            packed,
            scale,
            colsum,
            b: d.b.clone(),
            n_in: k,
            n_out: n,
            k4,
        })
    }
}

/// Quantized activations of `m` rows: `u8` rows padded to [`padded`]`(k)`, a scale and a zero
/// point per row.
#[derive(Default)]
pub struct QActs {
    data: Vec<u8>,
    scale: Vec<f32>,
    zero: Vec<i32>,
}

/// Quantizes `x[m × k]` per row: `x ≈ scale · (q - zero)` with `q` in `0..=255` over the row's
/// `[min(min, 0), max(max, 0)]` (zero is exact, so padding and ReLU zeros stay zeros). `x` is
/// only read; it is `mut` because the rows are shared out to `threads` tasks as in
/// [`quantize_rows_with`].
pub fn quantize_rows(x: &mut [f32], m: usize, k: usize, out: &mut QActs, threads: usize) {
    quantize_rows_with(x, m, k, out, &|_: &mut [f32]| {}, threads)
}

/// A pass over one row in place (LayerNorm, an activation). Implementations mark `apply`
/// `#[inline(always)]` so that it is compiled into [`quantize_rows_with`]'s AVX-512 loop.
pub trait RowPass: Sync {
    fn apply(&self, row: &mut [f32]);
}

impl<F: Fn(&mut [f32]) + Sync> RowPass for F {
    #[inline(always)]
    fn apply(&self, row: &mut [f32]) {
        self(row)
    }
}

/// Elements below which a share of rows is not worth a task of its own (about a microsecond).
pub const MIN_SHARE: usize = 4096;

/// How many of `parts` tasks `m` rows of `k` are worth (at least [`MIN_SHARE`] elements each).
pub fn useful_parts(m: usize, k: usize, parts: usize) -> usize {
    parts.min(m * k / MIN_SHARE).min(m).max(1)
}

/// Applies `f` to each row of `x[m × k]` in place, then quantizes the row while it is still in
/// the L1 cache (LayerNorm or the activation fused with the next layer's quantization). On CPUs
/// with AVX-512 the loop, `f` included, is compiled for 512-bit registers. The rows are split
/// over up to `threads` rayon tasks when there are enough of them (the split changes no result).
pub fn quantize_rows_with(
    x: &mut [f32],
    m: usize,
    k: usize,
    out: &mut QActs,
    f: &impl RowPass,
    threads: usize,
) {
    prepare(out, m, k);
    let width = padded(k);
    let rows = Rows {
        x: &mut x[..m * k],
        data: &mut out.data[..m * width],
        scale: &mut out.scale[..m],
        zero: &mut out.zero[..m],
    };
    rows.run(k, f, useful_parts(m, k, threads));
}

/// Rows of activations and their quantized copies, split between tasks by halving.
struct Rows<'a> {
    x: &'a mut [f32],
    data: &'a mut [u8],
    scale: &'a mut [f32],
    zero: &'a mut [i32],
}

impl Rows<'_> {
    fn run(self, k: usize, f: &impl RowPass, parts: usize) {
        let m = self.scale.len();
        if parts <= 1 || m < 2 {
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                // SAFETY: the CPU has the features the function is compiled for (checked just above).
                unsafe { self.each_avx512(k, f) };
                return;
            }
            self.each(k, f);
            return;
        }
        let first = m * (parts / 2) / parts;
        let width = self.data.len() / m;
        let (x0, x1) = self.x.split_at_mut(first * k);
        let (d0, d1) = self.data.split_at_mut(first * width);
        let (s0, s1) = self.scale.split_at_mut(first);
        let (z0, z1) = self.zero.split_at_mut(first);
        let (a, b) = (
            Rows {
                x: x0,
                data: d0,
                scale: s0,
                zero: z0,
            },
            Rows {
                x: x1,
                data: d1,
                scale: s1,
                zero: z1,
            },
        );
        rayon::join(|| a.run(k, f, parts / 2), || b.run(k, f, parts - parts / 2));
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn each_avx512(self, k: usize, f: &impl RowPass) {
        self.each(k, f)
    }

    #[inline(always)]
    fn each(self, k: usize, f: &impl RowPass) {
        let width = padded(k);
        let rows = self
            .x
            .chunks_exact_mut(k)
            .zip(self.data.chunks_exact_mut(width));
        for ((row, dst), (scale, zero)) in rows.zip(self.scale.iter_mut().zip(self.zero.iter_mut()))
        {
            f.apply(row);
            quantize_row(row, dst, scale, zero);
        }
    }
}

fn prepare(out: &mut QActs, m: usize, k: usize) {
    let width = padded(k);
    if out.data.len() < m * width {
        out.data.resize(m * width, 0);
    }
    if out.scale.len() < m {
        out.scale.resize(m, 0.0);
        out.zero.resize(m, 0);
    }
}

/// Quantizes one row into `dst` (its padded width), with its scale and zero point.
#[inline(always)]
fn quantize_row(row: &[f32], dst: &mut [u8], scale: &mut f32, zero: &mut i32) {
    let k = row.len();
    let (lo, hi) = min_max(row);
    let s = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zp = (-lo / s).round_ties_even().clamp(0.0, 255.0);
    let inv = 1.0 / s;
    // Adding 1.5·2^23 rounds to the nearest integer (ties to even) and leaves it in the low
    // mantissa bits: branch-free and vectorized, unlike a saturating float-to-int cast.
    const MAGIC: f32 = 12_582_912.0;
    for (d, &v) in dst.iter_mut().zip(row) {
        *d = ((v * inv + zp).clamp(0.0, 255.0) + MAGIC).to_bits() as u8;
    }
    // Padding meets zero weights; any value works, keep the zero point.
    dst[k..].fill(zp as u8);
    *scale = s;
    *zero = zp as i32;
}

/// `(min(row ∪ {0}), max(row ∪ {0}))` with 16 running minima and maxima: compare-and-select
/// vectorizes, a fold over `f32::min` stays one scalar chain (NaN rules forbid reordering it).
#[inline(always)]
fn min_max(row: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
    let chunks = row.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    lo.iter()
        .zip(&hi)
        .chain(tail.iter().zip(tail))
        .fold((0f32, 0f32), |(l, h), (&a, &b)| {
            (if a < l { a } else { l }, if b > h { b } else { h })
        })
}

/// `dst[m × n] (=|+=) dequant(A · W)` (+ bias when `Biased`) for the first `m` rows of `a`, the
/// columns split over `threads` rayon tasks (whole 16-column blocks each: the split changes no result).
pub fn linear_q(dst: &mut [f32], a: &QActs, m: usize, w: &QDense, mode: Mode, threads: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let amx = has_amx();
        if amx || vnni::available() {
            let (n, width) = (w.n_out, w.k4 * 4);
            assert!(a.data.len() >= m * width && a.scale.len() >= m && dst.len() >= m * n);
            assert!(w.packed.len() >= n * width);
            // Shared by the threads that split the columns: each writes disjoint column blocks.
            let out = SendPtr(dst.as_mut_ptr());
            for_column_blocks(n / LANES, threads, |blocks| {
                // SAFETY: the CPU has AMX-INT8 (granted by Linux) or AVX-512F/BW and VNNI
                // (checked at run time; every AMX CPU has AVX-512 VNNI, which the AMX epilogue
                // uses); sizes are checked above; each call writes only its own column blocks.
                unsafe {
                    if amx {
                        amx_int8::linear(&out, a, m, w, mode, blocks)
                    } else {
                        vnni::linear(&out, a, m, w, mode, blocks)
                    }
                };
            });
            return;
        }
    }
    let _ = threads;
    portable(dst, a, m, w, mode);
}

/// Whether this process runs the AMX-INT8 kernel (`TDPBUSD` tiles; `NLPD_AMX=off` turns it off).
pub fn has_amx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::amx::int8_available() && vnni::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs the VNNI kernel (else the portable loop, same results, much slower).
pub fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        vnni::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn store(dst: &mut f32, acc: i32, zp: i32, colsum: i32, sa: f32, sw: f32, bias: f32, mode: Mode) {
    let v = (acc - zp * colsum) as f32 * (sa * sw);
    match mode {
        Mode::Biased => *dst = v + bias,
        Mode::Accumulate => *dst += v,
    }
}

/// The reference loop: the same integer arithmetic as the VNNI kernel.
pub fn portable(dst: &mut [f32], a: &QActs, m: usize, w: &QDense, mode: Mode) {
    let (n, k4) = (w.n_out, w.k4);
    let width = k4 * 4;
    for r in 0..m {
        let row = &a.data[r * width..(r + 1) * width];
        for c in 0..n {
            let (cb, l) = (c / LANES, c % LANES);
            let mut acc = 0i32;
            for s in 0..k4 {
                let p = ((cb * k4 + s) * LANES + l) * 4;
                for j in 0..4 {
                    acc += row[s * 4 + j] as i32 * w.packed[p + j] as i32;
                }
            }
            store(
                &mut dst[r * n + c],
                acc,
                a.zero[r],
                w.colsum[c],
                a.scale[r],
                w.scale[c],
                w.b[c],
                mode,
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{QActs, QDense, SendPtr, LANES};
    use crate::encoder::fast::mode::Mode;
    use std::arch::x86_64::*;
    use std::ops::Range;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }

    /// Rows per micro-tile and 16-column blocks per micro-tile (6 × 4 accumulators).
    const MR: usize = 6;
    const NR: usize = 4;

    /// # Safety
    /// The CPU must have AVX-512F/BW and VNNI; `dst` must hold `m × n` floats, `a` `m` rows;
    /// no other thread may write the column blocks `blocks` of `dst`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn linear(
        dst: &SendPtr<f32>,
        a: &QActs,
        m: usize,
        w: &QDense,
        mode: Mode,
        blocks: Range<usize>,
    ) {
        let dst = dst.0;
        let mut cb = blocks.start;
        while cb < blocks.end {
            let nr = NR.min(blocks.end - cb);
            let mut r = 0;
            while r < m {
                let mr = MR.min(m - r);
                // Every tile shape is its own instance, so the accumulators stay in registers.
                match (mr, nr) {
                    (1, 1) => tile::<1, 1>(dst, a, w, r, cb, mode),
                    (1, 2) => tile::<1, 2>(dst, a, w, r, cb, mode),
                    (1, 3) => tile::<1, 3>(dst, a, w, r, cb, mode),
                    (1, 4) => tile::<1, 4>(dst, a, w, r, cb, mode),
                    (2, 1) => tile::<2, 1>(dst, a, w, r, cb, mode),
                    (2, 2) => tile::<2, 2>(dst, a, w, r, cb, mode),
                    (2, 3) => tile::<2, 3>(dst, a, w, r, cb, mode),
                    (2, 4) => tile::<2, 4>(dst, a, w, r, cb, mode),
                    (3, 1) => tile::<3, 1>(dst, a, w, r, cb, mode),
                    (3, 2) => tile::<3, 2>(dst, a, w, r, cb, mode),
                    (3, 3) => tile::<3, 3>(dst, a, w, r, cb, mode),
                    (3, 4) => tile::<3, 4>(dst, a, w, r, cb, mode),
                    (4, 1) => tile::<4, 1>(dst, a, w, r, cb, mode),
                    (4, 2) => tile::<4, 2>(dst, a, w, r, cb, mode),
                    (4, 3) => tile::<4, 3>(dst, a, w, r, cb, mode),
                    (4, 4) => tile::<4, 4>(dst, a, w, r, cb, mode),
                    (5, 1) => tile::<5, 1>(dst, a, w, r, cb, mode),
                    (5, 2) => tile::<5, 2>(dst, a, w, r, cb, mode),
                    (5, 3) => tile::<5, 3>(dst, a, w, r, cb, mode),
                    (5, 4) => tile::<5, 4>(dst, a, w, r, cb, mode),
                    (6, 1) => tile::<6, 1>(dst, a, w, r, cb, mode),
                    (6, 2) => tile::<6, 2>(dst, a, w, r, cb, mode),
                    (6, 3) => tile::<6, 3>(dst, a, w, r, cb, mode),
                    (6, 4) => tile::<6, 4>(dst, a, w, r, cb, mode),
                    _ => unreachable!("tile shapes are 1..=6 x 1..=4"),
                }
                r += mr;
            }
            cb += nr;
        }
    }

    /// One `R × (16·C)` tile: `R·C` accumulators, `C` weight vectors per step of 4 k-values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const R: usize, const C: usize>(
        dst: *mut f32,
        a: &QActs,
        w: &QDense,
        r0: usize,
        cb0: usize,
        mode: Mode,
    ) {
        let k4 = w.k4;
        let width = k4 * 4;
        let mut acc = [[_mm512_setzero_si512(); C]; R];
        let ap = a.data.as_ptr().add(r0 * width);
        let bp = w.packed.as_ptr().add(cb0 * k4 * LANES * 4);
        for s in 0..k4 {
            let mut b = [_mm512_setzero_si512(); C];
            for (j, bj) in b.iter_mut().enumerate() {
                *bj = _mm512_loadu_si512(bp.add((j * k4 + s) * LANES * 4) as *const _);
            }
            for (i, acc_i) in acc.iter_mut().enumerate() {
                let v = (ap.add(i * width + s * 4) as *const i32).read_unaligned();
                let av = _mm512_set1_epi32(v);
                for j in 0..C {
                    acc_i[j] = _mm512_dpbusd_epi32(acc_i[j], av, b[j]);
                }
            }
        }
        for (i, acc_i) in acc.into_iter().enumerate() {
            for (j, v) in acc_i.into_iter().enumerate() {
                finish(dst, a, w, r0 + i, cb0 + j, v, mode);
            }
        }
    }

    /// The epilogue of 16 columns of one row: `(acc - zp · colsum) · (sa · sw)`, then `+ bias`
    /// into `dst` (`Biased`) or added onto it (`Accumulate`).
    #[inline(always)]
    pub(super) unsafe fn finish(
        dst: *mut f32,
        a: &QActs,
        w: &QDense,
        r: usize,
        cb: usize,
        v: __m512i,
        mode: Mode,
    ) {
        let n = w.n_out;
        let c0 = cb * LANES;
        let zp = _mm512_set1_epi32(a.zero[r]);
        let sa = _mm512_set1_ps(a.scale[r]);
        let colsum = _mm512_loadu_si512(w.colsum.as_ptr().add(c0) as *const _);
        let fixed = _mm512_sub_epi32(v, _mm512_mullo_epi32(zp, colsum));
        let scale = _mm512_mul_ps(sa, _mm512_loadu_ps(w.scale.as_ptr().add(c0)));
        let y = _mm512_mul_ps(_mm512_cvtepi32_ps(fixed), scale);
        let out = dst.add(r * n + c0);
        let y = match mode {
            Mode::Biased => _mm512_add_ps(y, _mm512_loadu_ps(w.b.as_ptr().add(c0))),
            Mode::Accumulate => _mm512_add_ps(y, _mm512_loadu_ps(out)),
        };
        _mm512_storeu_ps(out, y);
    }
}

/// `TDPBUSD` on AMX tiles, 32 rows × 32 columns at a time (the tile layout of the bf16 AMX
/// kernel: C in tmm0-3, A in tmm4-5, B in tmm6-7), each step 64 inputs. The i32 sums are stored to
/// a scratch block and finished by the VNNI kernel's epilogue, so the results are the VNNI and
/// portable loops' bit for bit (integer sums are exact).
#[cfg(target_arch = "x86_64")]
mod amx_int8 {
    use super::super::amx::{self, TileConfig, ROWS, ROW_BYTES};
    use super::{vnni, QActs, QDense, SendPtr, LANES};
    use crate::encoder::fast::mode::Mode;
    use std::arch::x86_64::_mm512_loadu_si512;
    use std::ops::Range;

    /// Quads of inputs per B tile (its 16 rows): 64 inputs per step.
    const QUADS: usize = ROWS;

    /// # Safety
    /// AMX-INT8 must be available (which requested the tile permission) and the CPU must have
    /// AVX-512F/BW and VNNI; `dst` must hold `m × n` floats, `a` `m` rows of `4·k4`; no other
    /// thread may write the column blocks `blocks`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn linear(
        dst: &SendPtr<f32>,
        a: &QActs,
        m: usize,
        w: &QDense,
        mode: Mode,
        blocks: Range<usize>,
    ) {
        let k4 = w.k4;
        debug_assert!(k4.is_multiple_of(QUADS), "rows are padded to whole tiles");
        let a_stride = k4 * 4;
        let panel = k4 * LANES * 4;
        // C tile (2i + j) of a step: rows 16i.., block cb + j.
        let mut sums = [[0i32; ROWS * LANES]; 4];
        let mut shape = (0, 0);
        let mut r = 0;
        while r < m {
            let r0 = ROWS.min(m - r);
            let r1 = ROWS.min(m - r - r0);
            if (r0, r1) != shape {
                TileConfig::two_by_two(r0, r1).load();
                shape = (r0, r1);
            }
            let a0 = a.data.as_ptr().add(r * a_stride);
            let mut cb = blocks.start;
            while cb < blocks.end {
                let two = cb + 1 < blocks.end;
                let b0 = w.packed.as_ptr().add(cb * panel) as *const u8;
                match (r1 > 0, two) {
                    (true, true) => sum::<true, true>(a0, a_stride, b0, panel, k4, &mut sums),
                    (true, false) => sum::<true, false>(a0, a_stride, b0, panel, k4, &mut sums),
                    (false, true) => sum::<false, true>(a0, a_stride, b0, panel, k4, &mut sums),
                    (false, false) => sum::<false, false>(a0, a_stride, b0, panel, k4, &mut sums),
                }
                for (i, rows) in [(0, r0), (1, r1)] {
                    for j in 0..1 + two as usize {
                        let tile = &sums[2 * i + j];
                        for row in 0..rows {
                            let v = _mm512_loadu_si512(tile.as_ptr().add(row * LANES) as *const _);
                            vnni::finish(dst.0, a, w, r + ROWS * i + row, cb + j, v, mode);
                        }
                    }
                }
                cb += 1 + two as usize;
            }
            r += r0 + r1;
        }
        amx::release();
    }

    /// The i32 sums of rows `a0 + 16i·a_stride` (i < 2 when `LOW`) × block panels `b0` (and the
    /// next when `TWO`) into `sums`.
    #[inline(always)]
    unsafe fn sum<const LOW: bool, const TWO: bool>(
        a0: *const u8,
        a_stride: usize,
        b0: *const u8,
        panel: usize,
        k4: usize,
        sums: &mut [[i32; ROWS * LANES]; 4],
    ) {
        amx::zero::<0>();
        if TWO {
            amx::zero::<1>();
        }
        if LOW {
            amx::zero::<2>();
            if TWO {
                amx::zero::<3>();
            }
        }
        for step in 0..k4 / QUADS {
            let ap = a0.add(step * ROW_BYTES);
            let bp = b0.add(step * QUADS * ROW_BYTES);
            amx::load::<4>(ap, a_stride);
            amx::load::<6>(bp, ROW_BYTES);
            amx::dp_u8i8::<0, 4, 6>();
            if TWO {
                amx::load::<7>(bp.add(panel), ROW_BYTES);
                amx::dp_u8i8::<1, 4, 7>();
            }
            if LOW {
                amx::load::<5>(ap.add(ROWS * a_stride), a_stride);
                amx::dp_u8i8::<2, 5, 6>();
                if TWO {
                    amx::dp_u8i8::<3, 5, 7>();
                }
            }
        }
        let stride = LANES * 4;
        amx::store::<0>(sums[0].as_mut_ptr() as *mut u8, stride);
        if TWO {
            amx::store::<1>(sums[1].as_mut_ptr() as *mut u8, stride);
        }
        if LOW {
            amx::store::<2>(sums[2].as_mut_ptr() as *mut u8, stride);
            if TWO {
                amx::store::<3>(sums[3].as_mut_ptr() as *mut u8, stride);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::fast::kernels::{linear, Dense};
    use gemm::Parallelism;

    fn layer(k: usize, n: usize) -> Dense {
        Dense::new(
            (0..k * n)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.2)
                .collect(),
            (0..n).map(|i| i as f32 * 0.01).collect(),
            k,
            n,
        )
    }

    #[test]
    fn int8_matches_f32_within_quantization_error_and_the_portable_loop_exactly() {
        let kernel = if has_amx() {
            "AMX-INT8"
        } else if has_vnni() {
            "VNNI"
        } else {
            "portable"
        };
        eprintln!("int8 kernel on this CPU: {kernel}");
        // Row counts around AMX's 16- and 32-row tiles, odd and even numbers of column blocks.
        for (m, k, n) in [
            (1, 37, 16),
            (7, 64, 48),
            (13, 384, 80),
            (6, 130, 64),
            (17, 384, 48),
            (33, 384, 112),
            (70, 200, 112),
        ] {
            let d = layer(k, n);
            let x: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.37).sin()).collect();
            let mut want = vec![0f32; m * n];
            linear(&mut want, &x, m, &d, Mode::Biased, Parallelism::None);
            let q = QDense::quantize(&d).unwrap();
            let mut acts = QActs::default();
            quantize_rows(&mut x.clone(), m, k, &mut acts, 1);
            let mut fast = vec![0f32; m * n];
            linear_q(&mut fast, &acts, m, &q, Mode::Biased, 1);
            let mut split = vec![0f32; m * n];
            linear_q(&mut split, &acts, m, &q, Mode::Biased, 2);
            assert_eq!(
                fast, split,
                "({m},{k},{n}): the column split changed a result"
            );
            let mut slow = vec![0f32; m * n];
            portable(&mut slow, &acts, m, &q, Mode::Biased);
            assert_eq!(
                fast, slow,
                "({m},{k},{n}): {kernel} and portable loops differ"
            );
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            let worst = want
                .iter()
                .zip(&fast)
                .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
            assert!(
                worst < 0.02 * scale,
                "({m},{k},{n}): error {worst} vs scale {scale}"
            );
            let mut acc = vec![1f32; m * n];
            linear_q(&mut acc, &acts, m, &q, Mode::Accumulate, 2);
            for ((a, f), b) in acc.iter().zip(&fast).zip(d.b.iter().cycle()) {
                assert!((a - (f - b + 1.0)).abs() < 1e-4);
            }
        }
        assert!(QDense::quantize(&layer(8, 20)).is_none(), "20 columns");
    }

    #[test]
    fn fused_pass_equals_the_pass_then_quantization() {
        let (m, k) = (5, 70);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i as f32) * 0.61).cos() * 2.0)
            .collect();
        let double_then_shift = |row: &mut [f32]| row.iter_mut().for_each(|v| *v = *v * 2.0 - 0.5);
        let mut a = x.clone();
        a.chunks_exact_mut(k).for_each(double_then_shift);
        let mut want = QActs::default();
        quantize_rows(&mut a.clone(), m, k, &mut want, 1);
        let mut b = x.clone();
        let mut got = QActs::default();
        quantize_rows_with(&mut b, m, k, &mut got, &double_then_shift, 1);
        assert_eq!(a, b, "the rows after the pass");
        assert_eq!(want.data, got.data);
        assert_eq!(want.scale, got.scale);
        assert_eq!(want.zero, got.zero);
        // Rows split over tasks: the same numbers.
        let (m, k) = (37, 1000);
        assert_eq!(useful_parts(m, k, 3), 3);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i as f32) * 0.13).sin() * 3.0)
            .collect();
        let (mut one, mut three) = (x.clone(), x.clone());
        let (mut a1, mut a3) = (QActs::default(), QActs::default());
        quantize_rows_with(&mut one, m, k, &mut a1, &double_then_shift, 1);
        quantize_rows_with(&mut three, m, k, &mut a3, &double_then_shift, 3);
        assert_eq!(one, three);
        assert_eq!((a1.data, a1.scale, a1.zero), (a3.data, a3.scale, a3.zero));
        let (lo, hi) = min_max(&[3.0, -1.0, f32::NAN, 7.5, 0.25]);
        assert_eq!((lo, hi), (-1.0, 7.5));
        assert_eq!(
            min_max(&[2.0; 40]),
            (0.0, 2.0),
            "zero is always in the range"
        );
    }
}
