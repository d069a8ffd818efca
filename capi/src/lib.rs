//! `libtinymalloc.so` / `libtinymalloc.a`: the C drop-in.
//!
//! This crate only exports C symbols on top of [`tinymalloc_core::raw`]:
//!
//! - [`mod@malloc`]: the malloc family with POSIX/glibc semantics
//!   (`malloc`, `free`, `calloc`, `realloc`, `reallocarray`,
//!   `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc`,
//!   `malloc_usable_size`, `free_sized`, `free_aligned_sized`);
//! - [`glibc`]: glibc's `__libc_*` aliases, `cfree`, `malloc_trim`,
//!   `malloc_stats`, `mallinfo`, `mallinfo2`;
//! - [`cxx`]: the C++ `operator delete` family (sized and aligned forms);
//!   `operator new` is left to libstdc++, which calls our `malloc` /
//!   `aligned_alloc` and throws `std::bad_alloc` itself;
//! - [`tiny`]: the tinymalloc C API declared in `include/tinymalloc.h`.
//!
//! Rules for every exported function: it never allocates through anything
//! but the core, never panics and never formats with std; `errno` is set
//! here (the core never touches it).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cxx;
pub mod glibc;
pub mod malloc;
mod stats;
pub mod tiny;

use core::ffi::c_int;

/// Sets the calling thread's `errno`.
#[inline]
fn set_errno(value: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot,
    // which is always valid to write.
    unsafe { *libc::__errno_location() = value };
}

/// Reads the calling thread's `errno`.
#[inline]
fn errno() -> c_int {
    // SAFETY: as in set_errno; the slot is always valid to read.
    unsafe { *libc::__errno_location() }
}

/// Runs when the library is loaded (preloaded or linked): reads the
/// `TINYMALLOC_*` options at start-up, so that a bad value is reported even
/// by a program that never allocates. Allocates nothing.
extern "C" fn load_time_init() {
    tinymalloc_core::raw::init();
}

/// The load-time constructor, placed in `.init_array`.
#[used]
#[link_section = ".init_array"]
static LOAD_TIME_INIT: extern "C" fn() = load_time_init;
