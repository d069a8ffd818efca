//! The malloc family with POSIX and glibc semantics.
//!
//! The core returns null on failure and never sets `errno`; this layer adds
//! the `errno` values, the argument checks and glibc's special cases.

use crate::{errno, set_errno};
use core::ffi::{c_int, c_void};
use libc::{EINVAL, ENOMEM};
use tinymalloc_core::raw;

/// Sets `errno` to ENOMEM when `p` is null, and returns `p` as `void *`.
#[inline]
fn or_enomem(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(ENOMEM);
    }
    p.cast()
}

/// `malloc(size)`: `size` bytes aligned to 16; `malloc(0)` returns a unique
/// pointer; NULL with errno ENOMEM when out of memory.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: raw::malloc has no precondition; it sets ENOMEM itself.
    unsafe { raw::malloc(size) }.cast()
}

/// `free(ptr)`: NULL is ignored; errno is preserved; an invalid or double
/// free aborts with a one-line report.
///
/// # Safety
/// `ptr` must not be used after this call.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: forwarded contract; the core preserves errno.
    unsafe { raw::free(ptr.cast()) }
}

/// `calloc(n, size)`: zeroed memory; NULL with ENOMEM on overflow or when
/// out of memory.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: raw::calloc checks the multiplication for overflow.
    or_enomem(unsafe { raw::calloc(n, size) })
}

/// `realloc(ptr, size)`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)`
/// frees `p` and returns NULL (glibc's REALLOC_ZERO_BYTES_FREES); on failure
/// returns NULL with ENOMEM and `ptr` stays valid.
///
/// # Safety
/// `ptr` is NULL or a live block; after a non-NULL return (or a size of 0)
/// only the returned pointer may be used.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if size == 0 && !ptr.is_null() {
        // SAFETY: forwarded contract: glibc frees on realloc(p, 0).
        unsafe { raw::free(ptr.cast()) };
        return core::ptr::null_mut();
    }
    // SAFETY: forwarded contract.
    or_enomem(unsafe { raw::realloc(ptr.cast(), size) })
}

/// `reallocarray(ptr, n, size)`: `realloc(ptr, n * size)`, except that an
/// overflowing product returns NULL with ENOMEM and leaves `ptr` untouched.
///
/// # Safety
/// As [`realloc()`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            set_errno(ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// `posix_memalign(memptr, alignment, size)`: returns 0 and stores the block
/// in `*memptr`; EINVAL when `alignment` is not a power of two multiple of
/// `sizeof(void *)`, ENOMEM when out of memory. `errno` is never changed and
/// `*memptr` is only written on success.
///
/// # Safety
/// `memptr` must be valid for a pointer-sized write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    alignment: usize,
    size: usize,
) -> c_int {
    // A power of two is a multiple of sizeof(void *) when it is at least that.
    if !alignment.is_power_of_two() || alignment < core::mem::size_of::<*mut c_void>() {
        return EINVAL;
    }
    let saved = errno();
    // SAFETY: alignment is a power of two.
    let p = unsafe { raw::malloc_aligned(size, alignment) };
    set_errno(saved);
    if p.is_null() {
        return ENOMEM;
    }
    // SAFETY: the caller passes a writable `void **`.
    unsafe { *memptr = p.cast() };
    0
}

/// `aligned_alloc(alignment, size)`: NULL with EINVAL when `alignment` is
/// not a power of two (glibc 2.38 semantics); any size is accepted.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    if !alignment.is_power_of_two() {
        set_errno(EINVAL);
        return core::ptr::null_mut();
    }
    // SAFETY: alignment is a power of two.
    or_enomem(unsafe { raw::malloc_aligned(size, alignment) })
}

/// `memalign(alignment, size)` (glibc): an alignment that is not a power of
/// two is rounded up to the next one; one above `SIZE_MAX / 2 + 1` gives
/// NULL with EINVAL.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    let Some(align) = alignment.checked_next_power_of_two() else {
        set_errno(EINVAL);
        return core::ptr::null_mut();
    };
    // SAFETY: align is a power of two (at least 1).
    or_enomem(unsafe { raw::malloc_aligned(size, align.max(raw::MIN_ALIGN)) })
}

/// `valloc(size)`: `size` bytes aligned to the page size.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: the page size is a power of two.
    or_enomem(unsafe { raw::malloc_aligned(size, raw::page_size()) })
}

/// `pvalloc(size)`: page-aligned, with `size` rounded up to a whole number
/// of pages (0 gives one page); NULL with ENOMEM if rounding overflows.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = raw::page_size();
    let Some(rounded) = size.max(1).checked_next_multiple_of(page) else {
        set_errno(ENOMEM);
        return core::ptr::null_mut();
    };
    // SAFETY: the page size is a power of two.
    or_enomem(unsafe { raw::malloc_aligned(rounded, page) })
}

/// `malloc_usable_size(ptr)`: the bytes usable in the block (0 for NULL); a
/// pointer tinymalloc did not return aborts with a report.
///
/// # Safety
/// `ptr` is NULL or a live block.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: forwarded contract; the core validates the pointer.
    unsafe { raw::usable_size(ptr.cast()) }
}

/// C23 `free_sized(ptr, size)`: `size` is the size that was requested; a
/// size that cannot belong to the block aborts with a report.
///
/// # Safety
/// As [`free()`].
#[no_mangle]
pub unsafe extern "C" fn free_sized(ptr: *mut c_void, size: usize) {
    // SAFETY: forwarded contract; the core validates pointer and size.
    unsafe { raw::free_sized(ptr.cast(), size, raw::MIN_ALIGN) }
}

/// C23 `free_aligned_sized(ptr, alignment, size)`, for blocks from
/// `aligned_alloc(alignment, size)`.
///
/// # Safety
/// As [`free()`].
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(ptr: *mut c_void, alignment: usize, size: usize) {
    // SAFETY: forwarded contract; the core validates pointer, size and
    // alignment.
    unsafe { raw::free_sized(ptr.cast(), size, alignment) }
}
