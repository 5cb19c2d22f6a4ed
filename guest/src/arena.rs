//! The component's allocator: an arena that lives exactly as long as the instance.
//!
//! The host makes a fresh instance for every request and throws it away after, so nothing the
//! guest allocates outlives one request; a general-purpose allocator's bookkeeping buys nothing
//! here. This arena hands out memory from the top of the heap and takes back only the newest
//! block (which is what a growing `Vec` or `String` asks for), so an allocation is a few
//! instructions.
//!
//! It also starts where the linker left free memory (`__heap_base` to the end of the initial
//! memory) before it asks for more: `memory.grow` costs the host two `mprotect` calls per instance
//! (one to grow, one to reset the slot for the next instance), which the request would pay on its
//! first allocation. Requests that need more than the initial memory grow it in steps of
//! [`GROW_STEP_PAGES`] at least; the host's memory limit still bounds them, and an allocation
//! past it fails as it did before (a trap, costing that one request).
//!
//! What this gives up: memory freed in the middle of the heap is not reused within the request.
//! The largest requests (a 1,000-todo page, an 8 MiB public file, a 1 MiB body) allocate at most a
//! few times what they keep, far below the host's default limit.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

const PAGE_BYTES: usize = 64 << 10;
/// Pages the arena asks for at least when it runs out: 1 MiB.
const GROW_STEP_PAGES: usize = 16;

unsafe extern "C" {
    /// The first byte after the linker's data and stack: where the heap starts.
    static __heap_base: u8;
}

/// The arena's two pointers. The component runs on one thread, so plain cells suffice.
pub struct Arena {
    /// The next free byte; 0 until the first allocation.
    next: Cell<usize>,
    /// The end of memory the arena may use (the end of linear memory).
    end: Cell<usize>,
}

// SAFETY: a wasm32 component instance has exactly one thread; nothing else can reach the cells.
unsafe impl Sync for Arena {}

impl Arena {
    pub const fn new() -> Self {
        Self {
            next: Cell::new(0),
            end: Cell::new(0),
        }
    }

    /// Makes `[from, from + bytes)` available, growing memory if needed; false if it cannot be.
    fn reserve(&self, from: usize, bytes: usize) -> bool {
        let Some(wanted_end) = from.checked_add(bytes) else {
            return false;
        };
        if self.end.get() == 0 {
            self.end
                .set(core::arch::wasm32::memory_size(0) * PAGE_BYTES);
        }
        if wanted_end <= self.end.get() {
            return true;
        }
        let missing_pages = (wanted_end - self.end.get()).div_ceil(PAGE_BYTES);
        let pages = missing_pages.max(GROW_STEP_PAGES);
        // Past the host's limit, ask for exactly what is missing before giving up.
        let grown = [pages, missing_pages]
            .into_iter()
            .any(|pages| core::arch::wasm32::memory_grow(0, pages) != usize::MAX);
        if grown {
            self.end
                .set(core::arch::wasm32::memory_size(0) * PAGE_BYTES);
        }
        grown && wanted_end <= self.end.get()
    }

    fn next_free(&self) -> usize {
        match self.next.get() {
            // Only the symbol's address is taken; the linker defines it for every module.
            0 => core::ptr::addr_of!(__heap_base) as usize,
            next => next,
        }
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out lies in linear memory the arena reserved, aligned as asked,
// and no two live blocks overlap: `next` only moves back over a block that was freed or is being
// resized by its owner.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let start = self.next_free().next_multiple_of(layout.align());
        if !self.reserve(start, layout.size()) {
            return core::ptr::null_mut();
        }
        self.next.set(start + layout.size());
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The newest block goes back; any other stays until the instance is dropped.
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        if start + layout.size() == self.next.get() {
            // The newest block grows or shrinks in place.
            if !self.reserve(start, new_size) {
                return core::ptr::null_mut();
            }
            self.next.set(start + new_size);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the caller guarantees `layout.align()` with `new_size` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for `alloc`; the old block is live for `layout.size()` bytes and cannot
        // overlap the new one, which starts at or after the old `next`.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size());
            }
            new
        }
    }
}
