//! bf16 linear layers: weights rounded to bf16 once at load (half the bytes of f32), activations
//! rounded to bf16 per row on their way into each GEMM, products summed in f32. Everything else
//! (embeddings, LayerNorm, GELU, attention and its softmax, the residual stream, the biases) stays
//! f32, as in mixed-precision inference elsewhere.
//!
//! A bf16 is the upper half of an f32 (sign, the same 8-bit exponent, 7 mantissa bits), so the
//! product of two bf16 values is exact in f32 and only the f32 sums round. The kernels, chosen once
//! at run time ([`Bf16Kernel::detect`]):
//! - **AVX512-BF16** (`vdpbf16ps`, Cooper Lake, Sapphire Rapids and later, Zen 4 and later): each
//!   instruction adds two bf16 products into each of 16 f32 lanes.
//! - **AVX2 + FMA**: widens bf16 to f32 (a 16-bit shift or a mask; no conversion instruction) and
//!   multiplies with f32 FMAs. A correctness path, not a speed path: it does the f32 kernel's
//!   arithmetic plus the widening, and gains only from reading half the weight bytes.
//! - **portable**: the scalar reference loop (any CPU).
//!
//! All three compute `acc += x[2s+1]·w[2s+1]; acc += x[2s]·w[2s]` for each pair of inputs in that
//! order (the order of `vdpbf16ps`' definition), so the AVX2 and portable kernels give identical
//! results, and `vdpbf16ps` differs only where it flushes subnormals to zero.
//!
//! Weights are packed like the operands of `vdpbf16ps`: `[n/16 blocks][k/2 pairs][16 columns][2]`
//! (each 32-bit word holds one column's weights for two consecutive inputs). The AVX2 kernel reads
//! the same words, 8 columns per 256-bit load.
//!
//! - **AMX-BF16** (`TDPBF16PS`, Sapphire Rapids and later), tried first: a tile instruction adds 32
//!   bf16 products into each of 16 × 16 f32 sums. This packing is AMX's B-operand layout, so a
//!   block's panel is read as tiles of 16 pairs (16 rows of 64 bytes) in place, and the activations
//!   as A tiles of 16 rows × 32 bf16 straight from [`BActs`]. Rows and weights are padded with
//!   zeros to a multiple of 32 inputs ([`padded`]) so that every layer runs in whole tiles.
//!
//! `NLPD_BF16_KERNEL=amx|avx512-bf16|avx2-fma|portable` picks a kernel the CPU runs (to compare
//! them on one machine); an unknown or unavailable name is ignored with a warning.

use super::attention::SendPtr;
use super::int8::{useful_parts, RowPass};
use super::kernels::Dense;
use super::mode::Mode;
use super::packed::for_column_blocks;

/// Output columns per packed block (one 512-bit register of f32 lanes).
const LANES: usize = 16;

/// The bf16 GEMM kernel a process runs, chosen from the CPU's features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// `vdpbf16ps` (AVX512-BF16 with AVX-512F).
    Avx512Bf16,
    /// bf16 widened to f32 by a shift, f32 FMAs (AVX2 + FMA).
    Avx2Fma,
    /// The scalar reference loop.
    Portable,
    /// `TDPBF16PS` on AMX tiles.
    Amx,
}

impl Bf16Kernel {
    /// The fastest kernel this CPU runs, or the one `NLPD_BF16_KERNEL` names if the CPU runs it.
    pub fn detect() -> Bf16Kernel {
        if let Ok(name) = std::env::var("NLPD_BF16_KERNEL") {
            match Bf16Kernel::ALL.into_iter().find(|k| k.name() == name) {
                Some(k) if k.available() => return k,
                Some(_) => {
                    tracing::warn!(kernel = %name, "NLPD_BF16_KERNEL: this CPU cannot run it; ignored")
                }
                None => tracing::warn!(
                    kernel = %name,
                    "NLPD_BF16_KERNEL: unknown (amx, avx512-bf16, avx2-fma, portable); ignored"
                ),
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            if amx_bf16::available() {
                return Bf16Kernel::Amx;
            }
            if avx512bf16::available() {
                return Bf16Kernel::Avx512Bf16;
            }
            if avx2::available() {
                return Bf16Kernel::Avx2Fma;
            }
        }
        Bf16Kernel::Portable
    }

    /// Every kernel, fastest first.
    pub const ALL: [Bf16Kernel; 4] = [
        Bf16Kernel::Amx,
        Bf16Kernel::Avx512Bf16,
        Bf16Kernel::Avx2Fma,
        Bf16Kernel::Portable,
    ];

    /// The name `NLPD_BF16_KERNEL` takes.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Amx => "amx",
            Bf16Kernel::Avx512Bf16 => "avx512-bf16",
            Bf16Kernel::Avx2Fma => "avx2-fma",
            Bf16Kernel::Portable => "portable",
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Amx => amx_bf16::available(),
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Avx512Bf16 => avx512bf16::available(),
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Avx2Fma => avx2::available(),
            #[cfg(not(target_arch = "x86_64"))]
            Bf16Kernel::Amx | Bf16Kernel::Avx512Bf16 | Bf16Kernel::Avx2Fma => false,
            Bf16Kernel::Portable => true,
        }
    }
}

/// f32 → bf16 bits, rounded to nearest, ties to even (a NaN stays a quiet NaN): the same bits as
/// `half::bf16::from_f32`, branch-free so that loops over it vectorize.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    let nan = ((b >> 16) as u16) | 0x40;
    if x.is_nan() {
        nan
    } else {
        rounded
    }
}

/// bf16 bits → f32 (exact: the bits become the upper half).
#[inline(always)]
pub fn widen(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Inputs per AMX tile row (32 bf16): rows and weights are padded with zeros to a multiple of it.
const TILE_INPUTS: usize = 32;

/// The width a row of `k` inputs is stored at: `k` rounded up to a multiple of 32 (zeros after).
pub fn padded(k: usize) -> usize {
    k.div_ceil(TILE_INPUTS) * TILE_INPUTS
}

/// A dense layer as packed bf16: `[n/16 blocks][k2 pairs][16 columns][2 inputs]`,
/// `k2 = padded(k) / 2` (the padding's weights are zeros).
pub struct BDense {
    packed: Vec<u16>,
    pub b: Vec<f32>,
    pub n_in: usize,
    pub n_out: usize,
    k2: usize,
}

impl BDense {
    /// Rounds a `[in, out]` f32 layer to bf16 (`half`'s round-to-nearest-even); `None` when the
    /// output width is not a multiple of 16.
    pub fn convert(d: &Dense) -> Option<BDense> {
        let (k, n) = (d.n_in, d.n_out);
        if !n.is_multiple_of(LANES) || k == 0 {
            return None;
        }
        let k2 = padded(k) / 2;
        let mut packed = vec![0u16; n * k2 * 2];
        for cb in 0..n / LANES {
            for s in 0..k2 {
                for l in 0..LANES {
                    for j in 0..2 {
                        let r = 2 * s + j;
                        if r < k {
                            packed[((cb * k2 + s) * LANES + l) * 2 + j] =
                                half::bf16::from_f32(d.at(r, cb * LANES + l)).to_bits();
                        }
                    }
                }
            }
        }
        Some(BDense {
            packed,
            b: d.b.clone(),
            n_in: k,
            n_out: n,
            k2,
        })
    }

    /// Weight `(input r, output c)` as the kernels see it.
    #[cfg(test)]
    pub fn at(&self, r: usize, c: usize) -> f32 {
        let (cb, l) = (c / LANES, c % LANES);
        widen(self.packed[((cb * self.k2 + r / 2) * LANES + l) * 2 + r % 2])
    }
}

/// Activations of `m` rows rounded to bf16, each row zero-padded to [`padded`]`(k)`.
#[derive(Default)]
pub struct BActs {
    data: Vec<u16>,
}

impl BActs {
    /// Element `(row r, input c)` of rows of `k` inputs.
    #[cfg(test)]
    pub fn at(&self, r: usize, c: usize, k: usize) -> f32 {
        widen(self.data[r * padded(k) + c])
    }
}

/// Rounds `x[m × k]` to bf16 rows in `out`. `x` is only read; it is `mut` because the rows are
/// shared out to `threads` tasks as in [`convert_rows_with`].
pub fn convert_rows(x: &mut [f32], m: usize, k: usize, out: &mut BActs, threads: usize) {
    convert_rows_with(x, m, k, out, &|_: &mut [f32]| {}, threads)
}

/// Applies `f` to each row of `x[m × k]` in place, then rounds the row to bf16 into `out` while
/// it is still in the L1 cache (LayerNorm or the activation fused with the next GEMM's input).
/// The rows are split over up to `threads` rayon tasks when there are enough of them (the split
/// changes no result).
pub fn convert_rows_with(
    x: &mut [f32],
    m: usize,
    k: usize,
    out: &mut BActs,
    f: &impl RowPass,
    threads: usize,
) {
    let width = padded(k);
    if out.data.len() < m * width {
        out.data.resize(m * width, 0);
    }
    rows(
        &mut x[..m * k],
        &mut out.data[..m * width],
        k,
        f,
        useful_parts(m, k, threads),
    );
}

/// Rows of `k` and their bf16 copies (rows of `width`), split between tasks by halving.
fn rows(x: &mut [f32], data: &mut [u16], k: usize, f: &impl RowPass, parts: usize) {
    let m = x.len() / k.max(1);
    let width = data.len() / m.max(1);
    if parts <= 1 || m < 2 {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has the features the function is compiled for (checked just above).
            unsafe { each_avx512(x, data, k, width, f) };
            return;
        }
        each(x, data, k, width, f);
        return;
    }
    let first = m * (parts / 2) / parts;
    let (x0, x1) = x.split_at_mut(first * k);
    let (d0, d1) = data.split_at_mut(first * width);
    rayon::join(
        || rows(x0, d0, k, f, parts / 2),
        || rows(x1, d1, k, f, parts - parts / 2),
    );
}

/// [`each`] compiled for AVX-512 (the pass, often LayerNorm, included).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn each_avx512(x: &mut [f32], data: &mut [u16], k: usize, width: usize, f: &impl RowPass) {
    each(x, data, k, width, f)
}

#[inline(always)]
fn each(x: &mut [f32], data: &mut [u16], k: usize, width: usize, f: &impl RowPass) {
    for (row, dst) in x.chunks_exact_mut(k).zip(data.chunks_exact_mut(width)) {
        f.apply(row);
        for (d, &v) in dst.iter_mut().zip(row.iter()) {
            *d = to_bf16(v);
        }
        dst[k..].fill(0);
    }
}

/// `dst[m × n] (=|+=) A · W` (+ bias when `Biased`) for the first `m` rows of `a`, by `kernel`,
/// the columns split over `threads` rayon tasks (whole 16-column blocks each: the split changes
/// no result). Panics if this CPU cannot run `kernel`.
pub fn linear(
    kernel: Bf16Kernel,
    dst: &mut [f32],
    a: &BActs,
    m: usize,
    w: &BDense,
    mode: Mode,
    threads: usize,
) {
    let (n, width) = (w.n_out, w.k2 * 2);
    assert!(a.data.len() >= m * width && dst.len() >= m * n);
    assert_eq!(w.packed.len(), n * width);
    assert_eq!(w.b.len(), n);
    assert!(
        kernel.available(),
        "this CPU cannot run the {kernel:?} kernel"
    );
    if m == 0 {
        return;
    }
    // Shared by the threads that split the columns: each writes disjoint column blocks.
    let out = SendPtr(dst.as_mut_ptr());
    for_column_blocks(n / LANES, threads, |blocks| {
        // SAFETY: the CPU runs `kernel` (asserted above); `dst` holds `m × n` floats and `a` `m`
        // rows of `width` (asserted above); each call writes only its own column blocks of `dst`.
        unsafe {
            match kernel {
                #[cfg(target_arch = "x86_64")]
                Bf16Kernel::Amx => amx_bf16::linear(&out, a, m, w, mode, blocks),
                #[cfg(target_arch = "x86_64")]
                Bf16Kernel::Avx512Bf16 => avx512bf16::linear(&out, a, m, w, mode, blocks),
                #[cfg(target_arch = "x86_64")]
                Bf16Kernel::Avx2Fma => avx2::linear(&out, a, m, w, mode, blocks),
                _ => portable(&out, a, m, w, mode, blocks),
            }
        }
    });
}

/// The reference loop over the column blocks `blocks`: the arithmetic every kernel does.
///
/// # Safety
/// `dst` must hold `m × n` floats and `a` `m` rows; no other thread may write those column blocks.
unsafe fn portable(
    dst: &SendPtr<f32>,
    a: &BActs,
    m: usize,
    w: &BDense,
    mode: Mode,
    blocks: std::ops::Range<usize>,
) {
    let (n, k2) = (w.n_out, w.k2);
    let width = k2 * 2;
    for r in 0..m {
        let row = &a.data[r * width..(r + 1) * width];
        for c in blocks.start * LANES..blocks.end * LANES {
            let (cb, l) = (c / LANES, c % LANES);
            let mut acc = 0f32;
            for s in 0..k2 {
                let p = ((cb * k2 + s) * LANES + l) * 2;
                acc += widen(row[2 * s + 1]) * widen(w.packed[p + 1]);
                acc += widen(row[2 * s]) * widen(w.packed[p]);
            }
            let o = dst.0.add(r * n + c);
            match mode {
                Mode::Biased => *o = acc + w.b[c],
                Mode::Accumulate => *o += acc,
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BActs, BDense, Mode, SendPtr, LANES};
    use std::arch::x86_64::*;
    use std::ops::Range;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// Rows per micro-tile; a tile is one 16-column block wide (two 8-lane accumulators per row:
    /// 8 accumulators, 4 widened weight vectors and 2 broadcasts in the 16 ymm registers).
    const MR: usize = 4;

    /// # Safety
    /// The CPU must have AVX2 and FMA; `dst` must hold `m × n` floats, `a` `m` rows; no other
    /// thread may write the column blocks `blocks` of `dst`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn linear(
        dst: &SendPtr<f32>,
        a: &BActs,
        m: usize,
        w: &BDense,
        mode: Mode,
        blocks: Range<usize>,
    ) {
        for cb in blocks {
            let mut r = 0;
            while r < m {
                let mr = MR.min(m - r);
                match mr {
                    1 => tile::<1>(dst.0, a, w, r, cb, mode),
                    2 => tile::<2>(dst.0, a, w, r, cb, mode),
                    3 => tile::<3>(dst.0, a, w, r, cb, mode),
                    _ => tile::<4>(dst.0, a, w, r, cb, mode),
                }
                r += mr;
            }
        }
    }

    /// Rows `r0..r0+R` × the 16 columns of block `cb`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize>(
        dst: *mut f32,
        a: &BActs,
        w: &BDense,
        r0: usize,
        cb: usize,
        mode: Mode,
    ) {
        let (n, k2) = (w.n_out, w.k2);
        let width = k2 * 2;
        let high = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let ap = a.data.as_ptr().add(r0 * width);
        let bp = w.packed.as_ptr().add(cb * k2 * LANES * 2);
        for s in 0..k2 {
            // Columns 0-7 and 8-15 of the block, each 32-bit lane one column's pair (even input
            // in the low half).
            let p = bp.add(s * LANES * 2);
            let raw = [
                _mm256_loadu_si256(p as *const __m256i),
                _mm256_loadu_si256(p.add(LANES) as *const __m256i),
            ];
            let even = raw.map(|v| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v)));
            let odd = raw.map(|v| _mm256_castsi256_ps(_mm256_and_si256(v, high)));
            for (i, acc_i) in acc.iter_mut().enumerate() {
                let pair = (ap.add(i * width + 2 * s) as *const u32).read_unaligned();
                let xe = _mm256_set1_ps(f32::from_bits(pair << 16));
                let xo = _mm256_set1_ps(f32::from_bits(pair & 0xFFFF_0000));
                for h in 0..2 {
                    acc_i[h] = _mm256_fmadd_ps(xo, odd[h], acc_i[h]);
                    acc_i[h] = _mm256_fmadd_ps(xe, even[h], acc_i[h]);
                }
            }
        }
        for (i, acc_i) in acc.iter().enumerate() {
            for (h, v) in acc_i.iter().enumerate() {
                let c0 = cb * LANES + h * 8;
                let out = dst.add((r0 + i) * n + c0);
                let y = match mode {
                    Mode::Biased => _mm256_add_ps(*v, _mm256_loadu_ps(w.b.as_ptr().add(c0))),
                    Mode::Accumulate => _mm256_add_ps(_mm256_loadu_ps(out), *v),
                };
                _mm256_storeu_ps(out, y);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512bf16 {
    use super::{BActs, BDense, Mode, SendPtr, LANES};
    use std::arch::x86_64::*;
    use std::ops::Range;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }

    /// Rows per micro-tile and 16-column blocks per micro-tile (6 × 4 = 24 accumulators, 4
    /// weight vectors and a broadcast in the 32 zmm registers), as the VNNI kernel.
    const MR: usize = 6;
    const NR: usize = 4;

    /// # Safety
    /// The CPU must have AVX-512F and AVX512-BF16; `dst` must hold `m × n` floats, `a` `m` rows;
    /// no other thread may write the column blocks `blocks` of `dst`.
    #[target_feature(enable = "avx512bf16,avx512f")]
    pub unsafe fn linear(
        dst: &SendPtr<f32>,
        a: &BActs,
        m: usize,
        w: &BDense,
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
                macro_rules! shapes {
                    ($(($a:literal, $b:literal)),*) => {
                        match (mr, nr) {
                            $(($a, $b) => tile::<$a, $b>(dst, a, w, r, cb, mode),)*
                            _ => unreachable!("tile shapes are 1..=6 x 1..=4"),
                        }
                    };
                }
                shapes!(
                    (1, 1),
                    (1, 2),
                    (1, 3),
                    (1, 4),
                    (2, 1),
                    (2, 2),
                    (2, 3),
                    (2, 4),
                    (3, 1),
                    (3, 2),
                    (3, 3),
                    (3, 4),
                    (4, 1),
                    (4, 2),
                    (4, 3),
                    (4, 4),
                    (5, 1),
                    (5, 2),
                    (5, 3),
                    (5, 4),
                    (6, 1),
                    (6, 2),
                    (6, 3),
                    (6, 4)
                );
                r += mr;
            }
            cb += nr;
        }
    }

    /// One `R × (16·C)` tile: `R·C` accumulators, `C` weight vectors per pair of inputs, one
    /// broadcast activation pair per row.
    #[target_feature(enable = "avx512bf16,avx512f")]
    unsafe fn tile<const R: usize, const C: usize>(
        dst: *mut f32,
        a: &BActs,
        w: &BDense,
        r0: usize,
        cb0: usize,
        mode: Mode,
    ) {
        let (n, k2) = (w.n_out, w.k2);
        let width = k2 * 2;
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let ap = a.data.as_ptr().add(r0 * width);
        let bp = w.packed.as_ptr().add(cb0 * k2 * LANES * 2);
        for s in 0..k2 {
            let mut b = [_mm512_setzero_si512(); C];
            for (j, bj) in b.iter_mut().enumerate() {
                *bj = _mm512_loadu_si512(bp.add((j * k2 + s) * LANES * 2) as *const _);
            }
            for (i, acc_i) in acc.iter_mut().enumerate() {
                // The row's inputs 2s and 2s+1 in every 32-bit lane.
                let pair = (ap.add(i * width + 2 * s) as *const i32).read_unaligned();
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                for j in 0..C {
                    let bv: __m512bh = std::mem::transmute(b[j]);
                    acc_i[j] = _mm512_dpbf16_ps(acc_i[j], av, bv);
                }
            }
        }
        for (i, acc_i) in acc.iter().enumerate() {
            for (j, v) in acc_i.iter().enumerate() {
                let c0 = (cb0 + j) * LANES;
                let out = dst.add((r0 + i) * n + c0);
                let y = match mode {
                    Mode::Biased => _mm512_add_ps(*v, _mm512_loadu_ps(w.b.as_ptr().add(c0))),
                    Mode::Accumulate => _mm512_add_ps(_mm512_loadu_ps(out), *v),
                };
                _mm512_storeu_ps(out, y);
            }
        }
    }
}

/// `TDPBF16PS` on AMX tiles, 32 rows × 32 columns at a time: C in tmm0 (rows 0-15, block `cb`),
/// tmm1 (rows 0-15, block `cb + 1`), tmm2 and tmm3 (rows 16-31); A in tmm4 and tmm5; B in tmm6 and
/// tmm7, so that each tile loaded is used twice. The sums start from the bias (a row loaded with
/// stride 0) or the output, and the tiles are stored straight into it.
#[cfg(target_arch = "x86_64")]
mod amx_bf16 {
    use super::super::amx::{self, TileConfig, ROWS, ROW_BYTES};
    use super::{BActs, BDense, Mode, SendPtr, LANES};
    use std::ops::Range;

    pub fn available() -> bool {
        amx::bf16_available()
    }

    /// Pairs of inputs per B tile (its 16 rows): 32 inputs per step.
    const PAIRS: usize = ROWS;

    /// What a step needs besides its position.
    struct Layout<'a> {
        dst: *mut f32,
        a: &'a BActs,
        w: &'a BDense,
        mode: Mode,
        /// Bytes between activation rows.
        a_stride: usize,
        /// Bytes between output rows.
        c_stride: usize,
        /// `u16`s per block's panel.
        panel: usize,
    }

    /// # Safety
    /// AMX-BF16 must be available (which requested the tile permission); `dst` must hold `m × n`
    /// floats, `a` `m` rows of `2·k2`; no other thread may write the column blocks `blocks`.
    pub unsafe fn linear(
        dst: &SendPtr<f32>,
        a: &BActs,
        m: usize,
        w: &BDense,
        mode: Mode,
        blocks: Range<usize>,
    ) {
        let k2 = w.k2;
        debug_assert!(k2.is_multiple_of(PAIRS), "rows are padded to whole tiles");
        let l = Layout {
            dst: dst.0,
            a,
            w,
            mode,
            a_stride: k2 * 2 * 2,
            c_stride: w.n_out * 4,
            panel: k2 * LANES * 2,
        };
        let mut shape = (0, 0);
        let mut r = 0;
        while r < m {
            let r0 = ROWS.min(m - r);
            let r1 = ROWS.min(m - r - r0);
            if (r0, r1) != shape {
                TileConfig::two_by_two(r0, r1).load();
                shape = (r0, r1);
            }
            let mut cb = blocks.start;
            while cb < blocks.end {
                let two = cb + 1 < blocks.end;
                match (r1 > 0, two) {
                    (true, true) => step::<true, true>(&l, r, cb),
                    (true, false) => step::<true, false>(&l, r, cb),
                    (false, true) => step::<false, true>(&l, r, cb),
                    (false, false) => step::<false, false>(&l, r, cb),
                }
                cb += 1 + two as usize;
            }
            r += r0 + r1;
        }
        amx::release();
    }

    /// Rows `r..r+16` (and `r+16..r+32` when `LOW`) × block `cb` (and `cb + 1` when `TWO`).
    #[inline(always)]
    unsafe fn step<const LOW: bool, const TWO: bool>(l: &Layout, r: usize, cb: usize) {
        let out =
            |row: usize, block: usize| l.dst.add((r + row) * l.w.n_out + block * LANES) as *mut u8;
        let start = |row: usize, block: usize| match l.mode {
            Mode::Biased => (l.w.b.as_ptr().add(block * LANES) as *const u8, 0),
            Mode::Accumulate => (out(row, block) as *const u8, l.c_stride),
        };
        let (p, s) = start(0, cb);
        amx::load::<0>(p, s);
        if TWO {
            let (p, s) = start(0, cb + 1);
            amx::load::<1>(p, s);
        }
        if LOW {
            let (p, s) = start(ROWS, cb);
            amx::load::<2>(p, s);
            if TWO {
                let (p, s) = start(ROWS, cb + 1);
                amx::load::<3>(p, s);
            }
        }
        let a0 = l.a.data.as_ptr().add(r * l.a_stride / 2) as *const u8;
        let b0 = l.w.packed.as_ptr().add(cb * l.panel) as *const u8;
        for step in 0..l.w.k2 / PAIRS {
            let ap = a0.add(step * ROW_BYTES);
            let bp = b0.add(step * PAIRS * ROW_BYTES);
            amx::load::<4>(ap, l.a_stride);
            amx::load::<6>(bp, ROW_BYTES);
            amx::dp_bf16::<0, 4, 6>();
            if TWO {
                amx::load::<7>(bp.add(l.panel * 2), ROW_BYTES);
                amx::dp_bf16::<1, 4, 7>();
            }
            if LOW {
                amx::load::<5>(ap.add(ROWS * l.a_stride), l.a_stride);
                amx::dp_bf16::<2, 5, 6>();
                if TWO {
                    amx::dp_bf16::<3, 5, 7>();
                }
            }
        }
        amx::store::<0>(out(0, cb), l.c_stride);
        if TWO {
            amx::store::<1>(out(0, cb + 1), l.c_stride);
        }
        if LOW {
            amx::store::<2>(out(ROWS, cb), l.c_stride);
            if TWO {
                amx::store::<3>(out(ROWS, cb + 1), l.c_stride);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `k × n` layer with weights over a few orders of magnitude and both signs.
    fn layer(k: usize, n: usize) -> Dense {
        Dense::row_major(
            (0..k * n)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.2 * (1.0 + (i % 7) as f32))
                .collect(),
            (0..n).map(|i| i as f32 * 0.01 - 0.3).collect(),
            k,
            n,
        )
    }

    fn acts(m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 5) as f32))
            .collect()
    }

    /// Shapes: every tile height of both kernels (1..=13 rows), one to seven 16-column blocks
    /// (every tile width), odd `k` (a padded pair), and MiniLM's widths.
    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 37, 16),
        (7, 64, 48),
        (13, 384, 112),
        (6, 131, 64),
        (5, 1536, 32),
        (29, 384, 1152),
    ];

    /// `kernel` against the f64 sum of the same bf16 products: within `1e-6 · √k · Σ|x·w|`
    /// (f32 summation error); against the f32 layer on unrounded inputs within bf16's rounding
    /// (`2^-8` relative on each factor: `8e-3 · Σ|x·w|`); both modes; 1 and 3 threads.
    fn check_kernel(kernel: Bf16Kernel) {
        for (m, k, n) in SHAPES {
            let d = layer(k, n);
            let w = BDense::convert(&d).unwrap();
            let mut x = acts(m, k);
            let mut a = BActs::default();
            convert_rows(&mut x, m, k, &mut a, 1);
            let mut got = vec![f32::NAN; m * n];
            linear(kernel, &mut got, &a, m, &w, Mode::Biased, 1);
            let mut split = vec![f32::NAN; m * n];
            linear(kernel, &mut split, &a, m, &w, Mode::Biased, 3);
            assert_eq!(
                got, split,
                "{kernel:?} ({m},{k},{n}): the column split changed a result"
            );
            let mut acc = vec![1.5f32; m * n];
            linear(kernel, &mut acc, &a, m, &w, Mode::Accumulate, 3);
            for i in 0..m {
                for j in 0..n {
                    let (mut exact, mut mag, mut f32_ref) = (0f64, 0f64, 0f64);
                    for p in 0..k {
                        let prod = a.at(i, p, k) as f64 * w.at(p, j) as f64;
                        exact += prod;
                        mag += prod.abs();
                        f32_ref += x[i * k + p] as f64 * d.at(p, j) as f64;
                    }
                    let tol = 1e-6 * (k as f64).sqrt() * mag + 1e-6;
                    let g = got[i * n + j] as f64;
                    let bias = d.b[j] as f64;
                    assert!(
                        (g - (exact + bias)).abs() <= tol,
                        "{kernel:?} ({m},{k},{n}) [{i},{j}]: {g} vs {}",
                        exact + bias
                    );
                    assert!(
                        (acc[i * n + j] as f64 - (exact + 1.5)).abs() <= tol + 1e-6,
                        "{kernel:?} ({m},{k},{n}) [{i},{j}] accumulate"
                    );
                    assert!(
                        (g - (f32_ref + bias)).abs() <= 8e-3 * mag + 1e-5,
                        "{kernel:?} ({m},{k},{n}) [{i},{j}]: {g} vs f32 {}",
                        f32_ref + bias
                    );
                }
            }
        }
    }

    /// The kernel's output equals the portable loop's bit for bit.
    fn same_as_portable(kernel: Bf16Kernel) {
        for (m, k, n) in SHAPES {
            let w = BDense::convert(&layer(k, n)).unwrap();
            let mut x = acts(m, k);
            let mut a = BActs::default();
            convert_rows(&mut x, m, k, &mut a, 2);
            for mode in [Mode::Biased, Mode::Accumulate] {
                let (mut fast, mut slow) = (vec![0.25f32; m * n], vec![0.25f32; m * n]);
                linear(kernel, &mut fast, &a, m, &w, mode, 2);
                linear(Bf16Kernel::Portable, &mut slow, &a, m, &w, mode, 1);
                assert_eq!(fast, slow, "{kernel:?} vs portable ({m},{k},{n}) {mode:?}");
            }
        }
    }

    #[test]
    fn portable_kernel_matches_the_f64_reference() {
        check_kernel(Bf16Kernel::Portable);
    }

    #[test]
    fn avx2_kernel_matches_the_reference_and_the_portable_loop_exactly() {
        if !Bf16Kernel::Avx2Fma.available() {
            eprintln!("SKIPPED: CPU lacks AVX2/FMA; the avx2-fma bf16 kernel is not used here");
            return;
        }
        check_kernel(Bf16Kernel::Avx2Fma);
        same_as_portable(Bf16Kernel::Avx2Fma);
    }

    /// Runs only on a CPU with AVX512-BF16 (Cooper Lake, Sapphire Rapids, Zen 4 and later).
    #[test]
    fn avx512_bf16_kernel_matches_the_reference() {
        if !Bf16Kernel::Avx512Bf16.available() {
            eprintln!("SKIPPED: CPU lacks avx512_bf16; the vdpbf16ps kernel was not run");
            return;
        }
        check_kernel(Bf16Kernel::Avx512Bf16);
        // Intel defines `vdpbf16ps` as two roundings in the portable loop's order (subnormals
        // flushed, which these values never produce), so the bits should agree; the assertion
        // above is the tolerance, this prints how far the hardware actually is.
        let (m, k, n) = (13, 384, 112);
        let w = BDense::convert(&layer(k, n)).unwrap();
        let mut a = BActs::default();
        convert_rows(&mut acts(m, k), m, k, &mut a, 1);
        let (mut fast, mut slow) = (vec![0f32; m * n], vec![0f32; m * n]);
        linear(
            Bf16Kernel::Avx512Bf16,
            &mut fast,
            &a,
            m,
            &w,
            Mode::Biased,
            1,
        );
        linear(Bf16Kernel::Portable, &mut slow, &a, m, &w, Mode::Biased, 1);
        let differ = fast.iter().zip(&slow).filter(|(f, s)| f != s).count();
        let worst = fast
            .iter()
            .zip(&slow)
            .fold(0f32, |w, (f, s)| w.max((f - s).abs()));
        eprintln!(
            "avx512-bf16 vs portable: {differ}/{} outputs differ, by at most {worst:e}",
            m * n
        );
    }

    /// Runs only on a CPU with AMX-BF16 (Sapphire Rapids and later) where Linux grants the tiles.
    #[test]
    fn amx_bf16_kernel_matches_the_reference() {
        if !Bf16Kernel::Amx.available() {
            eprintln!("SKIPPED: no AMX-BF16 on this CPU (or Linux refused the tiles); the AMX kernel was not run");
            return;
        }
        check_kernel(Bf16Kernel::Amx);
        // Row counts around the 16- and 32-row tiles, an odd number of column blocks.
        for m in [15, 16, 17, 31, 32, 33, 48, 70] {
            let (k, n) = (96, 48);
            let w = BDense::convert(&layer(k, n)).unwrap();
            let mut a = BActs::default();
            convert_rows(&mut acts(m, k), m, k, &mut a, 1);
            for mode in [Mode::Biased, Mode::Accumulate] {
                let (mut fast, mut slow) = (vec![0.25f32; m * n], vec![0.25f32; m * n]);
                linear(Bf16Kernel::Amx, &mut fast, &a, m, &w, mode, 2);
                linear(Bf16Kernel::Portable, &mut slow, &a, m, &w, mode, 1);
                let worst = fast.iter().zip(&slow).fold(0f32, |acc, (f, s)| {
                    acc.max((f - s).abs() / s.abs().max(1.0))
                });
                assert!(
                    worst < 1e-5,
                    "amx vs portable, {m} rows {mode:?}: {worst:e}"
                );
            }
        }
    }

    #[test]
    fn detect_picks_a_kernel_this_cpu_runs() {
        let k = Bf16Kernel::detect();
        assert!(k.available());
        eprintln!("bf16 kernel on this CPU: {k:?}");
    }

    #[test]
    fn rounding_equals_half_and_conversion_is_fused_and_split_safely() {
        let mut special = vec![
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-40,
            -1e-40,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7F80_0001),
            f32::from_bits(0x3F80_8000), // a tie, rounds to even (down)
            f32::from_bits(0x3F81_8000), // a tie, rounds to even (up)
            f32::from_bits(0x3F80_8001),
            f32::from_bits(0x3F80_7FFF),
        ];
        let mut seed = 0x1234_5678u32;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            special.push(f32::from_bits(seed));
        }
        for &v in &special {
            assert_eq!(
                to_bf16(v),
                half::bf16::from_f32(v).to_bits(),
                "{v:e} ({:#x})",
                v.to_bits()
            );
        }
        // A pass fused with the rounding equals the pass, then the rounding; any row split.
        let (m, k) = (37, 1001);
        let x = acts(m, k);
        let pass = |row: &mut [f32]| row.iter_mut().for_each(|v| *v = *v * 2.0 - 0.5);
        let mut want = x.clone();
        want.chunks_exact_mut(k).for_each(pass);
        for threads in [1, 3] {
            let mut y = x.clone();
            let mut a = BActs::default();
            convert_rows_with(&mut y, m, k, &mut a, &pass, threads);
            assert_eq!(y, want);
            for i in 0..m {
                for c in 0..k {
                    assert_eq!(a.at(i, c, k), widen(to_bf16(want[i * k + c])));
                }
                assert!(
                    a.data[i * padded(k) + k..(i + 1) * padded(k)]
                        .iter()
                        .all(|&v| v == 0),
                    "padding"
                );
            }
        }
        assert!(BDense::convert(&layer(8, 20)).is_none(), "20 columns");
    }
}
