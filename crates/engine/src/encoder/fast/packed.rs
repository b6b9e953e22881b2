//! f32 linear layers with weights packed once at load into 16-column panels, multiplied by an
//! AVX-512 register-tiled kernel.
//!
//! The `gemm` crate packs the weight matrix again on every call: at batch 1 that is more memory
//! traffic than arithmetic (a 28-token sentence re-reads and rewrites 42 MB of MiniLM weights).
//! Packed at load, a layer's weights are read straight from their panels: `[out/16][in][16]`, so
//! one 512-bit load brings 16 output columns of one input row, and a tile of `R` rows ×
//! `16·C` columns keeps its `R·C` accumulators in registers while it walks `k`.
//!
//! Loops, outermost first: `k` in blocks of [`KC`] (a block of the packed panels stays in L2),
//! rows in blocks of [`MC`] (their slice of `x` stays in L2), column tiles, row tiles. Columns can
//! be split over threads ([`linear`]'s `threads`): each thread owns whole 16-column blocks, so
//! the split changes no result.

use super::mode::Mode;

/// Output columns per panel (one 512-bit register of f32).
pub const LANES: usize = 16;
/// Input rows per `k` block.
const KC: usize = 512;
/// Rows of `x` per row block.
const MC: usize = 192;

/// Whether this CPU runs the packed kernel (AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx512::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether layers are packed for this kernel at load: the CPU has AVX-512F and the diagnostic
/// switch `NLPD_F32_KERNEL=gemm` (the `gemm` crate on row-major weights, for comparisons) is unset.
pub fn enabled() -> bool {
    available() && std::env::var("NLPD_F32_KERNEL").map_or(true, |v| v != "gemm")
}

/// Packs a row-major `[k, n]` matrix into `[n/16][k][16]` panels (`n` a multiple of 16).
pub fn pack(w: &[f32], k: usize, n: usize) -> Vec<f32> {
    debug_assert!(n.is_multiple_of(LANES) && w.len() == k * n);
    let mut panels = vec![0f32; k * n];
    for cb in 0..n / LANES {
        for r in 0..k {
            let src = &w[r * n + cb * LANES..r * n + (cb + 1) * LANES];
            panels[(cb * k + r) * LANES..(cb * k + r + 1) * LANES].copy_from_slice(src);
        }
    }
    panels
}

/// Index of element `(r, c)` of a `k`-row packed matrix.
#[inline]
pub fn index(r: usize, c: usize, k: usize) -> usize {
    ((c / LANES) * k + r) * LANES + c % LANES
}

/// `dst[m × n] (=|+=) x[m × k] · W` (`+ bias` when `Biased`) with `W` packed by [`pack`], its
/// columns split over `threads` rayon tasks. Requires [`available`].
#[allow(clippy::too_many_arguments)]
pub fn linear(
    dst: &mut [f32],
    x: &[f32],
    m: usize,
    panels: &[f32],
    bias: &[f32],
    k: usize,
    mode: Mode,
    threads: usize,
) {
    let n = bias.len();
    assert!(available(), "the packed f32 kernel needs AVX-512F");
    assert!(n.is_multiple_of(LANES) && panels.len() == k * n);
    assert!(x.len() >= m * k && dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let job = Job {
        dst: dst.as_mut_ptr(),
        x: x.as_ptr(),
        panels: panels.as_ptr(),
        bias: bias.as_ptr(),
        m,
        k,
        n,
        mode,
    };
    for_column_blocks(n / LANES, threads, |blocks| {
        // SAFETY: sizes were checked above; each call writes only its own column blocks of `dst`.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            avx512::run(&job, blocks)
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = blocks;
    });
}

/// Runs `f` over contiguous ranges of `blocks` column blocks, one range per thread (on the
/// current rayon pool), or once over all of them when `threads <= 1`.
pub fn for_column_blocks(blocks: usize, threads: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
    let parts = threads.min(blocks).max(1);
    if parts == 1 {
        f(0..blocks);
        return;
    }
    let f = &f;
    rayon::scope(|s| {
        for p in 1..parts {
            s.spawn(move |_| f(blocks * p / parts..blocks * (p + 1) / parts));
        }
        f(0..blocks / parts);
    });
}

/// One call's operands as raw pointers, shared by the threads that split its columns.
struct Job {
    dst: *mut f32,
    x: *const f32,
    panels: *const f32,
    bias: *const f32,
    m: usize,
    k: usize,
    n: usize,
    mode: Mode,
}

// SAFETY: the threads sharing a `Job` read `x`, `panels` and `bias` and write disjoint column
// blocks of `dst`; the caller's borrows outlive the scope that runs them.
unsafe impl Sync for Job {}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Job, Mode, KC, LANES, MC};
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// Whether the CPU has AVX-512F (the packed kernel's only requirement).
    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// Rows per micro-tile and 16-column blocks per micro-tile (6 × 4 = 24 accumulators).
    const MR: usize = 6;
    const NR: usize = 4;

    /// Where a tile's accumulators start: the bias (first `k` block of a `Biased` call) or `dst`.
    #[derive(Clone, Copy)]
    enum Init {
        Bias,
        Dst,
    }

    /// # Safety
    /// AVX-512F must be available; `job`'s pointers must cover `m × k`, `k × n`, `n` and `m × n`
    /// floats; no other thread writes the column blocks `blocks` of `dst`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn run(job: &Job, blocks: Range<usize>) {
        let mut k0 = 0;
        let kblocks = job.k.div_ceil(KC).max(1);
        // Even k blocks (1536 → 3 × 512, 384 → 1 × 384).
        for kb in 0..kblocks {
            let k1 = job.k * (kb + 1) / kblocks;
            let init = if kb == 0 && job.mode == Mode::Biased {
                Init::Bias
            } else {
                Init::Dst
            };
            let mut r0 = 0;
            while r0 < job.m {
                let r1 = (r0 + MC).min(job.m);
                let mut cb = blocks.start;
                while cb < blocks.end {
                    let nr = NR.min(blocks.end - cb);
                    let mut r = r0;
                    while r < r1 {
                        let mr = MR.min(r1 - r);
                        tile_dispatch(job, mr, nr, r, cb, k0, k1, init);
                        r += mr;
                    }
                    cb += nr;
                }
                r0 = r1;
            }
            k0 = k1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn tile_dispatch(
        job: &Job,
        mr: usize,
        nr: usize,
        r: usize,
        cb: usize,
        k0: usize,
        k1: usize,
        init: Init,
    ) {
        macro_rules! shapes {
            ($(($a:literal, $b:literal)),*) => {
                match (mr, nr) {
                    $(($a, $b) => tile::<$a, $b>(job, r, cb, k0, k1, init),)*
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
        )
    }

    /// One `R × 16·C` tile over `k0..k1`: accumulators start at the bias or at `dst`, and end in `dst`.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const C: usize>(
        job: &Job,
        r0: usize,
        cb0: usize,
        k0: usize,
        k1: usize,
        init: Init,
    ) {
        let (k, n) = (job.k, job.n);
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        for (i, acc_i) in acc.iter_mut().enumerate() {
            for (j, a) in acc_i.iter_mut().enumerate() {
                let c0 = (cb0 + j) * LANES;
                *a = match init {
                    Init::Bias => _mm512_loadu_ps(job.bias.add(c0)),
                    Init::Dst => _mm512_loadu_ps(job.dst.add((r0 + i) * n + c0)),
                };
            }
        }
        let xp = job.x.add(r0 * k);
        let bp = job.panels.add(cb0 * k * LANES);
        for s in k0..k1 {
            let mut b = [_mm512_setzero_ps(); C];
            for (j, bj) in b.iter_mut().enumerate() {
                *bj = _mm512_loadu_ps(bp.add((j * k + s) * LANES));
            }
            for (i, acc_i) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*xp.add(i * k + s));
                for j in 0..C {
                    acc_i[j] = _mm512_fmadd_ps(av, b[j], acc_i[j]);
                }
            }
        }
        for (i, acc_i) in acc.iter().enumerate() {
            for (j, a) in acc_i.iter().enumerate() {
                _mm512_storeu_ps(job.dst.add((r0 + i) * n + (cb0 + j) * LANES), *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_kernel_matches_a_naive_product_for_every_tile_shape_and_split() {
        if !available() {
            eprintln!("SKIP: no AVX-512F on this CPU; the packed f32 kernel is not used here");
            return;
        }
        // Rows 1..=13 cover every tile height; 16·7 columns every tile width; k = 1100 three k blocks.
        for (m, k, n) in [(1, 5, 16), (13, 37, 112), (7, 1100, 48), (200, 64, 64)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.37).sin()).collect();
            let w: Vec<f32> = (0..k * n).map(|i| ((i as f32) * 0.11).cos()).collect();
            let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
            let panels = pack(&w, k, n);
            assert_eq!(panels[index(3.min(k - 1), 17.min(n - 1), k)], {
                let (r, c) = (3.min(k - 1), 17.min(n - 1));
                w[r * n + c]
            });
            for threads in [1, 2, 3] {
                let mut y = vec![f32::NAN; m * n];
                linear(&mut y, &x, m, &panels, &b, k, Mode::Biased, threads);
                let mut acc = vec![1.0f32; m * n];
                linear(&mut acc, &x, m, &panels, &b, k, Mode::Accumulate, threads);
                for i in 0..m {
                    for j in 0..n {
                        let s: f64 = (0..k)
                            .map(|p| x[i * k + p] as f64 * w[p * n + j] as f64)
                            .sum();
                        let tol = 1e-4 * (k as f64).sqrt();
                        let got = y[i * n + j] as f64;
                        assert!(
                            (got - (s + b[j] as f64)).abs() < tol,
                            "({m},{k},{n}) t{threads} [{i},{j}]: {got} vs {}",
                            s + b[j] as f64
                        );
                        assert!((acc[i * n + j] as f64 - (s + 1.0)).abs() < tol);
                    }
                }
            }
        }
    }

    #[test]
    fn column_split_covers_every_block_once() {
        for (blocks, threads) in [(1, 2), (6, 2), (7, 3), (24, 2), (3, 8)] {
            let seen = std::sync::Mutex::new(vec![0u32; blocks]);
            for_column_blocks(blocks, threads, |r| {
                let mut s = seen.lock().unwrap();
                for b in r {
                    s[b] += 1;
                }
            });
            assert!(seen.into_inner().unwrap().iter().all(|&c| c == 1));
        }
    }
}
