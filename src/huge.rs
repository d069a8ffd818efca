//! Huge blocks (above 2 MiB, or aligned above 2 MiB): one mapping each,
//! unmapped when freed, resized in place with mremap when possible.
//!
//! ```text
//!  C (4 MiB-aligned)            B = C + off
//!  ┌────────┬─ ─ ─ ─ ─ ─ ─ ─ ─ ┬───────────────────────────────┐
//!  │ header │ (untouched gap)  │ block (page-rounded)          │
//!  └────────┴─ ─ ─ ─ ─ ─ ─ ─ ─ ┴───────────────────────────────┘
//!  off = max(4 KiB, align) for align < 4 MiB; else 4 MiB (and C chosen so
//!  that B is aligned). The chunk map marks C as Huge; a block's header is
//!  found at the chunk of B - 1 and must name B, so interior and foreign
//!  pointers are rejected without reading user memory.
//! ```

use crate::error::{self, fatal, Fault, Op};
use crate::segmap::{self, Kind, CHUNK};
use crate::{os, stats};
use core::ptr::null_mut;

/// The header in the mapping's first page.
#[repr(C)]
struct Header {
    block: usize,
    usable: usize,
    map_len: usize,
}

/// Maps a huge block of `size` bytes aligned to `align` (power of two);
/// null when out of memory. Mappings are fresh, so already zero.
///
/// # Safety
/// Always safe to call.
pub unsafe fn alloc(size: usize, align: usize, _zero: bool) -> *mut u8 {
    let Some(usable) = size.checked_add(os::PAGE - 1).map(|s| s & !(os::PAGE - 1)) else {
        return null_mut();
    };
    let usable = usable.max(os::PAGE);
    let (off, map_align, map_off) = if align < CHUNK {
        (align.max(os::PAGE), CHUNK, 0)
    } else {
        (CHUNK, align, align - CHUNK)
    };
    let Some(len) = usable.checked_add(off) else {
        return null_mut();
    };
    if len > isize::MAX as usize / 2 {
        return null_mut();
    }
    let c = os::map_aligned(len, map_align, map_off);
    if c.is_null() {
        return null_mut();
    }
    if !segmap::in_range(c as usize + len) {
        // SAFETY: just mapped, unused.
        unsafe { os::unmap(c, len) };
        return null_mut();
    }
    let b = c as usize + off;
    // SAFETY: the header page is the mapping's first page, ours alone.
    unsafe { (c as *mut Header).write(Header { block: b, usable, map_len: len }) };
    segmap::set(c as usize, Kind::Huge);
    stats::note_reserved(len as isize);
    stats::note_huge(usable as isize);
    b as *mut u8
}

/// The header of the huge block at `p`, if `p` is one.
fn header_of(p: *mut u8) -> Option<*mut Header> {
    let a = p as usize;
    if a % os::PAGE != 0 || a == 0 || segmap::kind_of(a - 1) != Kind::Huge {
        return None;
    }
    let h = ((a - 1) & !(CHUNK - 1)) as *mut Header;
    // SAFETY: the chunk map says a huge header is mapped at h.
    (unsafe { (*h).block } == a).then_some(h)
}

/// Frees a huge block (any pointer the chunk map did not place in a
/// segment comes here and is validated).
///
/// # Safety
/// `p` is non-null.
pub unsafe fn free(p: *mut u8, op: Op) {
    let Some(h) = header_of(p) else {
        let fault = if error::was_freed(p as usize) { Fault::DoubleFree } else { Fault::Invalid };
        fatal(op, fault, p as usize);
    };
    // SAFETY: h is a live huge header.
    let (usable, len) = unsafe { ((*h).usable, (*h).map_len) };
    segmap::set(h as usize, Kind::None);
    error::remember_freed(p as usize);
    // SAFETY: the whole mapping is the block's, now free.
    unsafe { os::unmap(h as *mut u8, len) };
    stats::note_reserved(-(len as isize));
    stats::note_huge(-(usable as isize));
}

/// The usable size of the huge block at `p`, if it is one.
///
/// # Safety
/// Always safe to call with any address.
pub unsafe fn usable(p: *mut u8) -> Option<usize> {
    // SAFETY: header_of validated h.
    header_of(p).map(|h| unsafe { (*h).usable })
}

/// Resizes the huge block at `p` in place (mremap without moving).
///
/// # Safety
/// `p` is a validated live block.
pub unsafe fn resize_in_place(p: *mut u8, size: usize) -> bool {
    let Some(h) = header_of(p) else {
        return false;
    };
    if size <= crate::large::LARGE_MAX {
        return false;
    }
    let Some(usable) = size.checked_add(os::PAGE - 1).map(|s| s & !(os::PAGE - 1)) else {
        return false;
    };
    // SAFETY: h is a live huge header.
    unsafe {
        let old_usable = (*h).usable;
        let off = p as usize - h as usize;
        let new_len = off + usable;
        if usable < old_usable / 2 {
            return false; // much smaller: let realloc move it to a fitting block
        }
        if !os::remap_in_place(h as *mut u8, (*h).map_len, new_len) {
            return false;
        }
        stats::note_reserved(new_len as isize - (*h).map_len as isize);
        stats::note_huge(usable as isize - old_usable as isize);
        (*h).map_len = new_len;
        (*h).usable = usable;
    }
    true
}
