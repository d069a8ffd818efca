//! glibc extras: the `__libc_*` aliases, `cfree`, `malloc_trim`,
//! `malloc_stats`, `mallinfo2` and the legacy `mallinfo`.

use crate::malloc;
use crate::stats;
use core::ffi::{c_int, c_void};
use tinymalloc_core::raw;

/// glibc alias of [`malloc::malloc`].
///
/// # Safety
/// As `malloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { malloc::malloc(size) }
}

/// glibc alias of [`malloc::free`].
///
/// # Safety
/// As `free`.
#[no_mangle]
pub unsafe extern "C" fn __libc_free(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { malloc::free(ptr) }
}

/// Old SunOS/glibc alias of [`malloc::free`].
///
/// # Safety
/// As `free`.
#[no_mangle]
pub unsafe extern "C" fn cfree(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { malloc::free(ptr) }
}

/// glibc alias of [`malloc::calloc`].
///
/// # Safety
/// As `calloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { malloc::calloc(n, size) }
}

/// glibc alias of [`malloc::realloc`].
///
/// # Safety
/// As `realloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { malloc::realloc(ptr, size) }
}

/// glibc alias of [`malloc::memalign`].
///
/// # Safety
/// As `memalign`.
#[no_mangle]
pub unsafe extern "C" fn __libc_memalign(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { malloc::memalign(alignment, size) }
}

/// glibc alias of [`malloc::valloc`].
///
/// # Safety
/// As `valloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { malloc::valloc(size) }
}

/// glibc alias of [`malloc::pvalloc`].
///
/// # Safety
/// As `pvalloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { malloc::pvalloc(size) }
}

/// `malloc_trim(pad)`: returns free memory to the OS; 1 if some was
/// released, else 0. `pad` is ignored (nothing is kept back on purpose).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn malloc_trim(_pad: usize) -> c_int {
    c_int::from(raw::trim())
}

/// `malloc_stats()`: prints a short summary to stderr (without allocating).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn malloc_stats() {
    stats::print();
}

/// glibc's `struct mallinfo2` (same layout: ten `size_t`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Mallinfo2 {
    /// Bytes mapped from the OS other than huge blocks (segments and
    /// metadata).
    pub arena: usize,
    /// Number of free chunks (not tracked: 0).
    pub ordblks: usize,
    /// Number of free fastbin blocks (not tracked: 0).
    pub smblks: usize,
    /// Number of huge blocks (each its own mapping).
    pub hblks: usize,
    /// Bytes in huge blocks' mappings.
    pub hblkhd: usize,
    /// Unused (0), as in glibc.
    pub usmblks: usize,
    /// Bytes in free fastbin blocks (not tracked: 0).
    pub fsmblks: usize,
    /// Bytes in blocks in use (block sizes: small, medium, large, huge).
    pub uordblks: usize,
    /// Bytes mapped but not in blocks in use.
    pub fordblks: usize,
    /// Releasable top-most chunk in glibc; not counted (0).
    pub keepcost: usize,
}

/// glibc's legacy `struct mallinfo` (ten `int`, saturated).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Mallinfo {
    /// See [`Mallinfo2`].
    pub arena: c_int,
    /// See [`Mallinfo2`].
    pub ordblks: c_int,
    /// See [`Mallinfo2`].
    pub smblks: c_int,
    /// See [`Mallinfo2`].
    pub hblks: c_int,
    /// See [`Mallinfo2`].
    pub hblkhd: c_int,
    /// See [`Mallinfo2`].
    pub usmblks: c_int,
    /// See [`Mallinfo2`].
    pub fsmblks: c_int,
    /// See [`Mallinfo2`].
    pub uordblks: c_int,
    /// See [`Mallinfo2`].
    pub fordblks: c_int,
    /// See [`Mallinfo2`].
    pub keepcost: c_int,
}

/// `mallinfo2()`: the allocator's totals (see [`Mallinfo2`]).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn mallinfo2() -> Mallinfo2 {
    stats::mallinfo2()
}

/// `mallinfo()`: as [`mallinfo2()`], each field saturated to `INT_MAX`.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn mallinfo() -> Mallinfo {
    let m = stats::mallinfo2();
    let int = |v: usize| c_int::try_from(v).unwrap_or(c_int::MAX);
    Mallinfo {
        arena: int(m.arena),
        ordblks: int(m.ordblks),
        smblks: int(m.smblks),
        hblks: int(m.hblks),
        hblkhd: int(m.hblkhd),
        usmblks: int(m.usmblks),
        fsmblks: int(m.fsmblks),
        uordblks: int(m.uordblks),
        fordblks: int(m.fordblks),
        keepcost: int(m.keepcost),
    }
}
