//! Huge blocks (above 2 MiB, or aligned above 2 MiB): runs of 4 MiB chunks
//! of a region (`region.rs`: first fit, freed runs coalesce and stay warm
//! until purged), or, for blocks bigger than a region, aligned to 4 MiB or
//! more, or moved by `realloc`, one mapping each, unmapped when freed and
//! resized in place with mremap when possible.
//!
//! ```text
//!  C (4 MiB-aligned: a run's first chunk, or the mapping)
//!  │            B = C + off
//!  ┌────────┬─ ─ ─ ─ ─ ─ ─ ─ ─ ┬───────────────────────────────┐
//!  │ header │ (untouched gap)  │ block (page-rounded)          │
//!  └────────┴─ ─ ─ ─ ─ ─ ─ ─ ─ ┴───────────────────────────────┘
//!  off = max(4 KiB, align) for align < 4 MiB; else 4 MiB (and C chosen so
//!  that B is aligned). The chunk map marks C as Huge; a block's header is
//!  found at the chunk of B - 1 and must name B, so interior and foreign
//!  pointers are rejected without reading user memory.
//! ```

use crate::error::{self, fatal, Fault, Op};
use crate::region::{self, REGION_CHUNKS};
use crate::segmap::{self, Kind, CHUNK};
use crate::{os, stats};
use core::ptr::null_mut;

/// Purges the freed huge memory that is due, if any is (see
/// [`region::purge_if_due`]).
pub fn purge_if_due() {
    region::purge_if_due();
}

/// Fork support: the regions' lock is taken before fork and released after.
pub fn fork_lock(phase: crate::sync::ForkPhase) {
    region::fork_lock(phase);
}

/// Gives back the freed huge memory (the OS refused a mapping): purges it
/// and unmaps the regions without a live block. True if any was.
pub fn drop_cache() -> bool {
    region::drop_free()
}

/// Purges (`force`: all, and unmaps the regions without a live block but
/// one; else what is due) the freed huge memory.
pub fn trim(force: bool) -> bool {
    region::trim(force)
}

/// The header in the block's first page (the run's or mapping's first
/// chunk). Invariant: `block` is the live block's address; a region block
/// (`region != 0`) holds chunks `first .. first + map_len / CHUNK` of
/// region slot `region - 1`; otherwise the block is alone in a mapping of
/// `map_len` bytes starting at the header.
#[repr(C)]
struct Header {
    block: usize,
    usable: usize,
    map_len: usize,
    align: usize,
    /// Region slot + 1, or 0 for a mapping of its own.
    region: usize,
    /// First chunk of the run in its region.
    first: usize,
}

/// Where a block of `align` sits in its mapping: (offset of the block,
/// alignment of the mapping, offset modulo that alignment).
fn layout(align: usize) -> (usize, usize, usize) {
    if align < CHUNK {
        (align.max(os::PAGE), CHUNK, 0)
    } else {
        (CHUNK, align, align - CHUNK)
    }
}

/// A mapping length with up to 1/16 of slack.
fn with_slack(len: usize) -> usize {
    let grain = (len.next_power_of_two() / 16).max(os::PAGE);
    (len + grain - 1) & !(grain - 1)
}

/// `size` rounded up to whole pages (at least one); None on overflow.
fn round(size: usize) -> Option<usize> {
    let r = size.checked_add(os::PAGE - 1)? & !(os::PAGE - 1);
    (r <= isize::MAX as usize / 2).then_some(r.max(os::PAGE))
}

/// Chunks a region run needs for a block of `usable` bytes at `off`, when
/// a region can hold it.
fn chunks_for(off: usize, usable: usize) -> Option<usize> {
    let n = (off + usable).div_ceil(CHUNK);
    (n <= REGION_CHUNKS).then_some(n)
}

/// Maps `len` bytes for a block of its own (see [`os::map_aligned`]),
/// giving back cached memory and trying once more when the OS refuses;
/// null on failure or beyond the chunk map's range.
fn map_own(len: usize, align: usize, offset: usize) -> *mut u8 {
    let mut c = os::map_aligned(len, align, offset);
    if c.is_null() && crate::arena::release_cached_memory(None) {
        c = os::map_aligned(len, align, offset);
    }
    if !c.is_null() && !segmap::in_range(c as usize + len) {
        // SAFETY: just mapped, unused.
        unsafe { os::unmap(c, len) };
        return null_mut();
    }
    c
}

/// Maps a huge block of `size` bytes aligned to `align` (power of two);
/// null when out of memory. Zeroed when `zero` (fresh memory is zero
/// already; reused chunks are cleared).
///
/// # Safety
/// Always safe to call.
pub unsafe fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let Some(usable) = round(size) else {
        return null_mut();
    };
    let (off, map_align, map_off) = layout(align);
    let run = if align < CHUNK {
        chunks_for(off, usable).and_then(|n| region::take(n).map(|t| (t, n)))
    } else {
        None
    };
    let (c, len, slot, first) = match run {
        Some((t, n)) => {
            let b = t.base + off;
            if zero && t.dirty != 0 {
                // Clear the block's bytes in the chunks used before.
                let mut d = t.dirty >> t.first;
                while d != 0 {
                    let i = d.trailing_zeros() as usize;
                    d &= d - 1;
                    let lo = (t.base + i * CHUNK).max(b);
                    let hi = (t.base + (i + 1) * CHUNK).min(b + size);
                    if lo < hi {
                        // SAFETY: inside the run just taken, ours alone.
                        unsafe { core::ptr::write_bytes(lo as *mut u8, 0, hi - lo) };
                    }
                }
            }
            (t.base as *mut u8, n * CHUNK, t.region + 1, t.first)
        }
        None => {
            // A mapping of its own, with up to 1/16 of slack (address
            // space only, never touched unless used) so that a slightly
            // bigger block later grows into it in place.
            let len = with_slack(usable + off);
            let c = map_own(len, map_align, map_off);
            if c.is_null() {
                return null_mut();
            }
            stats::note_reserved(len as isize);
            stats::note_commit(len as isize);
            (c, len, 0, 0)
        }
    };
    let b = c as usize + off;
    // SAFETY: the header page is the run's or mapping's first page, ours
    // alone.
    unsafe {
        (c as *mut Header).write(Header {
            block: b,
            usable,
            map_len: len,
            align,
            region: slot,
            first,
        })
    };
    segmap::set(c as usize, Kind::Huge);
    stats::note_huge(usable as isize);
    stats::note_huge_count(1);
    b as *mut u8
}

/// The header of the huge block at `p`, if `p` is one.
fn header_of(p: *mut u8) -> Option<*mut Header> {
    let a = p as usize;
    if !a.is_multiple_of(os::PAGE) || a == 0 || segmap::kind_of(a - 1) != Kind::Huge {
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
        let fault =
            if error::was_freed(p as usize) || crate::arena::recently_freed_large(p as usize) {
                Fault::DoubleFree
            } else {
                Fault::Invalid
            };
        fatal(op, fault, p as usize);
    };
    // SAFETY: h is a live huge header.
    let Header {
        usable,
        map_len: len,
        region: slot,
        first,
        ..
    } = unsafe { h.read() };
    segmap::set(h as usize, Kind::None);
    error::remember_freed(p as usize);
    stats::note_huge(-(usable as isize));
    stats::note_huge_count(-1);
    if slot != 0 {
        region::give(slot - 1, first, len / CHUNK);
        return;
    }
    // SAFETY: the whole mapping is the block's, now free.
    unsafe { os::unmap(h as *mut u8, len) };
    stats::note_commit(-(len as isize));
    stats::note_reserved(-(len as isize));
}

/// The usable size of the huge block at `p`, if it is one.
///
/// # Safety
/// Always safe to call with any address.
pub unsafe fn usable(p: *mut u8) -> Option<usize> {
    // SAFETY: header_of validated h.
    header_of(p).map(|h| unsafe { (*h).usable })
}

/// Resizes the huge block at `p` in place: a region block takes or gives
/// back the chunks after it, a block of its own grows or shrinks its
/// mapping (mremap without moving).
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
    let Some(usable) = round(size) else {
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
        if (*h).region != 0 {
            let (slot, first, n) = ((*h).region - 1, (*h).first, (*h).map_len / CHUNK);
            let Some(n2) = chunks_for(off, usable) else {
                return false;
            };
            if n2 > n && !region::extend(slot, first, n, n2) {
                return false;
            }
            if n2 < n {
                region::give(slot, first + n2, n - n2);
            }
            (*h).map_len = n2 * CHUNK;
        } else if new_len <= (*h).map_len && new_len * 2 >= (*h).map_len {
            // The mapping already covers it (its slack).
        } else {
            if !os::remap_in_place(h as *mut u8, (*h).map_len, new_len) {
                return false;
            }
            stats::note_reserved(new_len as isize - (*h).map_len as isize);
            stats::note_commit(new_len as isize - (*h).map_len as isize);
            (*h).map_len = new_len;
        }
        stats::note_huge(usable as isize - old_usable as isize);
        (*h).usable = usable;
    }
    true
}

/// Moves the huge block at `p` to a new mapping of `size` bytes without
/// copying (mremap moves the pages). Returns the new address, or null when
/// the OS refuses (the block is then untouched).
///
/// # Safety
/// `p` is a validated live huge block.
pub unsafe fn realloc_move(p: *mut u8, size: usize) -> *mut u8 {
    let (Some(h), Some(usable)) = (header_of(p), round(size)) else {
        return null_mut();
    };
    // SAFETY: h is a live huge header.
    let Header {
        align,
        map_len: old_len,
        usable: old_usable,
        region: slot,
        first,
        ..
    } = unsafe { h.read() };
    let (off, map_align, map_off) = layout(align);
    let len = with_slack(usable + off);
    let target = map_own(len, map_align, map_off);
    if target.is_null() {
        return null_mut();
    }
    // Forget the old chunk first: once mremap has moved the pages, another
    // thread may map a segment there at once and name it in the chunk map.
    segmap::set(h as usize, Kind::None);
    // SAFETY: `h` is our whole mapping or run (a run in one kernel mapping,
    // else mremap fails); `target` is a mapping of ours that the move
    // replaces.
    if !unsafe { os::remap_to(h as *mut u8, old_len, len, target) } {
        segmap::set(h as usize, Kind::Huge);
        // SAFETY: the reservation is unused.
        unsafe { os::unmap(target, len) };
        return null_mut();
    }
    if slot != 0 {
        // The run's pages left the region: map its chunks again.
        region::refill(slot - 1, first, old_len / CHUNK);
        stats::note_commit(len as isize);
    } else {
        stats::note_reserved(-(old_len as isize));
        stats::note_commit(len as isize - old_len as isize);
    }
    stats::note_reserved(len as isize);
    let nh = target as *mut Header;
    let b = target as usize + off;
    // SAFETY: the header moved with the mapping.
    unsafe {
        (*nh).block = b;
        (*nh).usable = usable;
        (*nh).map_len = len;
        (*nh).region = 0;
        (*nh).first = 0;
    }
    segmap::set(target as usize, Kind::Huge);
    stats::note_huge(usable as isize - old_usable as isize);
    b as *mut u8
}
