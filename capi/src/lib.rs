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
// Built with `panic = "abort"` (the release profile), the library does
// without Rust's standard library: no unwinder (so no libgcc_s), no
// formatting or backtrace machinery, only libc. Builds that unwind (the
// test profiles) keep std, which they need.
#![cfg_attr(panic = "abort", no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cxx;
pub mod glibc;
pub mod malloc;
mod stats;
pub mod tiny;

use core::ffi::c_int;

// Links libc whatever features the `libc` crate is built with: with its
// `std` feature (which another member of a workspace build turns on) it
// names no library and leaves that to std, which this build does not
// have. Through `-lc` (glibc's `libc.so` linker script) come `libc.so.6`
// and `libc_nonshared.a`, which holds `atexit`.
#[cfg(panic = "abort")]
#[link(name = "c")]
extern "C" {}

/// No path of tinymalloc is meant to panic: a panic is an internal error,
/// reported on stderr (file and line) with `write(2)` from a fixed buffer,
/// then `abort()`, as every other fault.
#[cfg(panic = "abort")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(loc) => tinymalloc_core::internal_error(loc.file(), loc.line()),
        None => tinymalloc_core::internal_error("?", 0),
    }
}

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
