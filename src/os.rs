//! OS memory: mmap, munmap, madvise, the clock and the CPU count.
//!
//! Every call here saves and restores `errno`, so that `free` (which may
//! purge or unmap) preserves the caller's `errno` as POSIX requires.

use core::ptr::null_mut;

/// The OS page size assumed throughout (x86-64 and most aarch64 Linux).
pub const PAGE: usize = 4096;

/// Saves errno on creation and restores it on drop.
struct KeepErrno(i32);

impl KeepErrno {
    fn new() -> Self {
        // SAFETY: __errno_location returns this thread's errno slot.
        KeepErrno(unsafe { *libc::__errno_location() })
    }
}

impl Drop for KeepErrno {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// Maps `size` bytes of zeroed read-write memory; null on failure.
pub fn map(size: usize) -> *mut u8 {
    map_anon(size, libc::PROT_READ | libc::PROT_WRITE)
}

/// An anonymous private mapping of `size` bytes with protection `prot`,
/// at an address the kernel picks; null on failure (`errno` kept).
fn map_anon(size: usize, prot: libc::c_int) -> *mut u8 {
    let _e = KeepErrno::new();
    // SAFETY: an anonymous private mapping at an address the kernel picks.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            size,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        null_mut()
    } else {
        p.cast()
    }
}

/// Unmaps a range this module mapped.
///
/// # Safety
/// `[p, p+size)` is a mapping (or part of one) that nothing uses any more.
pub unsafe fn unmap(p: *mut u8, size: usize) {
    if size == 0 {
        return;
    }
    let _e = KeepErrno::new();
    // SAFETY: the caller guarantees the range is ours and unused.
    unsafe { libc::munmap(p.cast(), size) };
}

/// Gives the physical pages of a range back to the OS; the range stays
/// mapped and reads as zero afterwards.
///
/// # Safety
/// `[p, p+size)` is mapped by tinymalloc and holds no live data.
pub unsafe fn purge(p: *mut u8, size: usize) {
    if size == 0 {
        return;
    }
    let _e = KeepErrno::new();
    // SAFETY: the caller guarantees the range is ours and holds nothing.
    unsafe { libc::madvise(p.cast(), size, libc::MADV_DONTNEED) };
    crate::stats::note_purge(size);
}

/// Maps `size` bytes at an address `a` with `a % align == offset % align`,
/// where `align` is a power of two multiple of [`PAGE`] and `offset` a
/// multiple of PAGE below `align`. Returns null on failure.
pub fn map_aligned(size: usize, align: usize, offset: usize) -> *mut u8 {
    let Some(total) = size.checked_add(align) else {
        return null_mut();
    };
    let base = map(total);
    if base.is_null() {
        return base;
    }
    let b = base as usize;
    // First address >= b congruent to `offset` modulo `align`.
    let start =
        (b.wrapping_sub(offset).wrapping_add(align - 1) & !(align - 1)).wrapping_add(offset);
    let start = if start < b { start + align } else { start };
    let head = start - b;
    let tail = total - head - size;
    // SAFETY: head and tail are the unused ends of the mapping just made.
    unsafe {
        unmap(base, head);
        unmap((start + size) as *mut u8, tail);
    }
    start as *mut u8
}

/// Sets `errno` to `ENOMEM`: every path that returns null for want of
/// memory calls this, so the C layer needs no test on its fast path.
#[cold]
pub fn set_enomem() {
    // SAFETY: errno is the calling thread's own.
    unsafe { *libc::__errno_location() = libc::ENOMEM };
}

/// Sets (`on`) or clears the transparent-huge-page advice of `[p, p+len)`
/// (`MADV_HUGEPAGE` / `MADV_NOHUGEPAGE`). Advised, where the system allows
/// it on request (`madvise` mode), one page fault maps 2 MiB instead of 4
/// KiB. Used for huge blocks and for large segments past an arena's first,
/// which are usually filled whole; a failure changes nothing. Each call
/// takes the process's memory-map lock for writing (page faults of every
/// thread wait meanwhile): callers advise a mapping once, not per block.
///
/// # Safety
/// `[p, p+len)` is a mapping of tinymalloc's.
pub unsafe fn advise_thp(p: *mut u8, len: usize, on: bool) {
    let _e = KeepErrno::new();
    let advice = if on {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    // SAFETY: advice only; the range is ours.
    unsafe { libc::madvise(p.cast(), len, advice) };
}

/// Maps `size` bytes of zeroed read-write memory exactly at `p`, unless
/// something is mapped there already; true on success. (A kernel older
/// than Linux 4.17 takes the flag for a hint: a mapping elsewhere is
/// undone and counts as failure.)
pub fn map_fixed_noreplace(p: *mut u8, size: usize) -> bool {
    let _e = KeepErrno::new();
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let r = unsafe {
        libc::mmap(
            p.cast(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if r == libc::MAP_FAILED {
        return false;
    }
    if r.cast::<u8>() != p {
        // SAFETY: the mapping just made, unused.
        unsafe { unmap(r.cast(), size) };
        return false;
    }
    true
}

/// Reserves `size` bytes of address space with no access (reads and writes
/// fault); null on failure.
pub fn reserve(size: usize) -> *mut u8 {
    map_anon(size, libc::PROT_NONE)
}

/// Changes the protection of the page-aligned range `[p, p+len)`; true on
/// success. `errno` is kept as it was.
///
/// # Safety
/// The range is mapped by tinymalloc and holds no live block the change
/// would cut off.
pub unsafe fn protect(p: *mut u8, len: usize, prot: libc::c_int) -> bool {
    let _e = KeepErrno::new();
    // SAFETY: as the caller guarantees.
    unsafe { libc::mprotect(p.cast(), len, prot) == 0 }
}

/// Grows or shrinks a mapping in place; true on success.
///
/// # Safety
/// `[p, p+old)` is a whole mapping of tinymalloc's.
pub unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    let _e = KeepErrno::new();
    // SAFETY: without MREMAP_MAYMOVE the mapping cannot move.
    let r = unsafe { libc::mremap(p.cast(), old, new, 0) };
    r != libc::MAP_FAILED
}

/// Moves the mapping `[p, p+old)` to `target` with size `new`, replacing
/// whatever `target` mapped; the pages move without copying. True on
/// success.
///
/// # Safety
/// `[p, p+old)` is a whole mapping of tinymalloc's; `[target, target+new)`
/// is a mapping of tinymalloc's that nothing uses.
pub unsafe fn remap_to(p: *mut u8, old: usize, new: usize, target: *mut u8) -> bool {
    let _e = KeepErrno::new();
    // SAFETY: as the caller guarantees.
    let r = unsafe {
        libc::mremap(
            p.cast(),
            old,
            new,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            target,
        )
    };
    r != libc::MAP_FAILED
}

/// Milliseconds from a monotonic clock (coarse: a vDSO read, no syscall).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The number of online CPUs (at least 1). Does not allocate.
pub fn ncpus() -> usize {
    let _e = KeepErrno::new();
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n < 1 {
        1
    } else {
        n as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_mapping_honours_alignment_and_offset() {
        for &(align, offset) in &[(1usize << 22, 0usize), (1 << 22, 4096), (1 << 24, 1 << 22)] {
            let p = map_aligned(1 << 20, align, offset);
            assert!(!p.is_null());
            assert_eq!((p as usize) % align, offset);
            // SAFETY: p maps 1 MiB of read-write memory.
            unsafe {
                p.write(7);
                p.add((1 << 20) - 1).write(9);
                assert_eq!(p.read(), 7);
                unmap(p, 1 << 20);
            }
        }
    }

    #[test]
    fn purge_zeroes_and_keeps_mapping() {
        let p = map(2 * PAGE);
        // SAFETY: p maps two pages.
        unsafe {
            p.write(42);
            purge(p, 2 * PAGE);
            assert_eq!(p.read(), 0);
            unmap(p, 2 * PAGE);
        }
    }

    #[test]
    fn errno_is_preserved() {
        // SAFETY: writing this thread's errno.
        unsafe { *libc::__errno_location() = 1234 };
        let p = map(PAGE);
        // SAFETY: p maps one page.
        unsafe { unmap(p, PAGE) };
        // SAFETY: reading errno.
        assert_eq!(unsafe { *libc::__errno_location() }, 1234);
    }
}
