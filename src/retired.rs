//! Secure mode's freed guarded mappings (see `guard.rs`): inaccessible
//! (PROT_NONE) while they wait, first in a ring of the last `RING` frees,
//! then in a small cache from which a later block of a fitting size may
//! reuse them (with one `mprotect`, no new mapping).
//!
//! ```text
//!  free ──▶ ring[next] (RING entries, FIFO) ──▶ cache (CACHE, oldest first)
//!                                                 │ best fit   └─ full: the
//!                                                 ▼              oldest is unmapped
//!                                               alloc
//! ```
//! A mapping is *hot* when its freed pages were not purged (their stale
//! contents stay, inaccessible): hot mappings are reused with a `memset`
//! instead of page faults. At most `HOT_MAX` bytes are hot at a time;
//! beyond that a freed mapping is purged at once.
//!
//! Invariants (under `STATE`'s lock): each entry is a whole guarded mapping that no
//! live block uses, whose header says FREED and whose chunk the chunk map
//! still names Guarded; it is in at most one place; `hot_bytes` is the sum
//! of the lengths of the hot entries.

use crate::sync::{ForkPhase, Locked};

/// Frees a mapping waits through before it may be reused.
const RING: usize = 16;
/// Mappings kept for reuse after the ring.
const CACHE: usize = 32;
/// The most bytes of freed mappings whose pages are kept (not purged).
const HOT_MAX: usize = 32 << 20;

/// A freed guarded mapping.
///
/// Invariant: `c` is 0 (an empty slot) or a chunk-aligned guarded mapping of
/// `len` bytes, all inaccessible but its header page; `hot` says whether its
/// data pages still hold their (stale) contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Its address (chunk-aligned); 0 for an empty slot.
    pub c: usize,
    /// Its length.
    pub len: usize,
    /// Its pages were not purged.
    pub hot: bool,
}

const NONE: Mapping = Mapping {
    c: 0,
    len: 0,
    hot: false,
};

/// Invariant: as the module's; `cache[..ncache]` are the cached mappings,
/// oldest first, the rest empty; `next` is the ring slot written next.
struct State {
    ring: [Mapping; RING],
    next: usize,
    cache: [Mapping; CACHE],
    ncache: usize,
    hot_bytes: usize,
}

static STATE: Locked<State> = Locked::new(State {
    ring: [NONE; RING],
    next: 0,
    cache: [NONE; CACHE],
    ncache: 0,
    hot_bytes: 0,
});

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(f)
}

impl State {
    fn forget(&mut self, m: Mapping) -> Mapping {
        if m.hot {
            self.hot_bytes -= m.len;
        }
        m
    }
}

/// Whether a mapping of `len` bytes being freed may keep its pages (counts
/// it as hot when so; the caller then passes `hot: true` to [`push`]).
pub fn keep_hot(len: usize) -> bool {
    with(|st| {
        let ok = st.hot_bytes + len <= HOT_MAX;
        if ok {
            st.hot_bytes += len;
        }
        ok
    })
}

/// Files a freed mapping in the ring; the mapping leaving the ring moves
/// to the cache. Returns the mapping the full cache gives up: the caller
/// unmaps it.
pub fn push(m: Mapping) -> Option<Mapping> {
    with(|st| {
        let old = core::mem::replace(&mut st.ring[st.next], m);
        st.next = (st.next + 1) % RING;
        if old.c == 0 {
            return None;
        }
        let mut gone = None;
        if st.ncache == CACHE {
            let first = st.cache[0];
            st.cache.copy_within(1.., 0);
            st.ncache -= 1;
            gone = Some(st.forget(first));
        }
        st.cache[st.ncache] = old;
        st.ncache += 1;
        gone
    })
}

/// Takes the smallest cached mapping that `fits` accepts (given its
/// length), if any.
pub fn take(fits: impl Fn(usize) -> bool) -> Option<Mapping> {
    with(|st| {
        let i = (0..st.ncache)
            .filter(|&i| fits(st.cache[i].len))
            .min_by_key(|&i| st.cache[i].len)?;
        let m = st.cache[i];
        st.cache.copy_within(i + 1..st.ncache, i);
        st.ncache -= 1;
        Some(st.forget(m))
    })
}

/// Empties the ring and the cache, calling `release` on each mapping
/// outside the lock. True when there was one.
pub fn drain(mut release: impl FnMut(Mapping)) -> bool {
    let (ring, cache, n) = with(|st| {
        let ring = core::mem::replace(&mut st.ring, [NONE; RING]);
        let cache = core::mem::replace(&mut st.cache, [NONE; CACHE]);
        let n = core::mem::replace(&mut st.ncache, 0);
        st.hot_bytes = 0;
        (ring, cache, n)
    });
    let mut any = false;
    for m in ring.into_iter().chain(cache.into_iter().take(n)) {
        if m.c != 0 {
            any = true;
            release(m);
        }
    }
    any
}

/// Fork support: the lock is held across fork.
pub fn fork_lock(phase: ForkPhase) {
    phase.apply(STATE.lock());
}

/// Serialises the unit tests that use this module's global state.
#[cfg(test)]
pub static TEST_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    /// The state is global: tests using it take TEST_SERIAL and drain it.
    #[test]
    fn mappings_wait_in_the_ring_then_serve_from_the_cache() {
        let _g = TEST_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        drain(|_| {});
        let m = |i: usize| Mapping {
            c: (0x4000 + i) << 22,
            len: (i + 1) << 16,
            hot: false,
        };
        for i in 0..RING {
            assert_eq!(push(m(i)), None);
        }
        assert_eq!(take(|_| true), None, "nothing leaves the ring early");
        for i in RING..RING + CACHE {
            assert_eq!(push(m(i)), None);
        }
        // The cache now holds m(0) .. m(CACHE-1); one more push gives up
        // the oldest.
        assert_eq!(push(m(RING + CACHE)), Some(m(0)));
        assert_eq!(take(|len| len >= 3 << 16), Some(m(2)));
        assert!(keep_hot(1 << 20));
        let mut n = 0;
        assert!(drain(|_| n += 1));
        assert_eq!(n, RING + CACHE - 1);
        assert_eq!(with(|st| st.hot_bytes), 0);
    }
}
