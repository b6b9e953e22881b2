//! Which kernel runs an encoder's linear layers, as reported to users (`GET /v1/models`,
//! `nlpd models info`, `nlpd profile`): the precision and the instruction set actually used.

use super::fast::{bf16::Bf16Kernel, int8, packed};
use crate::model::Quantize;

/// The kernel running an encoder's linear layers (the four per layer: QKV, attention output,
/// feed-forward up and down), chosen at load from the precision and the CPU's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// candle's graph (f32; the reference implementation, any architecture or device).
    Candle,
    /// f32, weights packed at load into panels for nlpd's AVX-512F register-tiled GEMM.
    F32Avx512,
    /// f32 through the `gemm` crate, which dispatches on the CPU itself (AVX-512, AVX2+FMA or
    /// scalar); the fast path's f32 GEMM on CPUs without AVX-512 (or `NLPD_F32_KERNEL=gemm`).
    F32Gemm,
    /// u8 × int8 tiles summed in i32 by AMX-INT8 (`tdpbusd`, Sapphire Rapids and later).
    Int8Amx,
    /// int8 × u8 products summed in i32 by AVX-512 VNNI (`vpdpbusd`).
    Int8Vnni,
    /// int8 on a CPU without VNNI: the scalar loop, same results, many times slower.
    Int8Portable,
    /// bf16 tiles multiplied and summed into f32 by AMX-BF16 (`tdpbf16ps`, Sapphire Rapids and
    /// later).
    Bf16Amx,
    /// bf16 pairs multiplied and summed into f32 by AVX512-BF16 (`vdpbf16ps`).
    Bf16Avx512,
    /// bf16 widened to f32 by a 16-bit shift, f32 FMAs (AVX2 + FMA): correct everywhere, but no
    /// faster than f32.
    Bf16Avx2,
    /// bf16 on a CPU with neither AVX512-BF16 nor AVX2: the scalar loop.
    Bf16Portable,
}

impl Kernel {
    /// The kernel the fast CPU encoder runs at `precision` on this CPU.
    pub fn fast(precision: Quantize) -> Kernel {
        match precision {
            Quantize::None if packed::enabled() => Kernel::F32Avx512,
            Quantize::None => Kernel::F32Gemm,
            Quantize::Int8 if int8::has_amx() => Kernel::Int8Amx,
            Quantize::Int8 if int8::has_vnni() => Kernel::Int8Vnni,
            Quantize::Int8 => Kernel::Int8Portable,
            Quantize::Bf16 => Bf16Kernel::detect().into(),
        }
    }

    /// The precision of the linear layers' weights and inputs.
    pub fn precision(self) -> Quantize {
        match self {
            Kernel::Candle | Kernel::F32Avx512 | Kernel::F32Gemm => Quantize::None,
            Kernel::Int8Amx | Kernel::Int8Vnni | Kernel::Int8Portable => Quantize::Int8,
            Kernel::Bf16Amx | Kernel::Bf16Avx512 | Kernel::Bf16Avx2 | Kernel::Bf16Portable => {
                Quantize::Bf16
            }
        }
    }

    /// Whether this is a slow fallback (a portable loop, or bf16 without AVX512-BF16), worth a
    /// warning at load.
    pub fn is_fallback(self) -> bool {
        matches!(
            self,
            Kernel::Int8Portable | Kernel::Bf16Avx2 | Kernel::Bf16Portable
        )
    }

    /// The name users see, e.g. `avx512-bf16`, `avx2-fma (bf16 widened)`, `avx512-vnni`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kernel::Candle => "candle",
            Kernel::F32Avx512 => "avx512-f32 (packed)",
            Kernel::F32Gemm => {
                #[cfg(target_arch = "x86_64")]
                {
                    if is_x86_feature_detected!("avx512f") {
                        return "gemm crate (avx-512)";
                    }
                    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                        return "gemm crate (avx2-fma)";
                    }
                }
                "gemm crate"
            }
            Kernel::Int8Amx => "amx-int8",
            Kernel::Int8Vnni => "avx512-vnni",
            Kernel::Int8Portable => "portable int8 (no VNNI)",
            Kernel::Bf16Amx => "amx-bf16",
            Kernel::Bf16Avx512 => "avx512-bf16",
            Kernel::Bf16Avx2 => "avx2-fma (bf16 widened)",
            Kernel::Bf16Portable => "portable bf16 (scalar)",
        }
    }
}

impl From<Bf16Kernel> for Kernel {
    fn from(k: Bf16Kernel) -> Kernel {
        match k {
            Bf16Kernel::Amx => Kernel::Bf16Amx,
            Bf16Kernel::Avx512Bf16 => Kernel::Bf16Avx512,
            Bf16Kernel::Avx2Fma => Kernel::Bf16Avx2,
            Bf16Kernel::Portable => Kernel::Bf16Portable,
        }
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_precision_has_a_kernel_of_that_precision() {
        for q in [Quantize::None, Quantize::Int8, Quantize::Bf16] {
            let k = Kernel::fast(q);
            assert_eq!(k.precision(), q, "{k}");
            eprintln!("{}: {k}", q.precision());
        }
        assert_eq!(Kernel::Candle.precision(), Quantize::None);
    }
}
