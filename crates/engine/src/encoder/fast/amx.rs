//! Intel AMX (Advanced Matrix Extensions, Sapphire Rapids and later): eight tile registers of up
//! to 16 rows × 64 bytes and a matrix unit that multiplies them (`TDPBF16PS`: bf16 pairs into f32,
//! `TDPBUSD`: u8 × i8 quads into i32). This module holds what every AMX kernel needs: detection,
//! the Linux permission, the tile configuration and the instructions themselves.
//!
//! The instructions are written with `asm!`: Rust's AMX intrinsics and target features are not
//! stable. The tile registers are not allocatable, so the compiler never touches them between two
//! `asm!` blocks; a kernel loads its configuration, works, and releases the tiles before it returns
//! (a thread holding tile state makes every context switch save 8 KiB more).
//!
//! Linux hands the tile data state to a process only after `arch_prctl(ARCH_REQ_XCOMP_PERM,
//! XFEATURE_XTILEDATA)`; the first tile instruction without it kills the process with SIGILL.
//! [`available`] asks once per process (the permission covers every thread) and answers false when
//! the kernel refuses, so such a machine falls back to the AVX-512 kernels.

use std::arch::asm;
use std::sync::OnceLock;

/// Bytes per tile row, the most a tile holds (16 × 64 bytes).
pub const ROW_BYTES: usize = 64;
/// Rows per tile.
pub const ROWS: usize = 16;

/// What the CPU's matrix unit supports, once the process may use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Support {
    bf16: bool,
    int8: bool,
}

fn support() -> Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    *SUPPORT.get_or_init(|| {
        let none = Support {
            bf16: false,
            int8: false,
        };
        if std::env::var("NLPD_AMX").is_ok_and(|v| v == "off") {
            return none;
        }
        let (tile, bf16, int8) = cpu_features();
        if !tile || !(bf16 || int8) || !request_permission() {
            return none;
        }
        Support { bf16, int8 }
    })
}

/// Whether this process may run `TDPBF16PS` (AMX-TILE and AMX-BF16, and Linux granted the tiles).
/// `NLPD_AMX=off` answers false (to compare with the AVX-512 kernels on the same machine).
pub fn bf16_available() -> bool {
    support().bf16
}

/// Whether this process may run `TDPBUSD` (AMX-TILE and AMX-INT8, and Linux granted the tiles).
pub fn int8_available() -> bool {
    support().int8
}

/// CPUID leaf 7, sub-leaf 0, EDX: bit 24 AMX-TILE, bit 22 AMX-BF16, bit 25 AMX-INT8.
#[cfg(target_arch = "x86_64")]
fn cpu_features() -> (bool, bool, bool) {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    if __cpuid(0).eax < 7 {
        return (false, false, false);
    }
    let edx = __cpuid_count(7, 0).edx;
    let bit = |b: u32| (edx >> b) & 1 == 1;
    (bit(24), bit(22), bit(25))
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_features() -> (bool, bool, bool) {
    (false, false, false)
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: true when Linux lets this process use the
/// tile registers (kernels before 5.16 or without AMX support refuse).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_permission() -> bool {
    const SYS_ARCH_PRCTL: isize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: the arch_prctl system call with two integer arguments; it reads and writes no
    // memory of ours. `syscall` clobbers rcx and r11, declared here.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret != 0 {
        tracing::warn!(
            errno = -ret,
            "the CPU has AMX but Linux refused the tile permission; using AVX-512 kernels"
        );
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_permission() -> bool {
    false
}

/// The 64-byte operand of `LDTILECFG`: palette 1, then per tile its bytes per row and its rows.
/// A tile left at zero is unconfigured (using it faults).
#[repr(C, align(64))]
pub struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// Every tile unconfigured.
    pub fn new() -> TileConfig {
        TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        }
    }

    /// Tile `t` holds `rows` rows of 64 bytes (left unconfigured when `rows` is 0).
    pub fn set(&mut self, t: usize, rows: usize) -> &mut TileConfig {
        debug_assert!(t < 8 && rows <= ROWS);
        if rows > 0 {
            self.colsb[t] = ROW_BYTES as u16;
            self.rows[t] = rows as u8;
        }
        self
    }

    /// The layout both tile kernels use for `r0` rows (and `r1` more below them): C tiles 0-1 and
    /// A tile 4 of `r0` rows, C tiles 2-3 and A tile 5 of `r1` rows, B tiles 6-7 of 16 rows.
    pub fn two_by_two(r0: usize, r1: usize) -> TileConfig {
        let mut cfg = TileConfig::new();
        cfg.set(0, r0).set(1, r0).set(4, r0);
        cfg.set(2, r1).set(3, r1).set(5, r1);
        cfg.set(6, ROWS).set(7, ROWS);
        cfg
    }

    /// `LDTILECFG`: this thread's tiles take these shapes (and are zeroed).
    ///
    /// # Safety
    /// [`bf16_available`] or [`int8_available`] must have answered true in this process.
    #[inline(always)]
    pub unsafe fn load(&self) {
        asm!("ldtilecfg [{p}]", p = in(reg) self as *const TileConfig, options(nostack, readonly));
    }
}

impl Default for TileConfig {
    fn default() -> TileConfig {
        TileConfig::new()
    }
}

/// `TILERELEASE`: this thread's tiles back to the initial state.
///
/// # Safety
/// As [`TileConfig::load`].
#[inline(always)]
pub unsafe fn release() {
    asm!("tilerelease", options(nostack, nomem));
}

/// `TILELOADD tmmT, [p + stride·i]`: row `i` of tile `T` from `p + i·stride` (a stride of 0 loads
/// the same row into every row).
///
/// # Safety
/// The tile must be configured, and each of its rows readable at `p + i·stride`.
#[inline(always)]
pub unsafe fn load<const T: u8>(p: *const u8, stride: usize) {
    asm!(
        "tileloadd tmm{t}, [{p} + {s}*1]",
        t = const T,
        p = in(reg) p,
        s = in(reg) stride,
        options(nostack, readonly),
    );
}

/// `TILESTORED [p + stride·i], tmmT`.
///
/// # Safety
/// The tile must be configured, and each of its rows writable at `p + i·stride` with nothing else
/// reading or writing them.
#[inline(always)]
pub unsafe fn store<const T: u8>(p: *mut u8, stride: usize) {
    asm!(
        "tilestored [{p} + {s}*1], tmm{t}",
        t = const T,
        p = in(reg) p,
        s = in(reg) stride,
        options(nostack),
    );
}

/// `TILEZERO tmmT`.
///
/// # Safety
/// The tile must be configured.
#[inline(always)]
pub unsafe fn zero<const T: u8>() {
    asm!("tilezero tmm{t}", t = const T, options(nostack, nomem));
}

/// `TDPBF16PS tmmC, tmmA, tmmB`: `C[i][j] += Σ_p A[i][2p]·B[p][2j] + A[i][2p+1]·B[p][2j+1]`, bf16
/// pairs into f32 (A: rows × 32 bf16, B: 16 pairs × 16 columns × 2).
///
/// # Safety
/// The three tiles must be configured with compatible shapes, and the CPU must have AMX-BF16.
#[inline(always)]
pub unsafe fn dp_bf16<const C: u8, const A: u8, const B: u8>() {
    asm!(
        "tdpbf16ps tmm{c}, tmm{a}, tmm{b}",
        c = const C,
        a = const A,
        b = const B,
        options(nostack, nomem),
    );
}

/// `TDPBUSD tmmC, tmmA, tmmB`: `C[i][j] += Σ_q Σ_t A[i][4q+t]·B[q][4j+t]`, u8 (A) × i8 (B) quads
/// into i32, exact and without saturation, as `vpdpbusd`.
///
/// # Safety
/// The three tiles must be configured with compatible shapes, and the CPU must have AMX-INT8.
#[inline(always)]
pub unsafe fn dp_u8i8<const C: u8, const A: u8, const B: u8>() {
    asm!(
        "tdpbusd tmm{c}, tmm{a}, tmm{b}",
        c = const C,
        a = const A,
        b = const B,
        options(nostack, nomem),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_agrees_with_the_cpu_flags() {
        let (tile, bf16, int8) = cpu_features();
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if !flags.is_empty() {
            assert_eq!(tile, flags.contains(" amx_tile"), "amx_tile");
            assert_eq!(bf16, flags.contains(" amx_bf16"), "amx_bf16");
            assert_eq!(int8, flags.contains(" amx_int8"), "amx_int8");
        }
        if !bf16_available() {
            eprintln!("SKIPPED: no AMX-BF16 on this CPU (or Linux refused the tiles)");
            return;
        }
        // One tile product by hand: 1.0 · 2.0 summed over 32 inputs, on a bias row of 0.5
        // loaded with stride 0 into every row.
        let a = vec![0x3F80u16; ROWS * 32];
        let b = vec![0x4000u16; ROWS * 32];
        let bias = [0.5f32; 16];
        let mut out = [0f32; 256];
        let mut cfg = TileConfig::new();
        cfg.set(0, ROWS).set(1, ROWS).set(2, ROWS);
        // SAFETY: AMX-BF16 is available (checked above); the tiles are configured; every row
        // read or written lies in the buffers above.
        unsafe {
            cfg.load();
            load::<0>(bias.as_ptr() as *const u8, 0);
            load::<1>(a.as_ptr() as *const u8, ROW_BYTES);
            load::<2>(b.as_ptr() as *const u8, ROW_BYTES);
            dp_bf16::<0, 1, 2>();
            store::<0>(out.as_mut_ptr() as *mut u8, ROW_BYTES);
            release();
        }
        assert!(out.iter().all(|&v| v == 64.5), "{:?}", &out[..4]);
    }
}
