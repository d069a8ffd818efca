//! tinymalloc: a general-purpose memory allocator.
//!
//! Rust programs use it with one line:
//!
//! ```ignore
//! #[global_allocator]
//! static A: tinymalloc::TinyMalloc = tinymalloc::TinyMalloc;
//! ```
//!
//! C and C++ programs use `libtinymalloc.so` (built by the `capi` package of
//! this workspace), which exports the malloc family on top of [`raw`].
//!
//! The design (see `docs/ARCHITECTURE.md`):
//!
//! ```text
//!  thread ──TLS──> Heap ──────────────┐ (no lock, no atomic RMW)
//!                   │ per size class  │
//!                   ▼ current page    ▼
//!  Segment (4 MiB, 4 MiB-aligned, never moves)
//!  ┌──────────────┬───────┬───────┬─────┬───────┐
//!  │ metadata     │ page 2│ page 3│ ... │page 63│  64 KiB pages, one size
//!  │ header, page │ 16 B  │ 80 B  │     │ 32 KiB│  class each
//!  │ descriptors, │ blocks│ blocks│     │ blocks│
//!  │ free/xfree   │       │       │     │       │
//!  │ bitmaps      │       │       │     │       │
//!  └──────────────┴───────┴───────┴─────┴───────┘
//!  Arena (one per CPU, own lock): segment cache, abandoned segments,
//!  large segments (4 KiB page runs found by bitmap search).
//!  Huge blocks (> 2 MiB): mapped directly.
//!  Chunk map: one byte per 4 MiB of address space -> kind of segment.
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod arena;
mod bitmap;
mod canary;
mod error;
mod guard;
mod heap;
mod huge;
mod large;
mod options;
mod os;
mod page;
mod quarantine;
mod region;
mod retired;
mod secure;
mod segmap;
mod segment;
mod size_class;
mod stats;
mod sync;
mod thread;
mod zero;

pub mod raw;

pub use options::{get as get_option, set_option, Opt};
pub use stats::{print_stats, stats, Stats};

/// Reports an internal error (a panic at `file:line`) on stderr and aborts:
/// for the C library's panic handler. Not part of the Rust API.
#[doc(hidden)]
pub use error::internal_error;

use core::alloc::{GlobalAlloc, Layout};

/// True when secure mode is on (`TINYMALLOC_SECURE=1` when tinymalloc
/// started, or the `secure` feature); fixed before the first block exists.
/// See `docs/SECURITY.md`.
pub fn secure_mode() -> bool {
    secure::active()
}

/// The tinymalloc global allocator.
///
/// ```ignore
/// #[global_allocator]
/// static A: tinymalloc::TinyMalloc = tinymalloc::TinyMalloc;
/// ```
pub struct TinyMalloc;

// SAFETY: every method returns memory that is valid for the layout asked
// (size and alignment), or null; `dealloc` and `realloc` are only given
// pointers this allocator returned, as the GlobalAlloc contract requires,
// and any other pointer is caught and reported by `raw::free`.
unsafe impl GlobalAlloc for TinyMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= raw::MIN_ALIGN {
            // SAFETY: no precondition beyond a sane size.
            unsafe { raw::malloc(layout.size()) }
        } else {
            // SAFETY: Layout guarantees a power-of-two alignment.
            unsafe { raw::malloc_aligned(layout.size(), layout.align()) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: Layout guarantees a power-of-two alignment.
        unsafe { raw::zalloc_aligned(layout.size(), layout.align()) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a pointer this allocator returned.
        unsafe { raw::free(ptr) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= raw::MIN_ALIGN {
            // SAFETY: the caller passes a live pointer of this allocator.
            unsafe { raw::realloc(ptr, new_size) }
        } else {
            // SAFETY: as above; Layout guarantees a power-of-two alignment.
            unsafe { raw::realloc_aligned(ptr, new_size, layout.align()) }
        }
    }
}
