//! Test-only global allocator that counts heap allocations per thread, so a unit test can prove
//! that a code path allocates nothing (the hot-path rule of STYLE.md, for the pgoutput parser).
//!
//! It is compiled only under `cfg(test)` (see the `mod` line in `pgoutput/mod.rs`), so it never
//! reaches the binary. `#[global_allocator]` is crate-wide: while the library's unit tests run,
//! every allocation in every test goes through it. It forwards to the system allocator and only
//! bumps a counter, so other tests are unaffected; the counter is thread-local (tests run on
//! parallel threads) with `const` initialisation and a `Cell`, so touching it never allocates.
//! No other module of the crate may declare a global allocator for tests. Protects invariant #9
//! only indirectly: it is the proof behind "the parser's per-message path does not allocate".

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to [`System`], counting allocations made by the current thread.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with` so an allocation during thread teardown is never a panic.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is upheld by `System`.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `alloc`'s contract; forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `realloc`'s contract; forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `dealloc`'s contract; forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the number of allocations (including reallocations) the
/// current thread made meanwhile.
pub(crate) fn count_allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    let after = ALLOCATIONS.with(Cell::get);
    (result, after - before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_threads_allocations() {
        let (vector, count) = count_allocations(|| vec![1u8; 100]);
        assert_eq!(vector.len(), 100);
        assert_eq!(count, 1);
        let ((), count) = count_allocations(|| {});
        assert_eq!(count, 0);
    }
}
