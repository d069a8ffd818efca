//! The C++ `operator delete` family, by mangled name (Itanium ABI).
//!
//! `operator new` is deliberately not exported: libstdc++'s `operator new`
//! calls `malloc` (and the aligned forms `aligned_alloc`), which resolve to
//! tinymalloc, and it throws `std::bad_alloc` itself, which Rust cannot do.
//! The deletes are exported so that sized and aligned deletes reach
//! [`raw::free_sized`], which checks the size the compiler passes.
//!
//! `std::align_val_t` is an enum of `size_t` and `std::nothrow_t` is passed
//! by reference, so they appear here as `usize` and a pointer.

use core::ffi::c_void;
use tinymalloc_core::raw;

/// `operator delete(void*)`.
///
/// # Safety
/// `p` is null or a live block from `operator new`; not used afterwards.
#[export_name = "_ZdlPv"]
pub unsafe extern "C" fn delete(p: *mut c_void) {
    // SAFETY: forwarded contract; the core validates the pointer.
    unsafe { raw::free(p.cast()) }
}

/// `operator delete[](void*)`.
///
/// # Safety
/// As [`delete`].
#[export_name = "_ZdaPv"]
pub unsafe extern "C" fn delete_array(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { raw::free(p.cast()) }
}

/// `operator delete(void*, size_t)`: sized delete, size checked.
///
/// # Safety
/// As [`delete`]; `size` is the size given to `operator new`.
#[export_name = "_ZdlPvm"]
pub unsafe extern "C" fn delete_sized(p: *mut c_void, size: usize) {
    // SAFETY: forwarded contract; the core checks size against the block.
    unsafe { raw::free_sized(p.cast(), size, raw::MIN_ALIGN) }
}

/// `operator delete[](void*, size_t)`.
///
/// # Safety
/// As [`delete_sized`].
#[export_name = "_ZdaPvm"]
pub unsafe extern "C" fn delete_array_sized(p: *mut c_void, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { raw::free_sized(p.cast(), size, raw::MIN_ALIGN) }
}

/// `operator delete(void*, std::align_val_t)`.
///
/// # Safety
/// As [`delete`], for a block from the aligned `operator new`.
#[export_name = "_ZdlPvSt11align_val_t"]
pub unsafe extern "C" fn delete_aligned(p: *mut c_void, _align: usize) {
    // SAFETY: forwarded contract.
    unsafe { raw::free(p.cast()) }
}

/// `operator delete[](void*, std::align_val_t)`.
///
/// # Safety
/// As [`delete_aligned`].
#[export_name = "_ZdaPvSt11align_val_t"]
pub unsafe extern "C" fn delete_array_aligned(p: *mut c_void, _align: usize) {
    // SAFETY: forwarded contract.
    unsafe { raw::free(p.cast()) }
}

/// `operator delete(void*, size_t, std::align_val_t)`: size and alignment
/// checked.
///
/// # Safety
/// As [`delete_sized`], for a block from the aligned `operator new`.
#[export_name = "_ZdlPvmSt11align_val_t"]
pub unsafe extern "C" fn delete_sized_aligned(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: forwarded contract; the core checks size and alignment.
    unsafe { raw::free_sized(p.cast(), size, align) }
}

/// `operator delete[](void*, size_t, std::align_val_t)`.
///
/// # Safety
/// As [`delete_sized_aligned`].
#[export_name = "_ZdaPvmSt11align_val_t"]
pub unsafe extern "C" fn delete_array_sized_aligned(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe { raw::free_sized(p.cast(), size, align) }
}

/// `operator delete(void*, const std::nothrow_t&)`.
///
/// # Safety
/// As [`delete`].
#[export_name = "_ZdlPvRKSt9nothrow_t"]
pub unsafe extern "C" fn delete_nothrow(p: *mut c_void, _nt: *const c_void) {
    // SAFETY: forwarded contract.
    unsafe { raw::free(p.cast()) }
}

/// `operator delete[](void*, const std::nothrow_t&)`.
///
/// # Safety
/// As [`delete`].
#[export_name = "_ZdaPvRKSt9nothrow_t"]
pub unsafe extern "C" fn delete_array_nothrow(p: *mut c_void, _nt: *const c_void) {
    // SAFETY: forwarded contract.
    unsafe { raw::free(p.cast()) }
}

/// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
/// As [`delete_aligned`].
#[export_name = "_ZdlPvSt11align_val_tRKSt9nothrow_t"]
pub unsafe extern "C" fn delete_aligned_nothrow(p: *mut c_void, _align: usize, _nt: *const c_void) {
    // SAFETY: forwarded contract.
    unsafe { raw::free(p.cast()) }
}

/// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
/// As [`delete_aligned`].
#[export_name = "_ZdaPvSt11align_val_tRKSt9nothrow_t"]
pub unsafe extern "C" fn delete_array_aligned_nothrow(
    p: *mut c_void,
    _align: usize,
    _nt: *const c_void,
) {
    // SAFETY: forwarded contract.
    unsafe { raw::free(p.cast()) }
}
