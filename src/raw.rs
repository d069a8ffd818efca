//! The C-style interface: what `libtinymalloc.so` exports is a thin layer
//! over these functions, and Rust code may call them directly.
//!
//! Conventions:
//! - every pointer returned is at least [`MIN_ALIGN`]-aligned; null means the
//!   request cannot be satisfied: for want of memory `errno` is then
//!   `ENOMEM` (set on the slow path that failed, so the C layer's `malloc`
//!   needs no test); otherwise `errno` is left as it was;
//! - a size of 0 is served as the smallest block: a unique, freeable pointer;
//! - a pointer that tinymalloc did not return, or that is already free, is
//!   reported on stderr ("tinymalloc: ...") and the process aborts.
//!
//! Each entry point tests `secure::check()` once (one load of a global
//! byte and a predictable branch; a constant with the `secure` feature)
//! and hands secure mode's calls to `secure.rs`. `malloc` and `free` test
//! it only off their fast paths: in secure mode no heap offers a page to
//! `malloc`'s fast path (`Heap::fast`), and secure mode's small segments
//! are marked apart in the chunk map for `free`.

use crate::error::Op;
use crate::segmap::{self, Kind};
use crate::size_class::{self, MEDIUM_MAX};
use crate::{heap, huge, large, os, secure, segment, thread};

/// Every block is aligned to at least this many bytes.
pub const MIN_ALIGN: usize = 16;

/// Allocates `size` bytes aligned to [`MIN_ALIGN`]; null when out of memory.
///
/// # Safety
/// Always safe to call; `unsafe` because it hands out raw memory.
#[inline]
pub unsafe fn malloc(size: usize) -> *mut u8 {
    // No test of the mode for small and medium sizes: in secure mode (or
    // before the mode is known) the fast path always falls through to the
    // slow path, which hands the call to secure mode (`Heap::fast`).
    if size <= size_class::SMALL_MAX {
        // Tested first: the commonest sizes take one compare to their class.
        // SAFETY: class_of is given a size it covers.
        unsafe { heap::alloc_class(size_class::class_of(size), size) }
    } else if size <= MEDIUM_MAX {
        // SAFETY: class_of is given a size it covers.
        unsafe { heap::alloc_class(size_class::class_of(size), size) }
    } else if secure::check() {
        // SAFETY: forwarded.
        unsafe { secure_malloc(size) }
    } else {
        // SAFETY: sizes above MEDIUM_MAX go to the large or huge path.
        unsafe { alloc_big(size, MIN_ALIGN, false) }
    }
}

/// Secure mode's `malloc`, setting ENOMEM as the default path does (kept
/// out of line so that `malloc` reaches it by a tail call).
#[cold]
#[inline(never)]
pub(crate) unsafe fn secure_malloc(size: usize) -> *mut u8 {
    // SAFETY: forwarded.
    let p = unsafe { secure::malloc(size) };
    if p.is_null() {
        os::set_enomem();
    }
    p
}

/// Allocates `size` bytes aligned to `align` (a power of two); null when out
/// of memory or when `align` is not a power of two.
///
/// # Safety
/// Always safe to call.
pub unsafe fn malloc_aligned(size: usize, align: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return core::ptr::null_mut();
    }
    if align <= MIN_ALIGN {
        // SAFETY: plain allocation.
        return unsafe { malloc(size) };
    }
    if secure::check() {
        // SAFETY: forwarded; align is a power of two.
        return unsafe { secure::malloc_aligned(size, align, false) };
    }
    match size_class::aligned_class(size, align) {
        // SAFETY: the class's blocks are all aligned to `align`.
        Some(cls) => unsafe { heap::alloc_class(cls, size) },
        // SAFETY: large/huge honour any power-of-two alignment.
        None => unsafe { alloc_big(size, align, false) },
    }
}

/// Allocates `size` zeroed bytes; null when out of memory.
///
/// # Safety
/// Always safe to call.
pub unsafe fn zalloc(size: usize) -> *mut u8 {
    // SAFETY: MIN_ALIGN is a power of two.
    unsafe { zalloc_aligned(size, MIN_ALIGN) }
}

/// Allocates `size` zeroed bytes aligned to `align`; memory known to be
/// fresh from the OS is not zeroed again.
///
/// # Safety
/// Always safe to call.
pub unsafe fn zalloc_aligned(size: usize, align: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return core::ptr::null_mut();
    }
    if secure::check() {
        // SAFETY: forwarded; align is a power of two.
        return unsafe { secure::malloc_aligned(size, align, true) };
    }
    let small = if align <= MIN_ALIGN {
        (size <= MEDIUM_MAX).then(|| size_class::class_of(size))
    } else {
        size_class::aligned_class(size, align)
    };
    match small {
        Some(cls) => {
            // SAFETY: as in malloc_aligned.
            let p = unsafe { heap::alloc_class(cls, size) };
            // SAFETY: p is a live small block of at least `size` bytes.
            if !p.is_null() && !unsafe { segment::block_is_zero(p) } {
                // SAFETY: p points to at least `size` writable bytes.
                unsafe { core::ptr::write_bytes(p, 0, size) };
            }
            p
        }
        // SAFETY: large/huge zero what is not fresh.
        None => unsafe { alloc_big(size, align.max(MIN_ALIGN), true) },
    }
}

/// `calloc`: `n * size` zeroed bytes; null on overflow or out of memory.
///
/// # Safety
/// Always safe to call.
pub unsafe fn calloc(n: usize, size: usize) -> *mut u8 {
    match n.checked_mul(size) {
        // SAFETY: plain zeroed allocation.
        Some(total) => unsafe { zalloc(total) },
        None => core::ptr::null_mut(),
    }
}

/// Frees a block; null is ignored. A pointer tinymalloc did not return, or a
/// block already free, is reported and the process aborts.
///
/// The mode needs no test here: secure mode's small segments are marked
/// apart in the chunk map, so `is_small` fails for them and they reach
/// `free_other`, which tests it.
///
/// # Safety
/// `p` must not be used after this call.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    if segmap::is_small(p as usize) {
        // SAFETY: the chunk map says p lies in a default-mode small segment.
        unsafe { segment::free(p, Op::Free) }
    } else {
        // SAFETY: forwarded contract.
        unsafe { free_other(p) }
    }
}

/// `free` of anything but a block of a default-mode small segment.
#[inline(never)]
unsafe fn free_other(p: *mut u8) {
    if secure::check() {
        // SAFETY: forwarded contract.
        return unsafe { secure::free(p, Op::Free) };
    }
    if !p.is_null() {
        // SAFETY: p is not in a small segment.
        unsafe { free_big(p, Op::Free) }
    }
}

/// Frees a block whose size and alignment the caller states (C23
/// `free_sized`, `free_aligned_sized`, C++ sized delete). A size or alignment
/// that cannot belong to the block is reported and the process aborts.
///
/// # Safety
/// `p` must not be used after this call.
pub unsafe fn free_sized(p: *mut u8, size: usize, align: usize) {
    if secure::check() {
        // SAFETY: forwarded contract.
        return unsafe { secure::free_sized(p, size, align) };
    }
    if p.is_null() {
        return;
    }
    // SAFETY: usable_of validates the pointer.
    let usable = unsafe { usable_of(p, Op::FreeSized) };
    check_sized(p, usable, size, align);
    // SAFETY: validated above.
    unsafe { free_op(p, Op::FreeSized) }
}

/// Aborts with a wrong-size report unless a block of `usable` bytes at `p`
/// can be the one asked for with `size` and `align`. A block is never more
/// than twice (plus a small rounding) the size it was asked with, except
/// when a larger alignment rounded it up, or a small block (<= 64 B) kept
/// its place when realloc shrank it.
pub(crate) fn check_sized(p: *mut u8, usable: usize, size: usize, align: usize) {
    let align_ok = align.is_power_of_two() && (p as usize).is_multiple_of(align);
    let plausible = size <= usable
        && (align > MIN_ALIGN || usable <= 64 || size.saturating_mul(2) + 2 * MIN_ALIGN >= usable);
    if !align_ok || !plausible {
        crate::error::fatal(Op::FreeSized, crate::error::Fault::WrongSize, p as usize);
    }
}

/// Resizes a block, in place when it can. `p` null behaves as `malloc`.
/// A size of 0 returns the smallest block (the C layer applies glibc's
/// `realloc(p, 0)` rule). On failure returns null and `p` is untouched.
///
/// # Safety
/// `p` is null or a live block of this allocator; after a non-null return
/// only the returned pointer may be used.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { realloc_aligned(p, size, MIN_ALIGN) }
}

/// `realloc` keeping an alignment of `align` (a power of two).
///
/// # Safety
/// As [`realloc`].
pub unsafe fn realloc_aligned(p: *mut u8, size: usize, align: usize) -> *mut u8 {
    if secure::check() {
        // SAFETY: forwarded contract.
        return unsafe { secure::realloc_aligned(p, size, align) };
    }
    if p.is_null() {
        // SAFETY: plain allocation.
        return unsafe { malloc_aligned(size, align) };
    }
    if !align.is_power_of_two() {
        return core::ptr::null_mut();
    }
    let aligned = (p as usize).is_multiple_of(align);
    if segmap::is_small(p as usize) {
        // The common case on its own (a block of a default-mode small
        // segment: one map test, one validation), about 50 instructions
        // fewer than the general lookup below.
        // SAFETY: the chunk map says p lies in such a segment.
        let Some(usable) = (unsafe { segment::usable(p) }) else {
            crate::error::fatal(Op::Realloc, crate::error::Fault::Invalid, p as usize)
        };
        if aligned && size <= usable && (size >= usable / 2 || usable <= 64) {
            return p;
        }
        // SAFETY: p is a validated live block of `usable` bytes.
        return unsafe { realloc_move(p, size, align, usable) };
    }
    let kind = segmap::kind_of(p as usize);
    // SAFETY: validates p (aborting on a bad pointer) and returns its size.
    let usable = unsafe { usable_of(p, Op::Realloc) };
    if aligned {
        if size <= usable && (size >= usable / 2 || kind == Kind::Small && usable <= 64) {
            return p;
        }
        // SAFETY: p is a validated live block of that kind.
        let done = unsafe {
            match kind {
                Kind::Large => large::resize_in_place(p, size),
                Kind::None | Kind::Huge | Kind::Guarded => huge::resize_in_place(p, size),
                Kind::Small => false,
            }
        };
        if done {
            return p;
        }
        if kind != Kind::Small && kind != Kind::Large && size > crate::large::LARGE_MAX {
            // A huge block growing or shrinking: move its pages, no copy.
            // SAFETY: p is a validated live huge block.
            let q = unsafe { huge::realloc_move(p, size) };
            if !q.is_null() {
                return q;
            }
        }
    }
    // SAFETY: forwarded: p is a validated live block of `usable` bytes.
    unsafe { realloc_move(p, size, align, usable) }
}

/// `realloc` into a new block: allocate, copy, free the old one (left
/// untouched, and NULL returned, when the allocation fails).
///
/// # Safety
/// `p` is a validated live block of `usable` bytes; `align` is a power of
/// two.
unsafe fn realloc_move(p: *mut u8, size: usize, align: usize, usable: usize) -> *mut u8 {
    // SAFETY: a fresh allocation.
    let q = unsafe { malloc_aligned(size, align) };
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks hold at least min(size, usable) bytes and are
    // distinct live blocks.
    unsafe { core::ptr::copy_nonoverlapping(p, q, size.min(usable)) };
    // SAFETY: p was validated by the caller and is freed once.
    unsafe { free_op(p, Op::Realloc) };
    q
}

/// The number of usable bytes in the block at `p` (0 for null). A pointer
/// tinymalloc did not return is reported and the process aborts.
///
/// # Safety
/// `p` is null or a pointer the caller believes is a live block.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    if secure::check() {
        // SAFETY: forwarded contract.
        return unsafe { secure::usable_size(p) };
    }
    if p.is_null() {
        return 0;
    }
    // SAFETY: usable_of validates the pointer.
    unsafe { usable_of(p, Op::UsableSize) }
}

/// Returns free memory to the OS now (what `malloc_trim` does): purges the
/// calling thread's free pages, the arenas' caches and free large pages.
/// Returns true when something was released.
pub fn trim() -> bool {
    // Secure mode: really free the quarantined blocks first.
    let mut released = secure::on() && secure::flush();
    let h = thread::heap();
    if !h.is_null() {
        // SAFETY: h is this thread's own heap.
        released |= unsafe { heap::trim(h) };
    }
    released | crate::arena::trim_all()
}

/// True when `p` is a live block returned by tinymalloc (never aborts).
///
/// # Safety
/// Always safe to call with any address.
pub unsafe fn owns(p: *const u8) -> bool {
    if secure::check() {
        // SAFETY: any address.
        return unsafe { secure::owns(p) };
    }
    // SAFETY: lookup validates without trusting p.
    unsafe { lookup_usable(p as *mut u8).is_some() }
}

// ---------------------------------------------------------------------------

/// Large (page runs) or huge (direct mapping) allocation.
unsafe fn alloc_big(size: usize, align: usize, zero: bool) -> *mut u8 {
    let mut p = core::ptr::null_mut();
    if large::fits(size, align) {
        // SAFETY: large::fits was checked.
        p = unsafe { large::alloc(size, align, zero) };
    }
    if p.is_null() {
        // SAFETY: huge handles any size (returning null past what the OS
        // gives).
        p = unsafe { huge::alloc(size, align, zero) };
    }
    if p.is_null() {
        os::set_enomem();
    } else {
        crate::stats::note_requested(size);
    }
    p
}

/// Frees `p` after validating it, naming `op` in any report.
#[inline(always)]
pub(crate) unsafe fn free_op(p: *mut u8, op: Op) {
    if segmap::is_small(p as usize) {
        // SAFETY: the chunk map says p lies in a small segment.
        unsafe { segment::free(p, op) }
    } else if !p.is_null() {
        // SAFETY: p is not in a small segment.
        unsafe { free_big(p, op) }
    }
}

/// Frees a pointer that is not in a small segment: large, huge or invalid.
#[inline(never)]
unsafe fn free_big(p: *mut u8, op: Op) {
    if segmap::kind_of(p as usize) == Kind::Large {
        // SAFETY: the chunk map says p lies in a large segment.
        unsafe { large::free(p, op) }
    } else {
        // SAFETY: huge::free validates p against the chunk map.
        unsafe { huge::free(p, op) }
    }
}

/// Validates `p` and returns its usable size, aborting on a bad pointer.
pub(crate) unsafe fn usable_of(p: *mut u8, op: Op) -> usize {
    // SAFETY: lookup validates without trusting p.
    match unsafe { lookup_usable(p) } {
        Some(n) => n,
        None => crate::error::fatal(op, crate::error::Fault::Invalid, p as usize),
    }
}

/// The usable size of the live block at `p`, or None if `p` is not one.
pub(crate) unsafe fn lookup_usable(p: *mut u8) -> Option<usize> {
    // SAFETY: each lookup validates p against the metadata it reaches
    // through the chunk map, never reading memory tinymalloc does not own.
    unsafe {
        match segmap::kind_of(p as usize) {
            Kind::Small => segment::usable(p),
            Kind::Large => large::usable(p),
            _ => huge::usable(p),
        }
    }
}

/// Runs the one-time initialisation now (reads the options, sets up the
/// arenas). Allocates nothing; later calls do nothing. The C library calls
/// it when it is loaded, so that option warnings appear even in programs
/// that never allocate.
pub fn init() {
    thread::global_init();
}

/// Returns the OS page size (exposed for `valloc`/`pvalloc`).
pub fn page_size() -> usize {
    os::PAGE
}
