//! Secure mode's `malloc(0)`: a unique address in a region that is mapped
//! with no access at all, so that reading or writing the block faults,
//! while `free` still accepts it once (and reports a second free).
//!
//! ```text
//!  region (4 MiB, PROT_NONE, mapped on first use)
//!  ┌────┬────┬────┬─────────────────────────────────────┐
//!  │ 0  │ 16 │ 32 │ ...   one 16-byte slot per block     │
//!  └────┴────┴────┴─────────────────────────────────────┘
//!  live[i / 64] bit i % 64 = slot i handed out and not freed
//!  cursor: next slot to try (next fit, so a freed slot waits a full
//!  round before it is handed out again)
//! ```
//! Invariant (under `STATE`'s lock): `BASE` is 0 or the region's address, set once;
//! a slot's `live` bit is set exactly while its block is live. When every
//! slot is live, `alloc` returns null and the caller serves the request
//! as an ordinary block.

use crate::sync::{ForkPhase, Locked};
use core::sync::atomic::{AtomicUsize, Ordering};

const REGION: usize = 4 << 20;
const SLOT: usize = 16;
const SLOTS: usize = REGION / SLOT;

/// Invariant: a `live` bit is set exactly while its slot's block is live;
/// `cursor` is below `SLOTS`. Only touched under `STATE`'s lock.
struct State {
    live: [u64; SLOTS / 64],
    cursor: usize,
}

static BASE: AtomicUsize = AtomicUsize::new(0);
static STATE: Locked<State> = Locked::new(State {
    live: [0; SLOTS / 64],
    cursor: 0,
});

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(f)
}

/// Maps the inaccessible region (once); its base, or 0 on failure. Lock held.
fn region() -> usize {
    let b = BASE.load(Ordering::Acquire);
    if b != 0 {
        return b;
    }
    // Address space only; a failure here is not the caller's (it falls
    // back to an ordinary block), so errno is kept.
    let p = crate::os::reserve(REGION);
    if p.is_null() {
        return 0;
    }
    BASE.store(p as usize, Ordering::Release);
    p as usize
}

/// A fresh zero-size block, or null when the region is full or unmappable.
pub fn alloc() -> *mut u8 {
    with(|st| {
        let base = region();
        if base == 0 {
            return core::ptr::null_mut();
        }
        // Next fit from the cursor; the last round revisits the cursor's
        // word for the slots below the cursor.
        const WORDS: usize = SLOTS / 64;
        for k in 0..=WORDS {
            let w = (st.cursor / 64 + k) % WORDS;
            let mut free = !st.live[w];
            if k == 0 {
                free &= !0u64 << (st.cursor % 64);
            }
            if free == 0 {
                continue;
            }
            let i = w * 64 + free.trailing_zeros() as usize;
            st.live[w] |= 1 << (i % 64);
            st.cursor = (i + 1) % SLOTS;
            return (base + i * SLOT) as *mut u8;
        }
        core::ptr::null_mut()
    })
}

/// True when `p` lies in the region (whether or not it is a live block).
#[inline]
pub fn contains(p: usize) -> bool {
    let b = BASE.load(Ordering::Acquire);
    b != 0 && p.wrapping_sub(b) < REGION
}

/// The slot of `p` (in the region), if `p` is a slot's start.
fn slot(p: usize) -> Option<usize> {
    let off = p - BASE.load(Ordering::Acquire);
    off.is_multiple_of(SLOT).then_some(off / SLOT)
}

/// True when `p` (in the region) is a live zero-size block.
pub fn is_live(p: usize) -> bool {
    slot(p).is_some_and(|i| with(|st| st.live[i / 64] & (1 << (i % 64)) != 0))
}

/// Frees the zero-size block `p` (in the region); Err with the fault when
/// `p` is not a slot's start (invalid) or not live (double free).
pub fn free(p: usize) -> Result<(), crate::error::Fault> {
    use crate::error::Fault;
    let i = slot(p).ok_or(Fault::Invalid)?;
    with(|st| {
        let m = 1u64 << (i % 64);
        if st.live[i / 64] & m == 0 {
            return Err(Fault::DoubleFree);
        }
        st.live[i / 64] &= !m;
        Ok(())
    })
}

/// Fork support: the lock is held across fork.
pub fn fork_lock(phase: ForkPhase) {
    phase.apply(STATE.lock());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Fault;

    #[test]
    fn zero_blocks_are_unique_and_freed_once() {
        let a = alloc();
        let b = alloc();
        assert!(!a.is_null() && !b.is_null() && a != b);
        assert!(contains(a as usize) && is_live(a as usize));
        assert_eq!(free(a as usize), Ok(()));
        assert!(!is_live(a as usize));
        assert_eq!(free(a as usize), Err(Fault::DoubleFree));
        assert_eq!(free(b as usize + 1), Err(Fault::Invalid));
        // A freed slot is not handed out again at once.
        let c = alloc();
        assert!(c != a && c != b);
        assert_eq!(free(b as usize), Ok(()));
        assert_eq!(free(c as usize), Ok(()));
        assert!(!contains(&c as *const _ as usize));
    }
}
