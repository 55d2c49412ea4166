//! The process allocator: mimalloc (thread-local free lists; the stages allocate on many
//! threads, where glibc's arenas contend), with per-thread counters so `braid bench` can
//! report the allocations of the code it runs on its own thread (shared counters would
//! make every allocation of every thread contend for one cache line).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

/// mimalloc plus per-thread allocation counters.
pub(crate) struct Counting;

impl Counting {
    /// This thread's allocations (reallocations not counted, as stats_alloc counted them)
    /// and bytes asked for, so far.
    pub(crate) fn totals(&self) -> (usize, usize) {
        (ALLOCATIONS.with(Cell::get), BYTES.with(Cell::get))
    }
}

fn count(size: usize) {
    // `try_with`: a thread being torn down still allocates; it just is not counted.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    let _ = BYTES.try_with(|c| c.set(c.get() + size));
}

// SAFETY: every call is forwarded unchanged to mimalloc, which upholds GlobalAlloc's
// contract; the counters only observe (const-initialised thread-locals without
// destructors, which never allocate).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}
