//! Statistics, counted on slow paths only (segment, page-run and mapping
//! events), so they cost nothing on the fast path.

use core::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

static RESERVED: AtomicIsize = AtomicIsize::new(0);
static SEGMENTS: AtomicIsize = AtomicIsize::new(0);
static HUGE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LARGE_BYTES: AtomicIsize = AtomicIsize::new(0);
static THREADS: AtomicIsize = AtomicIsize::new(0);
static PURGED: AtomicUsize = AtomicUsize::new(0);
static PURGES: AtomicUsize = AtomicUsize::new(0);

/// A snapshot of the allocator's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of address space mapped from the OS (segments, huge blocks,
    /// heap metadata).
    pub reserved: usize,
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
}

/// Reads the current statistics.
pub fn stats() -> Stats {
    let (cached, abandoned) = crate::arena::counts();
    Stats {
        reserved: RESERVED.load(Relaxed).max(0) as usize,
        segments: SEGMENTS.load(Relaxed).max(0) as usize,
        cached_segments: cached,
        abandoned_segments: abandoned,
        large_in_use: LARGE_BYTES.load(Relaxed).max(0) as usize,
        huge_in_use: HUGE_BYTES.load(Relaxed).max(0) as usize,
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
        let fd = libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
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
        .map(|f| f.iter().take_while(|b| b.is_ascii_digit()).fold(0usize, |a, &d| a * 10 + (d - b'0') as usize))
        .unwrap_or(0);
    pages * crate::os::PAGE
}

pub(crate) fn note_reserved(delta: isize) {
    RESERVED.fetch_add(delta, Relaxed);
}
pub(crate) fn note_segment(delta: isize) {
    SEGMENTS.fetch_add(delta, Relaxed);
}
pub(crate) fn note_large(delta: isize) {
    LARGE_BYTES.fetch_add(delta, Relaxed);
}
pub(crate) fn note_huge(delta: isize) {
    HUGE_BYTES.fetch_add(delta, Relaxed);
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
    let rows: [(&str, usize, bool); 10] = [
        ("reserved", s.reserved, true),
        ("resident", s.resident, true),
        ("segments", s.segments, false),
        ("cached segments", s.cached_segments, false),
        ("abandoned segments", s.abandoned_segments, false),
        ("large in use", s.large_in_use, true),
        ("huge in use", s.huge_in_use, true),
        ("threads", s.threads, false),
        ("arenas", s.arenas, false),
        ("purged", s.purged, true),
    ];
    crate::error::write_stderr(b"tinymalloc statistics\n");
    for (name, v, bytes) in rows {
        line.clear();
        line.push(b"  ");
        line.push(name.as_bytes());
        for _ in name.len()..20 {
            line.push(b" ");
        }
        if bytes {
            line.push_size(v);
        } else {
            line.push_dec(v);
        }
        line.push(b"\n");
        crate::error::write_stderr(line.as_bytes());
    }
}
