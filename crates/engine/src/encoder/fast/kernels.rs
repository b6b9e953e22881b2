//! The fast path's numeric kernels: GEMM through the `gemm` crate (runtime CPU dispatch, AVX-512
//! where the CPU has it) and single-pass element-wise work written so that LLVM vectorizes it
//! (fixed-width accumulators, branch-free polynomial `exp` and `erf`).

/// What the GEMM does with the destination (defined in [`super::mode`], re-exported for the
/// callers of [`linear`]).
pub use super::mode::Mode;
use super::packed;
use gemm::Parallelism;

/// A dense layer for `y = x · W + b`: `W` row-major `[in, out]`, or packed once at load into the
/// panels of the AVX-512 kernel ([`super::packed`]) when the CPU has it and `out` is a multiple
/// of 16 (the row-major copy is then dropped).
pub struct Dense {
    /// `[in, out]` row-major; empty when packed (or when only the bias is kept).
    w: Vec<f32>,
    /// `[out/16][in][16]`; empty when not packed.
    panels: Vec<f32>,
    pub b: Vec<f32>,
    pub n_in: usize,
    pub n_out: usize,
}

impl Dense {
    /// A layer from `[in, out]` row-major weights, packed for the AVX-512 kernel where it runs.
    pub fn new(w: Vec<f32>, b: Vec<f32>, n_in: usize, n_out: usize) -> Dense {
        let mut d = Dense::row_major(w, b, n_in, n_out);
        if packed::enabled() && n_out.is_multiple_of(packed::LANES) && n_in > 0 {
            d.panels = packed::pack(&d.w, n_in, n_out);
            d.w = Vec::new();
        }
        d
    }

    /// A layer kept row-major (multiplied by the `gemm` crate).
    pub fn row_major(w: Vec<f32>, b: Vec<f32>, n_in: usize, n_out: usize) -> Dense {
        assert_eq!(w.len(), n_in * n_out, "weights of a {n_in}×{n_out} layer");
        assert_eq!(b.len(), n_out, "bias of a {n_in}×{n_out} layer");
        Dense {
            w,
            panels: Vec::new(),
            b,
            n_in,
            n_out,
        }
    }

    /// Weight `(input r, output c)`, whatever the layout.
    pub fn at(&self, r: usize, c: usize) -> f32 {
        if self.panels.is_empty() {
            self.w[r * self.n_out + c]
        } else {
            self.panels[packed::index(r, c, self.n_in)]
        }
    }

    /// Frees the weights and keeps the bias (an int8 copy replaces them).
    pub fn drop_weights(&mut self) {
        self.w = Vec::new();
        self.panels = Vec::new();
    }

    /// Whether the AVX-512 kernel multiplies this layer.
    pub fn is_packed(&self) -> bool {
        !self.panels.is_empty()
    }
}

/// Threads a `Parallelism` asks for (`Rayon(0)`: the whole current pool).
pub fn threads_of(par: Parallelism) -> usize {
    match par {
        Parallelism::None => 1,
        Parallelism::Rayon(0) => rayon::current_num_threads().max(1),
        Parallelism::Rayon(n) => n,
    }
}

/// `dst[m × out] (=|+=) x[m × in] · W`, row-major throughout.
pub fn linear(dst: &mut [f32], x: &[f32], m: usize, d: &Dense, mode: Mode, par: Parallelism) {
    let (k, n) = (d.n_in, d.n_out);
    debug_assert!(x.len() >= m * k && dst.len() >= m * n);
    if m == 0 {
        return;
    }
    if d.is_packed() {
        packed::linear(dst, x, m, &d.panels, &d.b, k, mode, threads_of(par));
        return;
    }
    assert_eq!(d.w.len(), k * n, "a layer whose weights were dropped");
    if mode == Mode::Biased {
        for row in dst[..m * n].chunks_exact_mut(n) {
            row.copy_from_slice(&d.b);
        }
    }
    // SAFETY: the slices hold at least m×k, k×n and m×n elements (checked above in debug builds,
    // guaranteed by the callers' workspace sizing), strides describe dense row-major matrices and
    // `dst` does not alias `x` or `W` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            d.w.as_ptr(),
            1,
            n as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    }
}

/// `row = LayerNorm(row + bias)` in place: the residual's bias and the normalization in one pass.
#[inline(always)]
pub fn add_bias_layer_norm(row: &mut [f32], bias: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    for (x, b) in row.iter_mut().zip(bias) {
        *x += b;
    }
    layer_norm(row, gamma, beta, eps);
}

/// LayerNorm of one row in place (two-pass variance, as PyTorch).
#[inline(always)]
pub fn layer_norm(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let mut acc = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            let d = c[i] - mean;
            acc[i] += d * d;
        }
    }
    let mut var = acc.iter().sum::<f32>();
    for &x in tail {
        var += (x - mean) * (x - mean);
    }
    let inv = 1.0 / (var / n + eps).sqrt();
    for ((x, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *x = (*x - mean) * inv * g + b;
    }
}

/// Sum with 32 independent accumulators (four 8-lane registers, so the adds do not wait on each
/// other; vectorizes; order differs from a serial sum).
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    let chunks = x.chunks_exact(32);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..32 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// Dot product with 16 independent accumulators (vectorizes; order differs from a serial sum).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += a · x`.
#[inline(always)]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Softmax of one row in place.
#[inline(always)]
pub fn softmax(row: &mut [f32]) {
    // Eight running maxima (compare-and-select, which vectorizes; `f32::max` does not).
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let max = acc
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / sum(row);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// `e^x` for f32 without a libm call: `2^n · p(r)` with `r` in `[-ln2/2, ln2/2]` and a degree-6
/// polynomial (relative error about 2e-7 over the whole range). Branch-free, so loops over it vectorize.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 · 2^23: adding it rounds to the nearest integer and leaves that integer in the low bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor coefficients of e^r up to r^6.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let bits = (shifted.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let scale = f32::from_bits(((bits + 127) << 23) as u32);
    p * scale
}

/// `erf(x)` after Abramowitz & Stegun 7.1.26 (1.5e-7 in exact arithmetic; below 5e-7 absolute
/// in f32, checked by the test below), with [`exp`].
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// Exact (erf) GELU in place: `0.5 · x · (1 + erf(x / √2))`.
#[inline(always)]
pub fn gelu_erf(x: &mut [f32]) {
    const INV_SQRT2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * INV_SQRT2));
    }
}

/// `2u = GELU_C2 · x + GELU_C3 · x³`: twice the tanh GELU's argument `√(2/π) (x + 0.044715 x³)`.
const GELU_C2: f32 = 2.0 * 0.797_884_6;
const GELU_C3: f32 = 2.0 * 0.797_884_6 * 0.044_715;

/// tanh-approximated GELU in place (`gelu_new`): `0.5 · x · (1 + tanh(u))` with
/// `u = √(2/π) (x + 0.044715 x³)`, computed as `x / (1 + e^{-2u})` (the same function: one
/// exponential and one division). Within 4.8e-4 of the exact (erf) GELU everywhere.
#[inline(always)]
pub fn gelu_tanh(x: &mut [f32]) {
    for v in x.iter_mut() {
        let x2 = *v * *v;
        let two_u = *v * (GELU_C2 + GELU_C3 * x2);
        *v /= 1.0 + exp(-two_u);
    }
}

/// [`gelu_tanh`] with a reciprocal estimate instead of the division (relative error below 1e-4,
/// for rows that are quantized to int8 next), in AVX-512 registers where the CPU has them.
#[inline(always)]
pub fn gelu_tanh_rcp(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F (checked just above).
        unsafe { avx512::gelu_tanh_rcp(x) };
        return;
    }
    gelu_tanh(x)
}

/// Element-wise kernels written with AVX-512 intrinsics, where LLVM would not pick the
/// instructions itself (masked tails, reciprocal estimates).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// Whether the CPU has AVX-512F (every AVX-512 kernel of the fast path needs it).
    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// The mask of the first `n` of 16 lanes (all of them from 16 up).
    #[inline(always)]
    pub fn first_lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            (1u16 << n) - 1
        }
    }

    /// [`super::exp`] on 16 lanes (the same constants, with FMAs).
    #[inline(always)]
    pub unsafe fn exp(x: __m512) -> __m512 {
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.3)),
            _mm512_set1_ps(88.3),
        );
        let magic = _mm512_set1_ps(12_582_912.0);
        let shifted = _mm512_fmadd_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E), magic);
        let n = _mm512_sub_ps(shifted, magic);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_castps_si512(magic));
        let scale = _mm512_slli_epi32::<23>(_mm512_add_epi32(bits, _mm512_set1_epi32(127)));
        _mm512_mul_ps(p, _mm512_castsi512_ps(scale))
    }

    /// See [`super::gelu_tanh_rcp`]. # Safety: the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_tanh_rcp(x: &mut [f32]) {
        let (c2, c3) = (
            _mm512_set1_ps(super::GELU_C2),
            _mm512_set1_ps(super::GELU_C3),
        );
        let one = _mm512_set1_ps(1.0);
        let p = x.as_mut_ptr();
        let mut i = 0;
        while i < x.len() {
            let m = first_lanes(x.len() - i);
            let v = _mm512_maskz_loadu_ps(m, p.add(i));
            let two_u = _mm512_mul_ps(v, _mm512_fmadd_ps(_mm512_mul_ps(v, v), c3, c2));
            let d = _mm512_add_ps(one, exp(_mm512_sub_ps(_mm512_setzero_ps(), two_u)));
            // rcp14: relative error below 2^-14; one Newton step would make it exact to f32.
            _mm512_mask_storeu_ps(p.add(i), m, _mm512_mul_ps(v, _mm512_rcp14_ps(d)));
            i += 16;
        }
    }
}

#[inline(always)]
pub fn relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by Simpson's rule on 2/√π ∫ e^{-t²} (error far below 1e-10 with this step).
    fn erf_ref(x: f64) -> f64 {
        let n = 20_000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_is_accurate_over_the_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.013;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(-200.0), exp(-87.3));
        assert!(exp(0.0) == 1.0);
    }

    #[test]
    fn erf_is_accurate() {
        let mut worst = 0f64;
        let mut x = -6.0f32;
        while x < 6.0 {
            let want = erf_ref(x as f64);
            worst = worst.max((erf(x) as f64 - want).abs());
            x += 0.01;
        }
        assert!(worst < 6e-7, "worst absolute error {worst}");
    }

    #[test]
    fn gelu_forms_match_their_definitions() {
        let xs: Vec<f32> = (-1200..1200).map(|i| i as f32 * 0.01).collect();
        let (mut e, mut t) = (xs.clone(), xs.clone());
        gelu_erf(&mut e);
        gelu_tanh(&mut t);
        for ((&x, &e), &t) in xs.iter().zip(&e).zip(&t) {
            let x = x as f64;
            let exact = 0.5 * x * (1.0 + erf_ref(x / std::f64::consts::SQRT_2));
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            let tanh_form = 0.5 * x * (1.0 + u.tanh());
            assert!((e as f64 - exact).abs() < 1e-6, "erf GELU at {x}");
            assert!((t as f64 - tanh_form).abs() < 2e-6, "tanh GELU at {x}");
            assert!((t as f64 - exact).abs() < 4.8e-4, "tanh vs erf GELU at {x}");
        }
        let mut r = xs.clone();
        gelu_tanh_rcp(&mut r);
        for (&a, &b) in r.iter().zip(&t) {
            assert!((a - b).abs() <= 1e-4 * b.abs() + 1e-7, "{a} vs {b}");
        }
        let mut big = [-200.0f32, 200.0];
        gelu_tanh(&mut big);
        assert!(big[0].abs() < 1e-30 && big[1] == 200.0, "{big:?}");
    }

    #[test]
    fn softmax_and_layer_norm_match_definitions() {
        let mut row = vec![1.0f32, 2.0, 3.0, -1.0, 0.5, 7.0, 2.5, 0.0, 1.5];
        let want: Vec<f64> = {
            let m = 7.0f64;
            let e: Vec<f64> = row.iter().map(|&x| (x as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|x| x / s).collect()
        };
        softmax(&mut row);
        for (g, w) in row.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-6);
        }
        let mut x: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let orig = x.clone();
        let gamma: Vec<f32> = (0..19).map(|i| 1.0 + i as f32 * 0.01).collect();
        let beta: Vec<f32> = (0..19).map(|i| i as f32 * -0.02).collect();
        layer_norm(&mut x, &gamma, &beta, 1e-12);
        let mean = orig.iter().map(|&v| v as f64).sum::<f64>() / 19.0;
        let var = orig.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 19.0;
        for i in 0..19 {
            let want = (orig[i] as f64 - mean) / var.sqrt() * gamma[i] as f64 + beta[i] as f64;
            assert!((x[i] as f64 - want).abs() < 1e-5, "{i}: {} vs {want}", x[i]);
        }
    }

    #[test]
    fn linear_matches_a_naive_product() {
        let (m, k, n) = (5, 7, 3);
        let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.3).cos()).collect();
        let d = Dense::row_major(
            (0..k * n).map(|i| (i as f32 * 0.7).sin()).collect(),
            vec![0.5, -1.0, 2.0],
            k,
            n,
        );
        let mut y = vec![9.0f32; m * n];
        linear(&mut y, &x, m, &d, Mode::Biased, Parallelism::None);
        let mut acc = vec![1.0f32; m * n];
        linear(&mut acc, &x, m, &d, Mode::Accumulate, Parallelism::None);
        for i in 0..m {
            for j in 0..n {
                let s: f32 = (0..k).map(|p| x[i * k + p] * d.at(p, j)).sum();
                assert!((y[i * n + j] - (s + d.b[j])).abs() < 1e-5);
                assert!((acc[i * n + j] - (s + 1.0)).abs() < 1e-5);
            }
        }
    }
}
