//! A counting global allocator. Each test binary that measures allocations declares
//!
//! ```
//! use spate_testkit::alloc::{allocs, peak, reset_peak, Counting};
//!
//! #[global_allocator]
//! static A: Counting = Counting;
//!
//! let (before, base) = (allocs(), reset_peak());
//! let v = std::hint::black_box(vec![0u8; 1000]);
//! assert_eq!(allocs() - before, 1);
//! assert!(peak() - base >= 1000);
//! drop(v);
//! ```
//!
//! and reads [`allocs`], [`reset_peak`] and [`peak`]. Counts are per thread (tests run
//! in parallel threads, each sees only its own work) and cover `alloc`, `alloc_zeroed`
//! and `realloc`; live bytes and their peak are tracked the same way.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator: [`System`] plus per-thread counters.
pub struct Counting;

thread_local! {
    // const-initialised Cells: reading them never allocates, so the allocator cannot
    // recurse into itself.
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn count() {
    // try_with: the thread's locals may already be gone while it exits.
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
}

fn add_live(d: i64) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + d;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the bookkeeping around it never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        add_live(l.size() as i64);
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), passed on as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        add_live(l.size() as i64);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add_live(-(l.size() as i64));
        // SAFETY: `p` was allocated by this allocator, i.e. by `System`, with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        add_live(n as i64 - l.size() as i64);
        // SAFETY: `p` came from `System` with layout `l`; the caller guarantees `n`.
        unsafe { System.realloc(p, l, n) }
    }
}

/// Allocations (including reallocations) made by this thread so far.
pub fn allocs() -> u64 {
    COUNT.with(Cell::get)
}

/// Bytes this thread allocated and has not freed (may be negative when it frees memory
/// another thread allocated).
pub fn live() -> i64 {
    LIVE.with(Cell::get)
}

/// Starts measuring peak memory from the current live bytes; returns that baseline.
pub fn reset_peak() -> i64 {
    let live = live();
    PEAK.with(|p| p.set(live));
    live
}

/// The highest [`live`] value since the last [`reset_peak`].
pub fn peak() -> i64 {
    PEAK.with(Cell::get)
}
