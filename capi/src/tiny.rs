//! The tinymalloc C API (`include/tinymalloc.h`).
//!
//! These names never clash with the system's, so a program can call them
//! explicitly; they behave as the malloc family, with two differences
//! documented in the header: `tinyrealloc(p, 0)` returns a minimal block
//! instead of freeing, and `tinymalloc_aligned` accepts any power-of-two
//! alignment.

use crate::{malloc, set_errno, stats};
use core::ffi::{c_char, c_int, c_void};
use libc::{EINVAL, ENOMEM};
use tinymalloc_core::raw;

/// `tinymalloc(size)`: as `malloc`; `tinymalloc(0)` returns a unique,
/// freeable pointer; NULL with ENOMEM when out of memory.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn tinymalloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { malloc::malloc(size) }
}

/// `tinyfree(ptr)`: as `free`.
///
/// # Safety
/// As `free`.
#[no_mangle]
pub unsafe extern "C" fn tinyfree(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { raw::free(ptr.cast()) }
}

/// `tinycalloc(n, size)`: as `calloc`.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn tinycalloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { malloc::calloc(n, size) }
}

/// `tinyrealloc(ptr, size)`: as `realloc`, except that a size of 0 returns
/// a minimal block (and frees `ptr`) instead of returning NULL.
///
/// # Safety
/// As `realloc`.
#[no_mangle]
pub unsafe extern "C" fn tinyrealloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    let p = unsafe { raw::realloc(ptr.cast(), size) };
    if p.is_null() {
        set_errno(ENOMEM);
    }
    p.cast()
}

/// `tinymalloc_aligned(alignment, size)`: `alignment` must be a power of
/// two (else NULL with EINVAL); NULL with ENOMEM when out of memory.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn tinymalloc_aligned(alignment: usize, size: usize) -> *mut c_void {
    if !alignment.is_power_of_two() {
        set_errno(EINVAL);
        return core::ptr::null_mut();
    }
    // SAFETY: alignment is a power of two.
    unsafe { malloc::aligned_alloc(alignment, size) }
}

/// `tinymalloc_usable_size(ptr)`: as `malloc_usable_size`.
///
/// # Safety
/// `ptr` is NULL or a live block.
#[no_mangle]
pub unsafe extern "C" fn tinymalloc_usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: forwarded contract.
    unsafe { raw::usable_size(ptr.cast()) }
}

/// `tinymalloc_trim()`: returns free memory to the OS; 1 if some was
/// released, else 0.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn tinymalloc_trim() -> c_int {
    c_int::from(raw::trim())
}

/// `tinymalloc_owns(ptr)`: 1 if `ptr` is a live block returned by
/// tinymalloc, else 0; never aborts, whatever the address.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn tinymalloc_owns(ptr: *const c_void) -> c_int {
    // SAFETY: owns accepts any address.
    c_int::from(unsafe { raw::owns(ptr.cast()) })
}

/// `tinymalloc_print_stats()`: the same summary as `malloc_stats`.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn tinymalloc_print_stats() {
    stats::print();
}

/// The library's version as a static NUL-terminated string, e.g. "0.1.0".
static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// `tinymalloc_version()`: the version of the library actually loaded.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn tinymalloc_version() -> *const c_char {
    VERSION.as_ptr().cast()
}
