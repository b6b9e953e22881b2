//! The binary's global allocator: the system allocator, counting allocations while
//! `nlpd profile` asks it to. Off (every other command, the server), the only added work per
//! allocation is one relaxed load of a bool that stays in cache.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
fn note(size: usize) {
    if ON.load(Ordering::Relaxed) {
        COUNT.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call forwards to `System` with the same arguments; counting touches only atomics
// and never allocates.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    /// A reallocation counts as one allocation of the new size.
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

/// Allocations (and reallocations) and their requested bytes since counting was turned on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub count: u64,
    pub bytes: u64,
}

impl Counts {
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            count: self.count.saturating_sub(earlier.count),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

pub fn set_counting(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

pub fn counts() -> Counts {
    Counts {
        count: COUNT.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_counted_only_while_on() {
        set_counting(true);
        let a = counts();
        let v: Vec<u8> = Vec::with_capacity(1000);
        std::hint::black_box(&v);
        let b = counts().since(a);
        set_counting(false);
        // Other test threads may allocate meanwhile: at least ours.
        assert!(b.count >= 1 && b.bytes >= 1000, "{b:?}");
        drop(v);
    }

    /// The cost of the check while counting is off: `cargo nextest run --workspace
    /// --cargo-profile tuning -E 'test(alloc_check_cost)' --run-ignored only --no-capture`.
    #[test]
    #[ignore = "a timing measurement, run by hand"]
    fn alloc_check_cost() {
        set_counting(false);
        let layout = Layout::from_size_align(64, 8).unwrap();
        let time = |a: &dyn GlobalAlloc| {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t0 = std::time::Instant::now();
                for _ in 0..5_000_000 {
                    // SAFETY: a valid layout; the block is freed at once.
                    unsafe {
                        let p = a.alloc(std::hint::black_box(layout));
                        a.dealloc(std::hint::black_box(p), layout);
                    }
                }
                best = best.min(t0.elapsed().as_secs_f64() / 5e6 * 1e9);
            }
            best
        };
        let (sys, counting) = (time(&System), time(&Counting));
        println!("alloc+free of 64 bytes: System {sys:.2} ns, Counting (off) {counting:.2} ns");
    }
}
