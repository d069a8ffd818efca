//! Regions: address space reserved for huge blocks, handed out in runs of
//! 4 MiB chunks, first fit, so that freed runs coalesce with their free
//! neighbours and the next huge block reuses the lowest (warm) memory.
//!
//! ```text
//!  region (256 MiB, one mapping, 4 MiB-aligned): 64 chunks, one bit each
//!  ┌────┬────┬────┬────┬────┬────┬────┬────┬─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ┬────┐
//!  │ A  │ A  │ A  │ .d │ .d │ B  │ B  │ .d │ .   .   .   .   .   . │ .  │
//!  └────┴────┴────┴────┴────┴────┴────┴────┴─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ┴────┘
//!  used:  A and B (live blocks)   .d: free, dirty (resident, not purged)
//!  .: free, clean (never touched, or purged: reads zero)
//! ```
//! A request for n chunks takes the lowest run of n free chunks of the
//! first region that has one. Freed chunks stay resident until their purge
//! deadline (`options::ARENA_PURGE_MULT` times the purge delay) or until
//! more than [`DIRTY_MAX`] bytes wait, when the highest-addressed ones go
//! first (first fit reuses the low ones). A run that reuses chunks used
//! before is advised transparent huge pages (a reused buffer is usually
//! filled densely again: one fault per 2 MiB instead of 512), and so is
//! every run once the program has freed a huge block, or once it needs a
//! second region; a program's first buffers are not, so that one touching
//! a fresh buffer sparsely does not get 2 MiB resident per byte it touches
//! (`xz`'s match finder).
//!
//! The huge workload run alone, 1 thread (two live blocks of 2-64 MiB): the
//! separate cached mappings this replaced faulted 290 transparent huge
//! pages per run (each freshly zeroed: about 210 µs per 2 MiB here), as
//! their pieces could not be joined again; regions fault 72-74, mimalloc,
//! whose arenas coalesce too, 65.

use crate::segmap::{self, CHUNK};
use crate::sync::Locked;
use crate::{options, os, stats};
use core::sync::atomic::{AtomicU64, Ordering};

/// Chunks per region: one `u64` of bits each.
pub const REGION_CHUNKS: usize = 64;
/// Bytes per region.
pub const REGION_SIZE: usize = REGION_CHUNKS * CHUNK;
/// Regions at most (8 GiB of huge blocks; beyond, blocks get mappings of
/// their own).
const MAX_REGIONS: usize = 32;
/// At most this many freed bytes stay resident (not purged) before their
/// deadline. 64 MiB: the huge workload's peak RSS stays at or below
/// mimalloc's at 1, 2 and 8 threads.
const DIRTY_MAX: usize = 64 << 20;

/// One region. Invariants (under `REGIONS`' lock): `base` is 0 (slot
/// unused) or a `REGION_SIZE` range reserved by [`take`]; `used`, `dirty`
/// and `touched` are subsets of `ours`; `used & dirty == 0`; `advised` is a
/// subset of `touched`; `due[i]` is meaningful for dirty chunks only.
#[derive(Clone, Copy)]
struct Region {
    base: usize,
    /// Chunks mapped by us. A chunk whose pages moved away (`mremap` of a
    /// block out of the region) is mapped again at once; if another
    /// mapping took its place meanwhile, it is no longer ours.
    ours: u64,
    /// Chunks of live blocks.
    used: u64,
    /// Free chunks with resident pages (not purged since their last use).
    dirty: u64,
    /// Chunks that were part of a block since they were last mapped.
    touched: u64,
    /// Chunks advised transparent huge pages.
    advised: u64,
    /// Purge deadline of each dirty chunk (ms, `u64::MAX`: never).
    due: [u64; REGION_CHUNKS],
}

const EMPTY: Region = Region {
    base: 0,
    ours: 0,
    used: 0,
    dirty: 0,
    touched: 0,
    advised: 0,
    due: [0; REGION_CHUNKS],
};

/// All regions. `n`: slots in use from the start (a slot below `n` may be
/// empty after [`drop_free`]); `dirty_bytes`: bytes of dirty chunks.
struct Regions {
    r: [Region; MAX_REGIONS],
    n: usize,
    dirty_bytes: usize,
    /// Bytes of used chunks, now and at most since the start.
    used_bytes: usize,
    peak_used: usize,
    /// A huge block was freed since the start: the program recycles huge
    /// memory, and every run is advised transparent huge pages.
    recycled: bool,
}

static REGIONS: Locked<Regions> = Locked::new(Regions {
    r: [EMPTY; MAX_REGIONS],
    n: 0,
    dirty_bytes: 0,
    used_bytes: 0,
    peak_used: 0,
    recycled: false,
});

/// The earliest purge deadline of a dirty chunk, 0 when none: read without
/// the lock by [`purge_if_due`].
static NEXT_DUE: AtomicU64 = AtomicU64::new(0);

/// Bits `i .. i + n` (n >= 1, i + n <= 64).
pub fn mask(i: usize, n: usize) -> u64 {
    let ones = if n >= 64 { !0 } else { (1u64 << n) - 1 };
    ones << i
}

/// The lowest `i` such that bits `i .. i + n` of `free` are all set.
fn first_run(free: u64, n: usize) -> Option<usize> {
    if n == 0 || n > REGION_CHUNKS {
        return None;
    }
    // Bit i of `starts` stays set while bits i .. i + k are all free.
    let mut starts = free;
    let mut k = 1;
    while k < n && starts != 0 {
        let step = (n - k).min(k);
        starts &= starts >> step;
        k += step;
    }
    // Runs must not wrap past bit 63: the shifts bring in zeros, so a set
    // bit i has bits i .. i + n all inside the word.
    (starts != 0).then(|| starts.trailing_zeros() as usize)
}

/// Calls `f(i, len)` for each run of set bits of `m`, lowest first.
fn for_runs(mut m: u64, mut f: impl FnMut(usize, usize)) {
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        let len = (!(m >> i)).trailing_zeros() as usize;
        f(i, len);
        m &= !mask(i, len);
    }
}

/// A run of chunks taken by [`take`].
pub struct Taken {
    /// Address of the run's first chunk.
    pub base: usize,
    /// Region slot.
    pub region: usize,
    /// Chunks that were dirty (their bytes are not known zero).
    pub dirty: u64,
    /// First chunk index within the region.
    pub first: usize,
}

impl Regions {
    /// Accounts for `delta` bytes of chunks becoming used (or free).
    fn note_used(&mut self, delta: isize) {
        self.used_bytes = self.used_bytes.wrapping_add_signed(delta);
        self.peak_used = self.peak_used.max(self.used_bytes);
    }

    /// Purges the given dirty chunks of region `k`, run by run.
    fn purge_chunks(&mut self, k: usize, mut m: u64) {
        let r = &mut self.r[k];
        m &= r.dirty;
        r.dirty &= !m;
        self.dirty_bytes -= m.count_ones() as usize * CHUNK;
        stats::note_commit(-((m.count_ones() as usize * CHUNK) as isize));
        for_runs(m, |i, len| {
            // SAFETY: free chunks of ours: no live block, mapped by us.
            unsafe { os::purge((r.base + i * CHUNK) as *mut u8, len * CHUNK) };
        });
    }

    /// Marks the free chunks `m` of region `k` used; returns those that
    /// were dirty, and whether the run is to be advised transparent huge
    /// pages (`want`, unless all of it already is).
    fn claim(&mut self, k: usize, m: u64, want: bool) -> (u64, bool) {
        let r = &mut self.r[k];
        let dirty = r.dirty & m;
        r.used |= m;
        r.dirty &= !m;
        r.touched |= m;
        let advise = want && r.advised & m != m;
        if advise {
            r.advised |= m;
        }
        let n = m.count_ones() as usize;
        self.dirty_bytes -= dirty.count_ones() as usize * CHUNK;
        self.note_used((n * CHUNK) as isize);
        stats::note_commit(((n - dirty.count_ones() as usize) * CHUNK) as isize);
        (dirty, advise)
    }

    /// Purges what is due (all dirty chunks when `force`), then the highest
    /// dirty chunks while more than `DIRTY_MAX` bytes wait. Recomputes
    /// [`NEXT_DUE`]. True if anything was purged.
    fn purge(&mut self, force: bool) -> bool {
        let now = if force { u64::MAX } else { os::now_ms() };
        let mut any = false;
        for k in 0..self.n {
            let r = &self.r[k];
            let mut due = 0u64;
            let mut d = r.dirty;
            while d != 0 {
                let i = d.trailing_zeros() as usize;
                d &= d - 1;
                if r.due[i] <= now {
                    due |= 1 << i;
                }
            }
            if due != 0 {
                self.purge_chunks(k, due);
                any = true;
            }
        }
        // Resident chunks (used and dirty) stay within the most ever used
        // at once, or `DIRTY_MAX` above what is used now.
        let cap = DIRTY_MAX.max(self.peak_used - self.used_bytes);
        'over: for k in (0..self.n).rev() {
            while self.dirty_bytes > cap {
                let d = self.r[k].dirty;
                if d == 0 {
                    continue 'over;
                }
                self.purge_chunks(k, 1 << (63 - d.leading_zeros()));
                any = true;
            }
        }
        let mut next = 0u64;
        for r in &self.r[..self.n] {
            let mut d = r.dirty;
            while d != 0 {
                let i = d.trailing_zeros() as usize;
                d &= d - 1;
                if r.due[i] != u64::MAX && (next == 0 || r.due[i] < next) {
                    next = r.due[i];
                }
            }
        }
        NEXT_DUE.store(next, Ordering::Relaxed);
        any
    }

    /// Reserves a new region; its slot, or None.
    fn grow(&mut self) -> Option<usize> {
        let k = (0..self.n)
            .find(|&k| self.r[k].base == 0)
            .or((self.n < MAX_REGIONS).then_some(self.n))?;
        let base = os::map_aligned(REGION_SIZE, CHUNK, 0);
        if base.is_null() {
            return None;
        }
        if !segmap::in_range(base as usize + REGION_SIZE) {
            // SAFETY: just mapped, unused.
            unsafe { os::unmap(base, REGION_SIZE) };
            return None;
        }
        stats::note_reserved(REGION_SIZE as isize);
        self.r[k] = Region {
            base: base as usize,
            ours: !0,
            ..EMPTY
        };
        self.n = self.n.max(k + 1);
        Some(k)
    }
}

/// Takes the lowest run of `n` free chunks (reserving a region when none
/// has one); None when `n` is more than a region holds or no region can be
/// reserved. The run's chunks are committed from now on; it is advised
/// transparent huge pages when it reuses chunks used before, once the
/// program has freed a huge block, or when it lies past the first region
/// (the program then holds 256 MiB of huge blocks: the huge workload at 8
/// threads faulted 20,600 4 KiB pages per run here before, 4,000 since).
pub fn take(n: usize) -> Option<Taken> {
    if n == 0 || n > REGION_CHUNKS {
        return None;
    }
    let (t, advise) = REGIONS.with(|g| {
        g.purge(false);
        let found = (0..g.n)
            .filter(|&k| g.r[k].base != 0)
            .find_map(|k| first_run(g.r[k].ours & !g.r[k].used, n).map(|i| (k, i)));
        let (k, i) = match found {
            Some(f) => f,
            None => (g.grow()?, 0),
        };
        let m = mask(i, n);
        let want = g.r[k].touched & m != 0 || g.recycled || k > 0;
        let (dirty, advise) = g.claim(k, m, want);
        Some((
            Taken {
                base: g.r[k].base + i * CHUNK,
                region: k,
                dirty,
                first: i,
            },
            advise,
        ))
    })?;
    if advise {
        // SAFETY: the run is ours, taken above.
        unsafe { os::advise_thp(t.base as *mut u8, n * CHUNK, true) };
    }
    Some(t)
}

/// Grows the run at chunk `first` of region `k` from `n` to `n2` chunks in
/// place, if the chunks after it are free; true on success.
pub fn extend(k: usize, first: usize, n: usize, n2: usize) -> bool {
    if first + n2 > REGION_CHUNKS {
        return false;
    }
    let (ok, advise, base) = REGIONS.with(|g| {
        let m = mask(first + n, n2 - n);
        let r = &g.r[k];
        if r.ours & !r.used & m != m {
            return (false, false, 0);
        }
        // The block's chunks keep one advice (a move out of the region
        // needs the block in one kernel mapping).
        let want = r.advised & mask(first, 1) != 0;
        let base = r.base + (first + n) * CHUNK;
        let (_, advise) = g.claim(k, m, want);
        (true, advise, base)
    });
    if advise {
        // SAFETY: the chunks are ours, taken above.
        unsafe { os::advise_thp(base as *mut u8, (n2 - n) * CHUNK, true) };
    }
    ok
}

/// Gives back chunks `first .. first + n` of region `k` (freed: resident
/// until purged).
pub fn give(k: usize, first: usize, n: usize) {
    let delay = options::purge_delay_ms();
    REGIONS.with(|g| {
        let m = mask(first, n);
        let due = match delay {
            d if d < 0 => u64::MAX,
            0 => 0,
            d => os::now_ms() + d as u64 * options::ARENA_PURGE_MULT,
        };
        g.recycled = true;
        let r = &mut g.r[k];
        r.used &= !m;
        r.dirty |= m;
        for d in &mut r.due[first..first + n] {
            *d = due;
        }
        g.dirty_bytes += n * CHUNK;
        g.note_used(-((n * CHUNK) as isize));
        if delay == 0 {
            g.purge_chunks(k, m);
        }
        g.purge(false);
    });
}

/// Chunks `first .. first + n` of region `k`, whose pages a move took away
/// (the range is unmapped): maps them again (zero, unused), or, when
/// another mapping took their place meanwhile, forgets them.
pub fn refill(k: usize, first: usize, n: usize) {
    REGIONS.with(|g| {
        let m = mask(first, n);
        let r = &mut g.r[k];
        let at = r.base + first * CHUNK;
        let ok = os::map_fixed_noreplace(at as *mut u8, n * CHUNK);
        r.used &= !m;
        r.touched &= !m;
        r.advised &= !m;
        if !ok {
            r.ours &= !m;
            stats::note_reserved(-((n * CHUNK) as isize));
        }
        g.note_used(-((n * CHUNK) as isize));
        stats::note_commit(-((n * CHUNK) as isize));
    });
}

/// Purges the dirty chunks that are due, if any is: called from the slow
/// paths of small and large allocation, so that freed huge memory goes back
/// even when the program makes no more huge allocations. One relaxed load
/// when nothing waits.
pub fn purge_if_due() {
    let due = NEXT_DUE.load(Ordering::Relaxed);
    if due != 0 && os::now_ms() >= due {
        REGIONS.try_with(|g| g.purge(false));
    }
}

/// Purges every dirty chunk (`force`) or what is due; with `force`, also
/// unmaps every region without a live block but the first such (kept,
/// purged, for the next huge block). True if anything was given back.
pub fn trim(force: bool) -> bool {
    REGIONS.with(|g| {
        let any = g.purge(force);
        if force {
            unmap_free(g, true) | any
        } else {
            any
        }
    })
}

/// Gives back all it can (the OS refused a mapping): purges every dirty
/// chunk and unmaps every region without a live block. True if any was.
pub fn drop_free() -> bool {
    REGIONS.with(|g| {
        let any = g.purge(true);
        unmap_free(g, false) | any
    })
}

/// Unmaps the regions without a live block (all purged), but the first
/// when `keep_one`. True if any was.
fn unmap_free(g: &mut Regions, mut keep_one: bool) -> bool {
    let mut any = false;
    for k in 0..g.n {
        let r = g.r[k];
        if r.base == 0 || r.used != 0 {
            continue;
        }
        if keep_one {
            keep_one = false;
            continue;
        }
        for_runs(r.ours, |i, len| {
            // SAFETY: chunks of ours with no live block (and not dirty:
            // purged above, so nothing is counted committed).
            unsafe { os::unmap((r.base + i * CHUNK) as *mut u8, len * CHUNK) };
        });
        stats::note_reserved(-((r.ours.count_ones() as usize * CHUNK) as isize));
        g.r[k] = EMPTY;
        any = true;
    }
    while g.n > 0 && g.r[g.n - 1].base == 0 {
        g.n -= 1;
    }
    any
}

/// Fork support: the regions' lock is taken before fork and released
/// after.
pub fn fork_lock(phase: crate::sync::ForkPhase) {
    phase.apply(REGIONS.lock());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_finds_the_lowest_fitting_run() {
        assert_eq!(first_run(!0, 64), Some(0));
        assert_eq!(first_run(!0, 65), None);
        assert_eq!(first_run(0, 1), None);
        assert_eq!(first_run(0b1011_0110, 2), Some(1));
        assert_eq!(first_run(0b1011_0110, 3), None);
        assert_eq!(first_run(0b1111_0110, 3), Some(4));
        assert_eq!(first_run(1 << 63, 1), Some(63));
        assert_eq!(first_run(1 << 63, 2), None);
        // Against a plain scan, for many masks and lengths.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let free = x | (x >> 1) | (x >> 3);
            for n in 1..=64 {
                let plain = (0..=64 - n).find(|&i| free & mask(i, n) == mask(i, n));
                assert_eq!(first_run(free, n), plain, "{free:#x} {n}");
            }
        }
    }

    #[test]
    fn for_runs_visits_each_run() {
        let mut seen = [(0, 0); 4];
        let mut n = 0;
        for_runs(0b1110_0110 | 1 << 63, |i, len| {
            seen[n] = (i, len);
            n += 1;
        });
        assert_eq!(&seen[..n], &[(1, 2), (5, 3), (63, 1)]);
        for_runs(0, |_, _| panic!("no run in 0"));
        let mut all = (0, 0);
        for_runs(!0, |i, len| all = (i, len));
        assert_eq!(all, (0, 64));
    }

    #[test]
    fn masks() {
        assert_eq!(mask(0, 64), !0);
        assert_eq!(mask(3, 2), 0b11000);
        assert_eq!(mask(63, 1), 1 << 63);
    }
}
