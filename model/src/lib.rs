//! A model of tinymalloc's lock-free cross-thread free protocol, checked
//! with [loom](https://docs.rs/loom) (`RUSTFLAGS="--cfg loom" cargo test
//! --release -p tinymalloc-model`; without `--cfg loom` the same scenarios
//! run as a plain multi-threaded stress test).
//!
//! loom cannot check `src/` itself (the allocator uses `core` atomics and
//! raw memory), so the protocol is re-implemented here, operation for
//! operation and with the same orderings, on one segment with one page of
//! a few blocks. Each function names the code it mirrors (see README.md
//! for the table). What the model keeps:
//!
//! - the segment header atomics: `owner`, the page's `xfree` row (one word),
//!   `xpending`, `xinflight`;
//! - the freeing threads' in-flight marks (`Heap::xfreeing`): blocks 0 and
//!   1 are freed by threads with a heap, which mark their own heap; block
//!   2 (`BLOCKS - 1`) by a thread without one, which counts in
//!   `xinflight`;
//! - the owner-only state (the page's `free` row and `used`, whether the
//!   page is in use), in a loom `UnsafeCell`: loom reports any access to it
//!   that is not ordered with another (two parties believing they own it);
//! - `abandoned`, touched only under the arena lock (a loom `Mutex`);
//! - the heap's `xgen` counter and `xgen_seen`;
//! - `mapped`: false once the segment is released (cached or unmapped);
//!   every touch of the header by a freer asserts it, and loom reports a
//!   touch that races with the release.
//!
//! What the scenarios check:
//! - no free is lost and none is counted twice: every block freed is
//!   collected into the `free` row exactly once (a bit collected twice, or
//!   found in both rows, fails), once every thread is done and the party
//!   that cleans up last (the owner's next slow path, adoption, or trim) has
//!   run;
//! - no segment is released while a freer still touches it, none is
//!   released twice, and a segment whose blocks are all freed is released.
//!
//! About `SeqCst`: loom treats a `SeqCst` load or store like `AcqRel`
//! (tokio-rs/loom#180), which is weaker than C++/Rust (it lets both sides
//! of a store-buffering pattern read the old value). The protocol relies on
//! `SeqCst` exactly there (a freer's `xfree` OR then `owner` load against
//! the owner's `owner` store then `xfree` collection), so every `SeqCst`
//! operation of `src/` is modelled as `SeqCst` between two `SeqCst` fences
//! ([`sc`]), which loom does model with a total order. (That also orders
//! the surrounding relaxed accesses more than C++ promises: a relaxed load
//! placed after a `SeqCst` store in `src/` is checked as if the store were
//! a full fence, as on x86-64.)

#[cfg(loom)]
mod sync {
    pub use loom::cell::UnsafeCell;
    pub use loom::sync::atomic::{fence, AtomicU64, AtomicUsize};
    pub use loom::sync::{Arc, Mutex};
    pub use loom::thread;
}

#[cfg(not(loom))]
mod sync {
    pub use std::sync::atomic::{fence, AtomicU64, AtomicUsize};
    pub use std::sync::{Arc, Mutex};
    pub use std::thread;

    /// `std::cell::UnsafeCell` with loom's `with` / `with_mut` interface.
    #[derive(Debug)]
    pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    // SAFETY: the protocol under test guarantees exclusive access; the
    // plain build only stress-tests it (loom is what checks the claim).
    unsafe impl<T: Send> Sync for UnsafeCell<T> {}

    impl<T> UnsafeCell<T> {
        pub fn new(v: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(v))
        }
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

use std::sync::atomic::Ordering::{self, AcqRel, Acquire, Relaxed, Release, SeqCst};
use sync::{fence, AtomicU64, AtomicUsize, Mutex, UnsafeCell};
pub use sync::{thread, Arc};

/// Blocks in the model's page.
pub const BLOCKS: usize = 3;

/// A `SeqCst` operation of `src/`, given its total order (see the crate
/// documentation).
#[inline]
fn sc_op<R>(f: impl FnOnce(Ordering) -> R) -> R {
    fence(SeqCst);
    let r = f(SeqCst);
    fence(SeqCst);
    r
}

/// Owner-only page state (src/page.rs `Page`: `free` row, `used`, `bsize
/// != 0`; src/segment.rs `Segment::used_pages`).
#[derive(Debug)]
struct Owned {
    /// The page's `free` row: bit set = block free (known to the owner).
    free_row: u64,
    /// Blocks not known free.
    used: u32,
    /// The page is in use (`bsize != 0`); its retirement makes the
    /// segment empty (`used_pages == 0`).
    page_in_use: bool,
}

/// The segment (src/segment.rs `Segment`), reduced to one page.
pub struct Seg {
    /// `Segment::owner`: 0 while abandoned, else the heap's id.
    owner: AtomicUsize,
    /// The page's `xfree` row.
    xfree: AtomicU64,
    /// `Segment::xpending`.
    xpending: AtomicU64,
    /// `Segment::xinflight`.
    xinflight: AtomicU64,
    /// Owner-only (or arena-lock-only while abandoned) state.
    st: UnsafeCell<Owned>,
    /// `Segment::abandoned` (in the arena's abandoned list): lock only.
    abandoned: UnsafeCell<bool>,
    /// False once released (`arena::release_locked`).
    mapped: UnsafeCell<bool>,
    /// Releases, for the final check.
    releases: AtomicUsize,
}

/// A heap (src/heap.rs `Heap`): its `xgen` counter, `xgen_seen`, and
/// whether it owns the segment (the segment is in its lists).
pub struct Heap {
    xgen: AtomicU64,
    xgen_seen: UnsafeCell<u64>,
    owns: UnsafeCell<bool>,
}

/// Deliberate protocol bugs, to show that the model catches them
/// (tests/mutations.rs); `None` is the protocol as in `src/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The protocol of `src/`.
    None,
    /// A freer does not announce itself, neither in its heap's mark nor in
    /// `xinflight` (the bug fixed in commit cf819d5: an owner could release
    /// the segment under a freer).
    NoInflight,
    /// A freer loads `owner` before setting its `xfree` bit.
    OwnerLoadFirst,
    /// `SeqCst` operations are only `AcqRel`.
    NoSeqCst,
    /// `reclaim_frees` requires no freer at all in flight, forgetting its
    /// own mark (`quiescent` counting the caller's heap, or `mine` 0 for a
    /// thread without a heap).
    ReclaimQuiescentZero,
    /// The owner does not check `quiescent` before releasing.
    ReleaseWithoutQuiescent,
    /// A freer with a heap marks it only after setting its `xfree` bit.
    MarkAfterBit,
    /// `quiescent` looks at `xinflight` only, not at the heaps' marks.
    MarksIgnored,
    /// `reclaim_word` collects the freer's word but leaves a page it
    /// emptied in use (as if only a whole-segment tidy retired pages).
    ReclaimKeepsPage,
}

/// One segment, two heaps (ids 1 and 2), one arena lock.
pub struct World {
    mutation: Mutation,
    seg: Seg,
    /// The freeing heaps' `Heap::xfreeing` marks, one per block (block
    /// `b`'s freer; 1 = names the segment): a thread frees one block at a
    /// time, so per-block marks behave as its heap's one mark.
    marks: [AtomicUsize; BLOCKS],
    heaps: [Heap; 2],
    /// The arena lock (src/arena.rs `Arena::lock`).
    arena: Mutex<()>,
}

impl World {
    /// A segment whose page has `BLOCKS` blocks, all allocated; owned by
    /// heap 1, or abandoned (in the arena's list) when `owner` is 0.
    pub fn new(owner: usize) -> Arc<World> {
        World::with_mutation(owner, Mutation::None)
    }

    /// As [`World::new`], with a deliberate bug.
    pub fn with_mutation(owner: usize, mutation: Mutation) -> Arc<World> {
        let heap = |id: usize| Heap {
            xgen: AtomicU64::new(0),
            xgen_seen: UnsafeCell::new(0),
            owns: UnsafeCell::new(owner == id),
        };
        Arc::new(World {
            mutation,
            seg: Seg {
                owner: AtomicUsize::new(owner),
                xfree: AtomicU64::new(0),
                xpending: AtomicU64::new(0),
                xinflight: AtomicU64::new(0),
                st: UnsafeCell::new(Owned {
                    free_row: 0,
                    used: BLOCKS as u32,
                    page_in_use: true,
                }),
                abandoned: UnsafeCell::new(owner == 0),
                mapped: UnsafeCell::new(true),
                releases: AtomicUsize::new(0),
            },
            marks: [
                AtomicUsize::new(0),
                AtomicUsize::new(0),
                AtomicUsize::new(0),
            ],
            heaps: [heap(1), heap(2)],
            arena: Mutex::new(()),
        })
    }

    /// Heap `id` (1 or 2).
    pub fn heap(&self, id: usize) -> &Heap {
        &self.heaps[id - 1]
    }

    /// A `SeqCst` operation (or, mutated, an acquire / release one):
    /// `weak` is the ordering used instead.
    fn sc<R>(&self, weak: Ordering, f: impl FnOnce(Ordering) -> R) -> R {
        if self.mutation == Mutation::NoSeqCst {
            f(weak)
        } else {
            sc_op(f)
        }
    }

    /// A freer touched the segment header: it must still be mapped (and
    /// loom checks that this read is ordered with the release). Called
    /// right after each atomic operation on the header (loom switches
    /// threads only at atomic operations, so this runs at the same point
    /// of the interleaving as the operation itself), and just before the
    /// last one, the `xinflight` decrement that allows the release.
    fn touch(&self) {
        let mapped = self.seg.mapped.with(|m| unsafe { *m });
        assert!(mapped, "a freer touches a released segment");
    }

    /// Owner-only state, for the owner or the arena lock holder.
    fn owned<R>(&self, f: impl FnOnce(&mut Owned) -> R) -> R {
        self.seg.st.with_mut(|p| f(unsafe { &mut *p }))
    }

    fn abandoned(&self) -> bool {
        self.seg.abandoned.with(|p| unsafe { *p })
    }

    fn set_abandoned(&self, v: bool) {
        self.seg.abandoned.with_mut(|p| unsafe { *p = v });
    }

    // -----------------------------------------------------------------
    // The freeing side

    /// src/segment.rs `free_remote`: a thread that does not own the
    /// segment frees block `b` (block `BLOCKS - 1` by a thread without a
    /// heap).
    pub fn free_remote(&self, b: usize) {
        let s = &self.seg;
        let m = 1u64 << b;
        let orphan = b == BLOCKS - 1;
        let inflight = self.mutation != Mutation::NoInflight;
        // Announce the free first: `mark.store(seg, Relaxed)` in the
        // freer's heap, or `xinflight.fetch_add(1, SeqCst)` without one.
        if inflight {
            if orphan {
                self.sc(AcqRel, |o| s.xinflight.fetch_add(1, o));
                self.touch();
            } else if self.mutation != Mutation::MarkAfterBit {
                self.marks[b].store(1, Relaxed);
            }
        }
        let early_owner = (self.mutation == Mutation::OwnerLoadFirst).then(|| {
            let owner = self.sc(Acquire, |o| s.owner.load(o));
            self.touch();
            owner
        });
        // xfree_word(w).fetch_or(m, SeqCst); a set bit is a double free.
        let old = self.sc(AcqRel, |o| s.xfree.fetch_or(m, o));
        self.touch();
        assert_eq!(old & m, 0, "double free of block {b}");
        if self.mutation == Mutation::MarkAfterBit && !orphan {
            self.marks[b].store(1, Relaxed);
        }
        // `xpending.load(SeqCst) & pbit == 0 && xpending.fetch_or(pbit,
        // SeqCst) & pbit == 0`: the page's pending bit, set only when it is
        // clear; `first` when this freer set it (and so notifies).
        let seen = self.sc(Acquire, |o| s.xpending.load(o));
        self.touch();
        let first = seen & 1 == 0 && {
            let pend = self.sc(AcqRel, |o| s.xpending.fetch_or(1, o));
            self.touch();
            pend & 1 == 0
        };
        // owner.load(SeqCst).
        let owner = early_owner.unwrap_or_else(|| {
            let owner = self.sc(Acquire, |o| s.owner.load(o));
            self.touch();
            owner
        });
        if !inflight {
            // Without the mark the freer's protocol is otherwise the same.
            if owner == 0 {
                let _g = self.arena.lock().unwrap();
                if self.abandoned() && self.reclaim_word() && self.quiescent(0, None) {
                    self.set_abandoned(false);
                    self.release();
                }
                return;
            }
            if first {
                self.heap(owner).xgen.fetch_add(1, Release);
            }
            return;
        }
        if owner == 0 {
            // Abandoned: collect under the arena lock, which ends the mark
            // or count.
            self.reclaim_frees(b);
        } else if first {
            // (*owner).notify(): xgen.fetch_add(1, Release). Heaps are
            // never unmapped, so a stale owner is harmless.
            self.heap(owner).xgen.fetch_add(1, Release);
        }
        // The last touch: `mark.store(0, Release)`, or (owner seen)
        // `xinflight.fetch_sub(1, SeqCst)`. It is checked just before: once
        // the mark is gone the segment may rightly be released, and a
        // releaser that saw it gone is ordered after all the freer did.
        if orphan {
            if owner != 0 {
                self.touch();
                self.sc(AcqRel, |o| s.xinflight.fetch_sub(1, o));
            }
        } else if owner != 0 {
            self.touch();
            self.marks[b].store(0, Release);
        }
    }

    /// src/arena.rs `reclaim_frees`: the freer of block `b` found no owner.
    fn reclaim_frees(&self, b: usize) {
        let _g = self.arena.lock().unwrap();
        let orphan = b == BLOCKS - 1;
        let forget = self.mutation == Mutation::ReclaimQuiescentZero;
        // `abandoned && reclaim_word(seg, a, w) && quiescent(seg, counted)`,
        // `quiescent` passing over the caller's own heap.
        let (mine, me) = match (orphan, forget) {
            (true, false) => (1, None),
            (true, true) => (0, None),
            (false, false) => (0, Some(b)),
            (false, true) => (0, None),
        };
        if self.abandoned() && self.reclaim_word() && self.quiescent(mine, me) {
            // unlink_abandoned + release_locked
            self.set_abandoned(false);
            self.release();
        } else if orphan {
            self.touch();
            self.sc(AcqRel, |o| self.seg.xinflight.fetch_sub(1, o));
        } else {
            self.touch();
        }
        if !orphan {
            // The mark ends under the lock too: a freer that takes the lock
            // next must see it gone, or two last freers each leave the
            // release to the other.
            self.marks[b].store(0, Release);
        }
    }

    // -----------------------------------------------------------------
    // The collecting side

    /// src/segment.rs `quiescent`: `xinflight.load(SeqCst) == mine`, and
    /// no heap but the caller's (`me`: the freer of that block) marks the
    /// segment (`xfreeing.load(Acquire)`).
    fn quiescent(&self, mine: u64, me: Option<usize>) -> bool {
        self.sc(Acquire, |o| self.seg.xinflight.load(o)) == mine
            && (self.mutation == Mutation::MarksIgnored
                || (0..BLOCKS).all(|i| Some(i) == me || self.marks[i].load(Acquire) == 0))
    }

    /// src/segment.rs `collect_pending` with src/page.rs `Page::collect`:
    /// moves cross-thread frees into the free row. Returns how many.
    fn collect_pending(&self) -> u32 {
        let s = &self.seg;
        // `if xpending.load(Relaxed) == 0 { return }`
        if s.xpending.load(Relaxed) == 0 {
            return 0;
        }
        // `xpending.swap(0, SeqCst)`
        let pend = self.sc(AcqRel, |o| s.xpending.swap(0, o));
        if pend == 0 {
            return 0;
        }
        self.owned(|st| {
            if !st.page_in_use {
                return 0; // `if pg.bsize == 0 { continue }`
            }
            // Page::collect: `if x.load(Relaxed) & valid == 0 { continue }`,
            // then `x.fetch_and(!valid, Acquire) & valid`; a bit in both rows
            // is a double free. (The model's page has no pad bits: `valid`
            // is every bit, and that is `swap(0)`.)
            if s.xfree.load(Relaxed) == 0 {
                return 0;
            }
            let bits = s.xfree.swap(0, Acquire);
            assert_eq!(st.free_row & bits, 0, "a block collected twice");
            st.free_row |= bits;
            st.used -= bits.count_ones();
            bits.count_ones()
        })
    }

    /// src/arena.rs `reclaim_word` with src/segment.rs `collect_word`: the
    /// freer's own word of the page (the model's page has one), collected
    /// without touching `xpending`, and the page retired if that emptied
    /// it; true when the segment is empty. Lock held.
    fn reclaim_word(&self) -> bool {
        let s = &self.seg;
        self.owned(|st| {
            // `if pg.bsize == 0 || w >= pg.nwords() { return None }`
            if st.page_in_use {
                // Page::collect_word, as in `collect_pending`.
                if s.xfree.load(Relaxed) != 0 {
                    let bits = s.xfree.swap(0, Acquire);
                    assert_eq!(st.free_row & bits, 0, "a block collected twice");
                    st.free_row |= bits;
                    st.used -= bits.count_ones();
                    if bits != 0 && st.used == 0 && self.mutation != Mutation::ReclaimKeepsPage {
                        st.page_in_use = false; // segment::retire_page
                    }
                }
            }
            !st.page_in_use
        })
    }

    /// src/arena.rs `tidy_abandoned`: collect, retire the empty page;
    /// true when the segment is empty. Lock held.
    fn tidy_abandoned(&self) -> bool {
        self.collect_pending();
        self.owned(|st| {
            if st.page_in_use && st.used == 0 {
                st.page_in_use = false; // segment::retire_page
            }
            !st.page_in_use
        })
    }

    /// src/arena.rs `release_locked` (cache or unmap). Lock held.
    fn release(&self) {
        self.seg.releases.fetch_add(1, Relaxed);
        self.seg.mapped.with_mut(|m| unsafe {
            assert!(*m, "segment released twice");
            *m = false;
        });
    }

    /// src/arena.rs `abandon_segment`: heap `h`'s thread is ending.
    /// (src/heap.rs `abandon` calls it for each segment the heap owns; a
    /// segment the heap already released is in none of its lists.)
    pub fn abandon(&self, h: usize) {
        let owned = self
            .heap(h)
            .owns
            .with_mut(|o| unsafe { std::mem::replace(&mut *o, false) });
        if !owned {
            return;
        }
        // owner_tid.store(NO_OWNER, SeqCst); owner.store(null, SeqCst)
        self.sc(Release, |o| self.seg.owner.store(0, o));
        let _g = self.arena.lock().unwrap();
        if self.tidy_abandoned() && self.quiescent(0, None) {
            self.release();
            return;
        }
        self.set_abandoned(true);
    }

    /// src/arena.rs `pop_abandoned` then src/heap.rs `adopt`: heap `h`
    /// takes the abandoned segment, if it is still there. True if adopted.
    pub fn adopt(&self, h: usize) -> bool {
        {
            let _g = self.arena.lock().unwrap();
            if !self.abandoned() {
                return false;
            }
            self.set_abandoned(false); // unlink_abandoned
        }
        // owner.store(hp, SeqCst); owner_tid.store(tid, SeqCst)
        self.sc(Release, |o| self.seg.owner.store(h, o));
        self.collect_pending();
        let empty = self.owned(|st| {
            if st.page_in_use && st.used == 0 {
                st.page_in_use = false;
            }
            !st.page_in_use
        });
        // `used_pages == 0 && quiescent(seg, 0)`: release; else keep.
        if empty && self.quiescent(0, None) {
            let _g = self.arena.lock().unwrap(); // arena::release_segment
            self.release();
        } else {
            self.heap(h).owns.with_mut(|o| unsafe { *o = true });
        }
        true
    }

    /// src/heap.rs `collect_notified` (the owner's slow path): collects
    /// when `xgen` moved; `force` as `heap::trim` does (`xgen_seen - 1`).
    pub fn owner_slow_path(&self, h: usize, force: bool) {
        let hp = self.heap(h);
        let g = hp.xgen.load(Acquire);
        let seen = hp.xgen_seen.with(|p| unsafe { *p });
        if g == seen && !force {
            return;
        }
        hp.xgen_seen.with_mut(|p| unsafe { *p = g });
        if !hp.owns.with(|p| unsafe { *p }) {
            return;
        }
        // collect_segment: page_state for a page that got frees back.
        let n = self.collect_pending();
        if n > 0 {
            self.page_maybe_retired(h);
        }
    }

    /// src/heap.rs `page_state` (an empty page that is not current is
    /// retired) then `segment_changed` (an empty, quiescent segment is
    /// released).
    fn page_maybe_retired(&self, h: usize) {
        let retired = self.owned(|st| {
            if st.page_in_use && st.used == 0 {
                st.page_in_use = false;
                true
            } else {
                false
            }
        });
        if retired
            && (self.mutation == Mutation::ReleaseWithoutQuiescent || self.quiescent(0, None))
        {
            self.heap(h).owns.with_mut(|o| unsafe { *o = false });
            let _g = self.arena.lock().unwrap(); // arena::release_segment
            self.release();
        }
    }

    /// src/segment.rs `free`, owner path: heap `h` frees its own block.
    pub fn free_local(&self, h: usize, b: usize) {
        let m = 1u64 << b;
        // The double-free check reads both rows.
        assert_eq!(
            self.seg.xfree.load(Relaxed) & m,
            0,
            "double free of block {b}"
        );
        let empty = self.owned(|st| {
            assert_eq!(st.free_row & m, 0, "double free of block {b}");
            st.free_row |= m;
            st.used -= 1;
            st.used == 0
        });
        if empty {
            self.page_maybe_retired(h); // heap::page_freed
        }
    }

    /// src/arena.rs `trim_all` for an abandoned segment: tidy, release
    /// if empty and quiescent.
    pub fn trim(&self) {
        let _g = self.arena.lock().unwrap();
        if self.abandoned() && self.tidy_abandoned() && self.quiescent(0, None) {
            self.set_abandoned(false);
            self.release();
        }
    }

    // -----------------------------------------------------------------
    // Final checks (every thread joined)

    /// Checks, once every thread is done and the last cleanup ran, that
    /// exactly the blocks in `freed` were collected, none twice, and that
    /// the segment was released iff every block is free.
    pub fn check_final(&self, freed: u64, what: &str) {
        let releases = self.seg.releases.load(Relaxed);
        let all = (1u64 << BLOCKS) - 1;
        assert!(releases <= 1, "{what}: released {releases} times");
        if releases == 1 {
            assert_eq!(freed, all, "{what}: released with live blocks");
            return;
        }
        let pending = self.seg.xfree.load(Relaxed);
        self.owned(|st| {
            assert_eq!(
                st.free_row | pending,
                freed,
                "{what}: freed {freed:#b}, collected {:#b}, pending {pending:#b}",
                st.free_row
            );
            assert_eq!(
                pending, 0,
                "{what}: free of {pending:#b} not collected after the final cleanup"
            );
            assert_eq!(st.used, (all & !freed).count_ones(), "{what}: used count");
        });
        assert_ne!(
            freed, all,
            "{what}: every block is free but the segment was never released"
        );
    }
}

/// Runs `f` under loom (every interleaving, up to `LOOM_MAX_PREEMPTIONS`,
/// default 3) or, without `--cfg loom`, many times on real threads.
/// Returns the number of executions explored.
pub fn model(f: impl Fn() + Sync + Send + 'static) -> usize {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = {
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, Relaxed);
            f()
        }
    };
    #[cfg(loom)]
    {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(3);
        }
        b.check(counted);
    }
    #[cfg(not(loom))]
    {
        for _ in 0..2000 {
            counted();
        }
    }
    let n = runs.load(Relaxed);
    eprintln!("explored {n} executions");
    n
}
