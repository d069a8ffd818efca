//! Secure mode's quarantine: freed small blocks wait here, zeroed and
//! marked (see `canary.rs`), and are really freed `SLOTS` frees later.
//!
//! ```text
//!  shard = hash(thread) % SHARDS      (each with its own spin lock)
//!  ring[next] <- freed block; the block it held leaves the quarantine
//! ```
//! Invariant: each non-zero ring entry is a small block that was freed by
//! the program, is still marked in use in its page's bitmap, and appears
//! in no other entry. A block leaves the ring exactly once (evicted by a
//! later free, or drained by `trim`).

use crate::sync::{ForkPhase, Locked};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Shards (threads spread over them by their heap).
const SHARDS: usize = 8;
/// Blocks held per shard: a freed block is really freed after this many
/// more frees into its shard.
pub const SLOTS: usize = 128;

/// One shard's ring of freed blocks and the slot written next.
///
/// Invariant: `next` is below `SLOTS`; entries are 0 or quarantined blocks
/// (module doc).
struct Ring {
    slots: [usize; SLOTS],
    next: usize,
}

/// A shard on its own cache line.
#[repr(align(64))]
struct Shard(Locked<Ring>);

static SHARD: [Shard; SHARDS] = [const {
    Shard(Locked::new(Ring {
        slots: [0; SLOTS],
        next: 0,
    }))
}; SHARDS];

/// Bytes of the blocks in the quarantine: freed by the program, so not
/// counted as in use by `stats()`.
static BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of the blocks waiting in the quarantine.
pub fn bytes() -> usize {
    BYTES.load(Relaxed)
}

/// Counts `n` bytes entering (`add`) or leaving the quarantine.
pub fn count(n: usize, add: bool) {
    if add {
        BYTES.fetch_add(n, Relaxed);
    } else {
        BYTES.fetch_sub(n, Relaxed);
    }
}

/// The calling thread's shard.
fn shard() -> &'static Shard {
    let t = crate::thread::tid() as u64;
    &SHARD[(t.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 61) as usize % SHARDS]
}

/// Puts the freed block `p` in the quarantine; returns the block that
/// leaves it to be really freed (0 while the ring fills up).
pub fn push(p: usize) -> usize {
    shard().0.with(|r| {
        let old = r.slots[r.next];
        r.slots[r.next] = p;
        r.next = (r.next + 1) % SLOTS;
        old
    })
}

/// Runs `ok` on the calling thread's shard's `k` most recently quarantined
/// blocks (newest first), with the shard locked so that none of them can
/// leave meanwhile; returns the first block for which `ok` is false.
pub fn find_recent(k: usize, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
    shard().0.with(|r| {
        (1..=k.min(SLOTS))
            .map(|j| r.slots[(r.next + SLOTS - j) % SLOTS])
            .find(|&p| p != 0 && !ok(p))
    })
}

/// Empties every shard, calling `release` on each block outside the locks.
pub fn drain(mut release: impl FnMut(usize)) {
    for s in &SHARD {
        let taken = s.0.with(|r| core::mem::replace(&mut r.slots, [0; SLOTS]));
        for &p in taken.iter().filter(|&&p| p != 0) {
            release(p);
        }
    }
}

/// Fork support: every shard lock is held across fork.
pub fn fork_locks(phase: ForkPhase) {
    for s in &SHARD {
        phase.apply(s.0.lock());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_leaves_after_slots_more_frees_and_drain_empties() {
        // Addresses that are not blocks: only the ring is exercised.
        let base = 0x1000_0000usize;
        // The ring may hold entries from other tests of this binary: empty
        // it first (nothing else in this unit-test binary uses secure mode).
        drain(|_| {});
        for i in 0..SLOTS {
            assert_eq!(push(base + i * 16), 0);
        }
        assert_eq!(push(base + SLOTS * 16), base);
        let mut left = 0;
        drain(|p| {
            assert!(p > base);
            left += 1;
        });
        assert_eq!(left, SLOTS);
        assert_eq!(push(base), 0);
        drain(|_| {});
    }
}
