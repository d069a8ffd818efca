//! The chunk map: one byte per 4 MiB chunk of the 47-bit user address space
//! (32 MiB of zero-initialised `.bss`; the OS backs only the parts touched,
//! one 4 KiB page of map per 16 GiB of address space in use).
//!
//! It answers "what does tinymalloc have at this address?" in one load,
//! without reading memory tinymalloc might not own:
//!
//! ```text
//!  addr >> 22 ──> MAP[..] = None  : not tinymalloc's (stack, static, foreign)
//!                          Small : a small segment starts at addr & !(4 MiB-1)
//!                                  (byte 1; byte 5 in secure mode, so that
//!                                  `free`'s one test sends it elsewhere)
//!                          Large : a large segment starts there
//!                          Huge  : a huge block's header starts there
//!                          Guarded: a guarded mapping's header (secure mode)
//! ```
//! Invariant: an entry is non-None exactly while the segment or huge
//! mapping starting at that chunk is mapped and owned by tinymalloc.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, Ordering};

/// log2 of the chunk (and segment) size.
pub const CHUNK_SHIFT: usize = 22;
/// Chunk and segment size: 4 MiB.
pub const CHUNK: usize = 1 << CHUNK_SHIFT;
/// Number of chunks covered: 2^47 bytes of user address space.
const ENTRIES: usize = 1 << (47 - CHUNK_SHIFT);

/// What a chunk holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Kind {
    /// Nothing of tinymalloc's.
    None = 0,
    /// The start of a small segment (size-class pages).
    Small = 1,
    /// The start of a large segment (page runs).
    Large = 2,
    /// The first chunk of a huge block's mapping (holding its header).
    Huge = 3,
    /// The first chunk of a guarded mapping (secure mode's large and huge
    /// blocks, `guard.rs`), holding its header.
    Guarded = 4,
}

/// One entry more than the address space has chunks: the last stays
/// `None`, so that `is_small` bounds its index with one compare against a
/// bound that is not a power of two (a bound of `ENTRIES` compiles to a
/// separate shift and test of the high bits).
struct Map(UnsafeCell<[u8; ENTRIES + 1]>);

// SAFETY: every access goes through AtomicU8 views of the bytes, but
// `is_small`'s byte compare in assembly, a single-byte load (atomic).
unsafe impl Sync for Map {}

static MAP: Map = Map(UnsafeCell::new([0; ENTRIES + 1]));

#[inline(always)]
fn entry(i: usize) -> &'static AtomicU8 {
    // SAFETY: i <= ENTRIES (checked by callers); the byte lives for the whole
    // program and is only ever accessed atomically.
    unsafe { AtomicU8::from_ptr((MAP.0.get() as *mut u8).add(i)) }
}

/// The kind of the chunk holding `addr` (None outside the address space).
#[inline(always)]
pub fn kind_of(addr: usize) -> Kind {
    let i = addr >> CHUNK_SHIFT;
    if i >= ENTRIES {
        return Kind::None;
    }
    match entry(i).load(Ordering::Relaxed) {
        1 | SECURE_SMALL => Kind::Small,
        2 => Kind::Large,
        3 => Kind::Huge,
        4 => Kind::Guarded,
        _ => Kind::None,
    }
}

/// The map byte of a small segment made in secure mode: `kind_of` reads it
/// as `Small`, `is_small` does not.
const SECURE_SMALL: u8 = 5;

/// True when `addr` lies in a small segment of default mode (the `free`
/// fast path's one test: a range check and one compare with the map's
/// byte in memory; secure mode's small segments fail it, so that `free`
/// needs no test of the mode).
#[inline(always)]
pub fn is_small(addr: usize) -> bool {
    let i = addr >> CHUNK_SHIFT;
    // Entry ENTRIES exists and is never written (`set` skips it).
    if i > ENTRIES {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: i <= ENTRIES, so the byte read lies in MAP. An aligned
        // byte load is atomic on x86-64 (the Relaxed load of `entry`);
        // written out so that the compare takes the byte from memory: the
        // compiler does not fold an atomic load into a `cmp`.
        unsafe {
            core::arch::asm!(
                "cmp byte ptr [{m} + {i}], {small}",
                "jne {no}",
                m = in(reg) MAP.0.get() as *const u8,
                i = in(reg) i,
                small = const Kind::Small as u8,
                no = label { return false; },
                options(nostack, readonly)
            );
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        entry(i).load(Ordering::Relaxed) == Kind::Small as u8
    }
}

/// Records that the chunk starting at `base` now holds `kind`.
pub fn set(base: usize, kind: Kind) {
    let i = base >> CHUNK_SHIFT;
    if i < ENTRIES {
        entry(i).store(kind as u8, Ordering::Release);
    }
}

/// Records that a small segment now starts at `base`, made in secure mode
/// or not.
pub fn set_small(base: usize, secure: bool) {
    let i = base >> CHUNK_SHIFT;
    if i < ENTRIES {
        let b = if secure {
            SECURE_SMALL
        } else {
            Kind::Small as u8
        };
        entry(i).store(b, Ordering::Release);
    }
}

/// True when `addr` can be recorded in the map (user half, 47 bits).
pub fn in_range(addr: usize) -> bool {
    (addr >> CHUNK_SHIFT) < ENTRIES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_addresses_are_none() {
        let local = 5u64;
        assert_eq!(kind_of(&local as *const u64 as usize), Kind::None);
        assert_eq!(kind_of(usize::MAX), Kind::None);
        assert_eq!(kind_of(0), Kind::None);
    }

    #[test]
    fn set_and_clear() {
        let base = 0x1234usize << CHUNK_SHIFT;
        set(base, Kind::Large);
        assert_eq!(kind_of(base + 12345), Kind::Large);
        set(base, Kind::None);
        assert_eq!(kind_of(base), Kind::None);
    }

    #[test]
    fn secure_small_segments_are_small_but_fail_the_free_test() {
        let base = 0x1235usize << CHUNK_SHIFT;
        set_small(base, false);
        assert!(is_small(base + 64) && kind_of(base + 64) == Kind::Small);
        set_small(base, true);
        assert!(!is_small(base + 64) && kind_of(base + 64) == Kind::Small);
        set(base, Kind::None);
        assert!(!is_small(base) && kind_of(base) == Kind::None);
    }
}
