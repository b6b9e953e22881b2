//! What a GEMM of the fast path does with its destination, shared by every kernel (f32 packed and
//! `gemm` crate, int8, bf16). Its own module so that the kernel modules need not import each other.

/// What the GEMM does with the destination.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// `dst = x · W + b`.
    Biased,
    /// `dst += x · W` (the residual stays in `dst`; the bias is added by the following pass).
    Accumulate,
}
