//! Statistics. Per-class allocations and frees and requested bytes are
//! counted on the fast path in the thread's own heap (plain load, add and
//! store: no atomic read-modify-write, no shared cache line) and summed
//! over all heaps when read; everything else (segments, page runs,
//! mappings, purges, committed bytes) is a global atomic updated on slow
//! paths only.

use crate::size_class::{class_size, NUM_CLASSES};
use core::sync::atomic::{
    AtomicIsize, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed},
};

static RESERVED: AtomicIsize = AtomicIsize::new(0);
static SEGMENTS: AtomicIsize = AtomicIsize::new(0);
static HUGE_BYTES: AtomicIsize = AtomicIsize::new(0);
static THREADS: AtomicIsize = AtomicIsize::new(0);
static PURGED: AtomicUsize = AtomicUsize::new(0);
static PURGES: AtomicUsize = AtomicUsize::new(0);
static HUGE_COUNT: AtomicIsize = AtomicIsize::new(0);
static COMMITTED: AtomicIsize = AtomicIsize::new(0);
static LARGE_ALLOCS: AtomicU64 = AtomicU64::new(0);
static LARGE_FREES: AtomicU64 = AtomicU64::new(0);
static HUGE_ALLOCS: AtomicU64 = AtomicU64::new(0);
static HUGE_FREES: AtomicU64 = AtomicU64::new(0);
/// Bytes requested by threads that have no heap (large and huge blocks).
static ORPHAN_REQUESTED: AtomicU64 = AtomicU64::new(0);
/// Cross-thread frees by threads that have no heap of their own.
static ORPHAN_FREES: [AtomicU64; NUM_CLASSES] = [const { AtomicU64::new(0) }; NUM_CLASSES];
static ORPHAN_XFREES: AtomicU64 = AtomicU64::new(0);

/// Counts of one size class, summed over all threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Block size of the class.
    pub block_size: usize,
    /// Blocks allocated since start.
    pub allocs: u64,
    /// Blocks freed since start.
    pub frees: u64,
    /// Blocks live now (`allocs - frees`).
    pub live: u64,
}

/// A snapshot of the allocator's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of address space mapped from the OS (segments, huge regions
    /// and huge blocks' own mappings, heap metadata).
    pub reserved: usize,
    /// Bytes of the reserved space that hold, or were handed out to hold,
    /// data: pages given to blocks or metadata and not purged since, cached
    /// memory not yet purged, the chunks of huge blocks. `resident` can be
    /// lower (the OS supplies a page on first touch).
    pub committed: usize,
    /// Bytes asked for by every allocation since start (the sizes passed
    /// to malloc, before rounding to a block size).
    pub requested: u64,
    /// Large blocks allocated since start.
    pub large_allocs: u64,
    /// Large blocks freed since start.
    pub large_frees: u64,
    /// Huge blocks allocated since start.
    pub huge_allocs: u64,
    /// Huge blocks freed since start.
    pub huge_frees: u64,
    /// Small and large segments mapped and in use.
    pub segments: usize,
    /// Empty segments kept in arena caches.
    pub cached_segments: usize,
    /// Segments of exited threads still holding live blocks.
    pub abandoned_segments: usize,
    /// Bytes in live large blocks.
    pub large_in_use: usize,
    /// Bytes in live huge blocks.
    pub huge_in_use: usize,
    /// Threads with a heap.
    pub threads: usize,
    /// Arenas in use.
    pub arenas: usize,
    /// Bytes returned to the OS by purging, since start.
    pub purged: usize,
    /// Number of purge calls, since start.
    pub purges: usize,
    /// Resident memory of the process (from /proc/self/statm), bytes.
    pub resident: usize,
    /// Bytes in live small and medium blocks (block sizes, not requests).
    pub small_in_use: usize,
    /// Live large blocks.
    pub large_blocks: usize,
    /// Live huge blocks.
    pub huge_blocks: usize,
    /// Bytes in all live blocks: small, medium, large and huge.
    pub in_use: usize,
    /// Frees of small and medium blocks made by a thread other than the
    /// owner of the block's segment, since start.
    pub cross_thread_frees: u64,
    /// Per size class (index 0 unused; see `size_class.rs`).
    pub classes: [ClassStats; NUM_CLASSES],
}

/// Reads the current statistics.
pub fn stats() -> Stats {
    let (cached, abandoned) = crate::arena::counts();
    let mut classes = [ClassStats::default(); NUM_CLASSES];
    for (c, cs) in classes.iter_mut().enumerate() {
        cs.block_size = class_size(c);
        cs.frees = ORPHAN_FREES[c].load(Relaxed);
    }
    let mut cross_thread_frees = ORPHAN_XFREES.load(Relaxed);
    let mut requested = ORPHAN_REQUESTED.load(Relaxed);
    let mut large_allocs = LARGE_ALLOCS.load(Relaxed);
    let mut large_frees = LARGE_FREES.load(Relaxed);
    // Large blocks in thread caches: live for their arenas, free for the
    // program.
    let (mut cached_bytes, mut cached_blocks) = (0usize, 0usize);
    crate::thread::for_each_heap(|h| {
        cached_bytes += h.large_cache.bytes.load(Acquire);
        cached_blocks += h.large_cache.count.load(Acquire);
        cross_thread_frees += h.xfrees.load(Relaxed);
        requested += h.requested.load(Relaxed);
        large_allocs += h.large_cache.allocs.load(Relaxed);
        large_frees += h.large_cache.frees.load(Relaxed);
        for (c, cs) in classes.iter_mut().enumerate() {
            cs.allocs += h.fast.allocs[c].load(Relaxed);
            cs.frees += h.frees[c].load(Relaxed);
        }
    });
    let mut small_in_use = 0;
    for cs in classes.iter_mut() {
        // Counters are read one by one while threads run: never negative.
        cs.live = cs.allocs.saturating_sub(cs.frees);
        small_in_use += cs.live as usize * cs.block_size;
    }
    // Secure mode: blocks in the quarantine were freed by the program.
    let small_in_use = small_in_use.saturating_sub(crate::secure::quarantined_bytes());
    let (large_in_use, large_blocks) = crate::arena::large_totals();
    let large_in_use = large_in_use.saturating_sub(cached_bytes);
    let large_blocks = large_blocks.saturating_sub(cached_blocks);
    let huge_in_use = HUGE_BYTES.load(Relaxed).max(0) as usize;
    Stats {
        small_in_use,
        large_blocks,
        huge_blocks: HUGE_COUNT.load(Relaxed).max(0) as usize,
        in_use: small_in_use + large_in_use + huge_in_use,
        cross_thread_frees,
        classes,
        reserved: RESERVED.load(Relaxed).max(0) as usize,
        committed: COMMITTED.load(Relaxed).max(0) as usize,
        requested,
        large_allocs,
        large_frees,
        huge_allocs: HUGE_ALLOCS.load(Relaxed),
        huge_frees: HUGE_FREES.load(Relaxed),
        segments: SEGMENTS.load(Relaxed).max(0) as usize,
        cached_segments: cached,
        abandoned_segments: abandoned,
        large_in_use,
        huge_in_use,
        threads: THREADS.load(Relaxed).max(0) as usize,
        arenas: crate::arena::count(),
        purged: PURGED.load(Relaxed),
        purges: PURGES.load(Relaxed),
        resident: resident_bytes(),
    }
}

/// Resident set size from /proc/self/statm, read without allocating.
pub fn resident_bytes() -> usize {
    let mut buf = [0u8; 128];
    // SAFETY: a NUL-terminated path and a stack buffer.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/statm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return 0;
    }
    // Second field: resident pages.
    let mut fields = buf[..n as usize].split(|&b| b == b' ');
    let _size = fields.next();
    let pages = fields
        .next()
        .map(|f| {
            f.iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0usize, |a, &d| a * 10 + (d - b'0') as usize)
        })
        .unwrap_or(0);
    pages * crate::os::PAGE
}

pub(crate) fn note_reserved(delta: isize) {
    RESERVED.fetch_add(delta, Relaxed);
}
pub(crate) fn note_segment(delta: isize) {
    SEGMENTS.fetch_add(delta, Relaxed);
}
pub(crate) fn note_huge(delta: isize) {
    HUGE_BYTES.fetch_add(delta, Relaxed);
}
/// A huge block allocated (+1) or freed (-1).
pub(crate) fn note_huge_count(delta: isize) {
    HUGE_COUNT.fetch_add(delta, Relaxed);
    if delta > 0 {
        HUGE_ALLOCS.fetch_add(1, Relaxed);
    } else {
        HUGE_FREES.fetch_add(1, Relaxed);
    }
}
/// A large block allocated (true) or freed (false) outside the thread's
/// large-block cache (which counts its own): counted on the calling
/// thread's heap, or globally when the thread has none.
pub(crate) fn note_large(alloc: bool) {
    match crate::large::my_cache() {
        Some(c) => crate::heap::bump(if alloc { &c.allocs } else { &c.frees }),
        None => {
            let c = if alloc { &LARGE_ALLOCS } else { &LARGE_FREES };
            c.fetch_add(1, Relaxed);
        }
    }
}
/// Committed bytes changed by `delta` (see `Stats::committed`).
pub(crate) fn note_commit(delta: isize) {
    COMMITTED.fetch_add(delta, Relaxed);
}
/// Counts `bytes` requested by a large or huge allocation (small ones are
/// counted on the fast path, in the heap).
pub(crate) fn note_requested(bytes: usize) {
    let h = crate::thread::heap();
    if h == crate::heap::empty_heap() {
        ORPHAN_REQUESTED.fetch_add(bytes as u64, Relaxed);
    } else {
        // SAFETY: the calling thread's own heap; only it writes its counters.
        unsafe { crate::heap::add(&(*h).requested, bytes as u64) };
    }
}

/// Counts a cross-thread free of a block of class `cls` on the freeing
/// thread's heap (or globally when it has none).
///
/// `cls` is a page descriptor's class, which only ever holds a class index
/// (below `NUM_CLASSES`; 0 when the page is unused). No call and no bounds
/// check: the cross-thread free path stays free of a stack frame.
#[inline(always)]
pub(crate) fn note_free(cls: usize) {
    debug_assert!(cls < NUM_CLASSES);
    let h = crate::thread::heap();
    // SAFETY: cls is below NUM_CLASSES (see above); a real heap is the
    // calling thread's own, and only it writes its counts.
    unsafe {
        if h == crate::heap::empty_heap() {
            ORPHAN_FREES.get_unchecked(cls).fetch_add(1, Relaxed);
            ORPHAN_XFREES.fetch_add(1, Relaxed);
        } else {
            crate::heap::bump((*h).frees.get_unchecked(cls));
            crate::heap::bump(&(*h).xfrees);
        }
    }
}
pub(crate) fn note_thread(delta: isize) {
    THREADS.fetch_add(delta, Relaxed);
}
pub(crate) fn note_purge(bytes: usize) {
    PURGED.fetch_add(bytes, Relaxed);
    PURGES.fetch_add(1, Relaxed);
}

/// Registers the at-exit statistics report when `TINYMALLOC_SHOW_STATS`
/// is on (called once, after initialisation).
pub(crate) fn register_exit_report() {
    if crate::options::get(crate::options::Opt::ShowStats) != 0 {
        // Programs that close stderr in their own exit handlers (gnulib's
        // close_stdout) would lose the table: write it to a copy of fd 2.
        // SAFETY: fcntl on fd 2 has no memory-safety preconditions.
        let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
        if fd >= 0 {
            crate::error::set_report_fd(fd);
        }
        // SAFETY: report_at_exit is a plain extern "C" fn.
        unsafe { libc::atexit(report_at_exit) };
    }
}

extern "C" fn report_at_exit() {
    print_stats();
}

/// Writes a readable statistics table to stderr without allocating.
pub fn print_stats() {
    let s = stats();
    let mut line = crate::error::LineBuf::new();
    let rows: [(&str, usize, bool); 22] = [
        ("in use", s.in_use, true),
        ("  small+medium", s.small_in_use, true),
        ("  large", s.large_in_use, true),
        ("  huge", s.huge_in_use, true),
        ("requested (total)", s.requested as usize, true),
        ("committed", s.committed, true),
        ("resident", s.resident, true),
        ("reserved", s.reserved, true),
        ("segments", s.segments, false),
        ("cached segments", s.cached_segments, false),
        ("abandoned segments", s.abandoned_segments, false),
        ("large blocks", s.large_blocks, false),
        ("  allocated (total)", s.large_allocs as usize, false),
        ("  freed (total)", s.large_frees as usize, false),
        ("huge blocks", s.huge_blocks, false),
        ("  allocated (total)", s.huge_allocs as usize, false),
        ("  freed (total)", s.huge_frees as usize, false),
        ("threads", s.threads, false),
        ("arenas", s.arenas, false),
        ("purged", s.purged, true),
        ("purges", s.purges, false),
        ("cross-thread frees", s.cross_thread_frees as usize, false),
    ];
    crate::error::write_stderr(b"tinymalloc statistics\n");
    for (name, v, bytes) in rows {
        line.clear();
        line.push(b"  ");
        line.push(name.as_bytes());
        pad(&mut line, 22);
        if bytes {
            line.push_size(v);
        } else {
            line.push_dec(v);
        }
        line.push(b"\n");
        crate::error::write_stderr(line.as_bytes());
    }
    crate::error::write_stderr(b"  class     allocs          frees           live\n");
    for cs in s.classes.iter().filter(|c| c.allocs > 0) {
        line.clear();
        line.push(b"  ");
        let start = line.as_bytes().len();
        line.push_size(cs.block_size);
        pad(&mut line, start + 10);
        for (k, v) in [cs.allocs, cs.frees, cs.live].into_iter().enumerate() {
            let start = line.as_bytes().len();
            line.push_dec(v as usize);
            if k < 2 {
                pad(&mut line, start + 16);
            }
        }
        line.push(b"\n");
        crate::error::write_stderr(line.as_bytes());
    }
}

/// Pads the line with spaces up to `width` bytes.
fn pad(line: &mut crate::error::LineBuf, width: usize) {
    while line.as_bytes().len() < width {
        line.push(b" ");
    }
}
