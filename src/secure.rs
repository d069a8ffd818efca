//! Secure mode (`TINYMALLOC_SECURE=1`, or the `secure` cargo feature):
//! the checks that cost time or memory, added on top of the default
//! mode's (which stay). Every entry point of `raw.rs` tests [`check`] once
//! and, when it is true, comes here instead.
//!
//! ```text
//!  small / medium (class chosen for n + canary::PAD)
//!    malloc: random free slot of the current page; the block must be all
//!            zero (else: write after free); canary + trailer armed
//!    free:   canary checked (heap overflow; quarantined: double free),
//!            block zeroed and marked, pushed into the quarantine; the
//!            block leaving it must still be zero, then is really freed
//!  large / huge: guarded mappings (guard.rs), inaccessible once freed
//!  size 0: unique slot in an inaccessible region (zero.rs)
//!  slabs: guard pages around each small segment's pages (guard.rs)
//! ```
//! The mode is fixed before the first block exists: it is read with the
//! options at the global initialisation (`thread::global_init`), which the
//! first call of any entry point runs while the mode is still unknown; the
//! `secure` feature makes it on whatever the environment says.
//!
//! Invariant: `MODE` goes from UNKNOWN to ON or OFF once, inside the
//! global initialisation, before any block is handed out, and never
//! changes afterwards.

use crate::error::{fatal, Fault, Op};
use crate::raw::MIN_ALIGN;
use crate::segmap::{self, Kind};
use crate::segment::{self, PAGES, PAGE_SHIFT, PAGE_SIZE};
use crate::size_class::{self, MEDIUM_MAX};
use crate::{canary, guard, heap, huge, options, quarantine, raw, thread, zero};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const OFF: u8 = 0;
const UNKNOWN: u8 = 1;
const ON: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
/// The state of the random generator (splitmix64 over an atomic counter).
static RNG: AtomicU64 = AtomicU64::new(0);
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The entry points' one test: false only in default mode once it is
/// known (a compile-time `true` with the `secure` feature).
#[inline(always)]
pub fn check() -> bool {
    cfg!(feature = "secure") || MODE.load(Ordering::Relaxed) != OFF
}

/// True when secure mode is known to be on (for slow paths that add a
/// secure-mode step, such as segment set-up).
#[inline]
pub fn on() -> bool {
    MODE.load(Ordering::Relaxed) == ON
}

/// Resolves the mode (running the global initialisation if nobody has
/// yet) and returns whether it is on.
pub fn active() -> bool {
    if MODE.load(Ordering::Acquire) == UNKNOWN {
        thread::global_init();
    }
    MODE.load(Ordering::Acquire) == ON
}

/// Fixes the mode from the options (called once by the global
/// initialisation, right after the options are read, before any block
/// exists) and seeds the random generator and the canary secret.
pub fn init() {
    let on = cfg!(feature = "secure") || options::get(options::Opt::Secure) != 0;
    if on {
        let seed = seed();
        RNG.store(seed, Ordering::Relaxed);
        canary::set_key(mix(seed ^ GOLDEN));
    }
    MODE.store(if on { ON } else { OFF }, Ordering::Release);
}

/// 64 random bits from getrandom(2), or from addresses and the clock when
/// it fails; allocates nothing.
fn seed() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into the local buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), 8, libc::GRND_NONBLOCK) };
    let stack = &buf as *const _ as u64;
    let fallback =
        mix(stack ^ crate::os::now_ms().rotate_left(32) ^ (&MODE as *const AtomicU8 as u64));
    if n == 8 {
        u64::from_le_bytes(buf)
    } else {
        fallback
    }
}

/// splitmix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 64 random bits (cheap, not cryptographic).
#[inline]
pub fn rand() -> u64 {
    mix(RNG
        .fetch_add(GOLDEN, Ordering::Relaxed)
        .wrapping_add(GOLDEN))
}

// --- entry points ----------------------------------------------------
// Cold and never inlined: the default mode's entry points keep only the
// test of `check()` (no stack frame or register spills for secure mode).

/// `raw::malloc` in secure mode.
///
/// # Safety
/// As `raw::malloc`.
#[cold]
#[inline(never)]
pub unsafe fn malloc(size: usize) -> *mut u8 {
    if !active() {
        // SAFETY: the mode is now known to be off: the default path.
        return unsafe { raw::malloc(size) };
    }
    // SAFETY: MIN_ALIGN is a power of two.
    unsafe { alloc(size, MIN_ALIGN, false) }
}

/// `raw::malloc_aligned` / `raw::zalloc_aligned` (`zero`) in secure mode;
/// `align` is a power of two.
///
/// # Safety
/// As `raw::malloc_aligned`.
#[cold]
#[inline(never)]
pub unsafe fn malloc_aligned(size: usize, align: usize, zero: bool) -> *mut u8 {
    if !active() {
        // SAFETY: the default path.
        return unsafe {
            if zero {
                raw::zalloc_aligned(size, align)
            } else {
                raw::malloc_aligned(size, align)
            }
        };
    }
    // SAFETY: align is a power of two (checked by raw).
    unsafe { alloc(size, align, zero) }
}

/// `raw::free` (and the free of `free_sized`, `realloc`) in secure mode.
///
/// # Safety
/// As `raw::free`.
#[cold]
#[inline(never)]
pub unsafe fn free(p: *mut u8, op: Op) {
    if p.is_null() {
        return;
    }
    if !active() {
        // SAFETY: the default path.
        return unsafe { raw::free_op(p, op) };
    }
    let a = p as usize;
    if zero::contains(a) {
        if let Err(f) = zero::free(a) {
            fatal(op, f, a);
        }
        return;
    }
    match segmap::kind_of(a) {
        // SAFETY: the chunk map says p lies in a small segment.
        Kind::Small => unsafe { small_free(p, op) },
        Kind::Guarded => guard::free(a, op),
        // SAFETY: default huge blocks (alignment above guard::MAX_ALIGN)
        // and invalid pointers, validated (and reported) there.
        _ => unsafe { raw::free_op(p, op) },
    }
}

/// `raw::free_sized` in secure mode: the stated size is checked against
/// the requested size.
///
/// # Safety
/// As `raw::free_sized`.
#[cold]
#[inline(never)]
pub unsafe fn free_sized(p: *mut u8, size: usize, align: usize) {
    if p.is_null() {
        return;
    }
    if !active() {
        // SAFETY: the default path.
        return unsafe { raw::free_sized(p, size, align) };
    }
    // SAFETY: requested_size validates p.
    let n = unsafe { requested_size(p, Op::FreeSized) };
    raw::check_sized(p, n, size, align);
    // SAFETY: validated above.
    unsafe { free(p, Op::FreeSized) }
}

/// `raw::realloc_aligned` in secure mode: always a new block (the old one
/// checked, copied and freed).
///
/// # Safety
/// As `raw::realloc_aligned`.
#[cold]
#[inline(never)]
pub unsafe fn realloc_aligned(p: *mut u8, size: usize, align: usize) -> *mut u8 {
    if !active() {
        // SAFETY: the default path.
        return unsafe { raw::realloc_aligned(p, size, align) };
    }
    if !align.is_power_of_two() {
        return core::ptr::null_mut();
    }
    if p.is_null() {
        // SAFETY: a plain allocation.
        return unsafe { alloc(size, align, false) };
    }
    // SAFETY: validates p (aborting on a bad pointer).
    let n = unsafe { requested_size(p, Op::Realloc) };
    // SAFETY: p is a validated live block; a small one is resized in place
    // when the new size (and its padding) still fits its class well.
    if unsafe { resize_small_in_place(p, size, align) } {
        return p;
    }
    // SAFETY: a fresh allocation.
    let q = unsafe { alloc(size, align, false) };
    if q.is_null() {
        return q;
    }
    // SAFETY: p holds n readable bytes, q at least size; distinct blocks.
    unsafe { core::ptr::copy_nonoverlapping(p, q, n.min(size)) };
    // SAFETY: p was validated and is freed once.
    unsafe { free(p, Op::Realloc) };
    q
}

/// `raw::usable_size` in secure mode: the requested size (the bytes past
/// it are the canary).
///
/// # Safety
/// As `raw::usable_size`.
#[cold]
#[inline(never)]
pub unsafe fn usable_size(p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    if !active() {
        // SAFETY: the default path.
        return unsafe { raw::usable_size(p) };
    }
    // SAFETY: validates p.
    unsafe { requested_size(p, Op::UsableSize) }
}

/// `raw::owns` in secure mode (never aborts).
///
/// # Safety
/// Any address.
#[cold]
#[inline(never)]
pub unsafe fn owns(p: *const u8) -> bool {
    if !active() {
        // SAFETY: the default path.
        return unsafe { raw::owns(p) };
    }
    let a = p as usize;
    if zero::contains(a) {
        return zero::is_live(a);
    }
    match segmap::kind_of(a) {
        // SAFETY: a live small block is readable; check reads its slack.
        Kind::Small => unsafe {
            segment::usable(p as *mut u8)
                .is_some_and(|b| canary::check(p as *mut u8, b) != Err(Fault::DoubleFree))
        },
        Kind::Guarded => guard::size_of(a).is_ok(),
        // SAFETY: validates without trusting p.
        _ => unsafe { raw::lookup_usable(p as *mut u8).is_some() },
    }
}

/// Really frees every quarantined block and unmaps every freed guarded
/// mapping (`trim`); true when there was any.
pub fn flush() -> bool {
    let mut any = false;
    quarantine::drain(|q| {
        // SAFETY: q left the quarantine.
        unsafe { release(q) };
        any = true;
    });
    guard::drain() | any
}

/// Bytes of freed small blocks still waiting in the quarantine (counted as
/// free by `stats()`).
pub fn quarantined_bytes() -> usize {
    quarantine::bytes()
}

/// Fork support: every secure-mode lock is held across fork.
pub fn fork_locks(phase: crate::sync::ForkPhase) {
    quarantine::fork_locks(phase);
    zero::fork_lock(phase);
    crate::retired::fork_lock(phase);
}

// --- internals ---------------------------------------------------------

/// Allocates `size` bytes aligned to `align` (a power of two). Small
/// blocks are always zero; a large one reusing a retired mapping whose
/// pages were kept holds stale bytes unless `zero` is asked.
unsafe fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    if size == 0 && align <= MIN_ALIGN {
        let p = zero::alloc();
        if !p.is_null() {
            return p;
        }
    }
    let Some(need) = size.checked_add(canary::PAD) else {
        return core::ptr::null_mut();
    };
    let cls = if align <= MIN_ALIGN {
        (need <= MEDIUM_MAX).then(|| size_class::class_of(need))
    } else {
        size_class::aligned_class(need, align)
    };
    match cls {
        // SAFETY: the class holds need bytes aligned to `align`.
        Some(c) => unsafe { small_alloc(c, size) },
        None if align <= guard::MAX_ALIGN => guard::alloc(size, align, zero),
        // SAFETY: any size and power-of-two alignment (fresh mappings).
        None => unsafe { huge::alloc(size, align, true) },
    }
}

/// A block of class `cls` for `n` bytes: checked zero, canary armed.
unsafe fn small_alloc(cls: usize, n: usize) -> *mut u8 {
    // SAFETY: cls is a real class.
    let p = unsafe { take(cls, n) };
    if p.is_null() {
        return p;
    }
    let bsize = size_class::class_size(cls);
    // SAFETY: p is a live block of bsize bytes, ours.
    unsafe {
        if !canary::is_zero(p, bsize) {
            fatal(Op::Malloc, Fault::WriteAfterFree, p as usize);
        }
        canary::arm(p, n, bsize);
    }
    // Writes after free usually hit a block freed just before: check the
    // most recent ones now rather than only when they leave the quarantine.
    let stale = quarantine::find_recent(RECENT, |q| {
        // SAFETY: q is a quarantined block (kept in use while the shard is
        // locked), so its page descriptor gives its size.
        unsafe {
            segment::usable(q as *mut u8).is_some_and(|b| canary::head_intact(q as *mut u8, b))
        }
    });
    if let Some(q) = stale {
        fatal(Op::Malloc, Fault::WriteAfterFree, q);
    }
    p
}

/// Quarantined blocks checked by each small `malloc` (the newest of the
/// calling thread's shard).
const RECENT: usize = 2;

/// Takes a random free block of the calling thread's current page of
/// class `cls` (owner-only fields, touched by the owner like the fast
/// path); falls back to the ordinary path when that page has none or the
/// thread has no heap yet.
unsafe fn take(cls: usize, n: usize) -> *mut u8 {
    let h = thread::heap();
    if h != heap::empty_heap() {
        // SAFETY: h is the calling thread's heap; its current page is a
        // live page of this heap (or the sentinel, skipped).
        unsafe {
            let page = (*h).pages[cls];
            if page != heap::empty_page() {
                let pg = &mut *page;
                let words = pg.nwords();
                let r = rand();
                // Multiply-shift instead of division: a value below the bound.
                let w0 = (((r & 0xffff_ffff) * words as u64) >> 32) as usize;
                for k in 0..words {
                    let w = (w0 + k) % words;
                    let bits = pg.free_word(w).load(Ordering::Relaxed);
                    if bits == 0 {
                        continue;
                    }
                    let pick = ((r >> 32) * bits.count_ones() as u64) >> 32;
                    let bit = nth_set_bit(bits, pick as u32);
                    pg.free_word(w)
                        .store(bits & !(1u64 << bit), Ordering::Relaxed);
                    // Counted as the fast path counts (`heap::sync`).
                    heap::bump(&(*h).fast.allocs[cls]);
                    heap::add(&(*h).requested, n as u64);
                    return (pg.start + (w * 64 + bit as usize) * pg.bsize as usize) as *mut u8;
                }
            }
        }
    }
    // SAFETY: cls is a real class. (`alloc_class` would come back to
    // secure mode: its fast path never serves it.)
    unsafe { heap::alloc_refill(cls, n) }
}

/// The index of the `k`-th (from 0) set bit of `bits` (`k < popcount`).
fn nth_set_bit(mut bits: u64, k: u32) -> u32 {
    for _ in 0..k {
        bits &= bits - 1;
    }
    bits.trailing_zeros()
}

/// Why the small-segment address `a`, which is no live block, was given.
unsafe fn small_fault(a: usize) -> Fault {
    // SAFETY: the chunk map says a small segment is mapped there.
    let s = unsafe { &*segment::segment_of(a) };
    match s.pages[(a >> PAGE_SHIFT) & (PAGES - 1)].block_at(a & (PAGE_SIZE - 1)) {
        Some(_) => Fault::DoubleFree,
        None => Fault::Invalid,
    }
}

/// Frees a small block: canary check, zeroing, quarantine.
unsafe fn small_free(p: *mut u8, op: Op) {
    // SAFETY: the chunk map says p lies in a small segment.
    let Some(bsize) = (unsafe { segment::usable(p) }) else {
        // SAFETY: as above.
        fatal(op, unsafe { small_fault(p as usize) }, p as usize);
    };
    // SAFETY: p is a live block of bsize bytes (or a quarantined one).
    unsafe {
        if let Err(f) = canary::check(p, bsize) {
            fatal(op, f, p as usize);
        }
        canary::bury(p, bsize);
    }
    quarantine::count(bsize, true);
    let old = quarantine::push(p as usize);
    if old != 0 {
        // SAFETY: old left the quarantine.
        unsafe { release(old) };
    }
}

/// Really frees a block leaving the quarantine, after checking that
/// nothing wrote to it since it was freed.
unsafe fn release(q: usize) {
    let p = q as *mut u8;
    // SAFETY: quarantined blocks are small blocks still in use.
    let Some(bsize) = (unsafe { segment::usable(p) }) else {
        fatal(Op::Free, Fault::DoubleFree, q);
    };
    // SAFETY: the block is ours until the real free below.
    if !unsafe { canary::exhume(p, bsize) } {
        fatal(Op::Free, Fault::WriteAfterFree, q);
    }
    quarantine::count(bsize, false);
    // SAFETY: a live small block, freed once.
    unsafe { segment::free(p, Op::Free) }
}

/// Resizes the validated live block `p` in place when it is a small block
/// whose class would still be chosen for `size` (or wastes at most half):
/// the canary is armed again after the new size. True when done.
unsafe fn resize_small_in_place(p: *mut u8, size: usize, align: usize) -> bool {
    let a = p as usize;
    if zero::contains(a) || segmap::kind_of(a) != Kind::Small || !a.is_multiple_of(align) {
        return false;
    }
    // SAFETY: a live small block (validated by the caller).
    let Some(bsize) = (unsafe { segment::usable(p) }) else {
        return false;
    };
    let need = size.saturating_add(canary::PAD);
    if size == 0 || need > bsize || need <= bsize / 2 {
        return false;
    }
    // SAFETY: the block is the caller's and holds bsize >= need bytes.
    unsafe { canary::arm(p, size, bsize) };
    true
}

/// The requested size of the live block at `p`, validating it (and its
/// canary); a bad pointer is reported for `op` and the process aborts.
unsafe fn requested_size(p: *mut u8, op: Op) -> usize {
    let a = p as usize;
    if zero::contains(a) {
        if zero::is_live(a) {
            return 0;
        }
        let f = if a.is_multiple_of(16) {
            Fault::DoubleFree
        } else {
            Fault::Invalid
        };
        fatal(op, f, a);
    }
    match segmap::kind_of(a) {
        Kind::Small => {
            // SAFETY: the chunk map says p lies in a small segment.
            let Some(bsize) = (unsafe { segment::usable(p) }) else {
                // SAFETY: as above.
                fatal(op, unsafe { small_fault(a) }, a);
            };
            // SAFETY: a live (or quarantined) block of bsize bytes.
            match unsafe { canary::check(p, bsize) } {
                Ok(n) => n,
                Err(f) => fatal(op, f, a),
            }
        }
        Kind::Guarded => guard::size_of(a).unwrap_or_else(|f| fatal(op, f, a)),
        // SAFETY: validates p, reporting a bad one.
        _ => unsafe { raw::usable_of(p, op) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_set_bit_walks_the_set_bits() {
        let bits = 0b1011_0010u64;
        let got: Vec<u32> = (0..4).map(|k| nth_set_bit(bits, k)).collect();
        assert_eq!(got, [1, 4, 5, 7]);
        assert_eq!(nth_set_bit(1 << 63, 0), 63);
    }

    #[test]
    fn rand_varies() {
        let a = rand();
        let b = rand();
        assert_ne!(a, b);
    }
}
