//! tinymalloc soak test: a long multi-threaded churn on tinymalloc as the
//! global allocator.
//!
//! ```text
//! cargo run --release -p tinymalloc-soak -- [--minutes M | --seconds S]
//!     [--threads N] [--live-mib L] [--churn-ms C] [--seed X]
//! ```
//! (defaults: 10 minutes, 4 threads, 256 MiB of live blocks at most, one
//! worker thread ended and replaced every 250 ms).
//!
//! What runs:
//! - `N` workers allocate blocks of every size range (16 B .. 8 MiB,
//!   weighted small; some with alignments up to 2 MiB, some zeroed), fill
//!   each with a pattern derived from its id, keep about half and send the
//!   other half to a random other worker through its channel, so that those
//!   are freed (or resized, then freed) by another thread; they free,
//!   reallocate (growing and shrinking across size ranges) and re-check
//!   their own blocks. Every byte of a block is verified before it is freed
//!   or resized, and again after a resize (the kept prefix).
//! - A manager thread ends one worker every `--churn-ms` and starts a new
//!   one in its place (thread churn). An ending worker sends half of its
//!   blocks to the others, who free them after it is gone (blocks of an
//!   exited thread freed cross-thread: abandoned segments).
//! - Every second the main thread samples the test's own live bytes
//!   (the sum of the sizes of its blocks) and the process's resident memory
//!   (`/proc/self/statm`).
//!
//! It fails (exit status 1, a line starting with `soak: FAIL`) when a byte
//! does not hold what was written, an allocation returns null, live bytes
//! are not back to zero at the end, or resident memory keeps growing while
//! live memory does not: the highest RSS of the last third of the samples
//! exceeds that of the first third by more than 25% + 32 MiB while the
//! highest live bytes did not grow by more than 10%. On success it prints
//! one summary line starting with `soak: OK`.

#[global_allocator]
static A: tinymalloc::TinyMalloc = tinymalloc::TinyMalloc;

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Counters (all relaxed: read for reports only)

/// Sum of the requested sizes of the test's live blocks.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Number of the test's live blocks.
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static OPS: AtomicU64 = AtomicU64::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
/// Frees by a thread other than the one that allocated the block.
static CROSS_FREES: AtomicU64 = AtomicU64::new(0);
static VERIFIED: AtomicU64 = AtomicU64::new(0);
static THREADS_STARTED: AtomicU64 = AtomicU64::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Tells every thread to finish.
static STOP: AtomicBool = AtomicBool::new(false);

/// Prints the failure and exits with status 1 (not a panic: the release
/// profile aborts on panic, and a soak failure is a verdict, not a crash).
fn fail(msg: &str) -> ! {
    eprintln!("soak: FAIL: {msg}");
    std::process::exit(1);
}

// ---------------------------------------------------------------------------
// Random numbers and sizes

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Log-uniform in `[lo, hi]`.
    fn log_between(&mut self, lo: usize, hi: usize) -> usize {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((l + (h - l) * u).exp() as usize).clamp(lo, hi)
    }
}

/// A request size: 16 B .. 8 MiB, weighted small.
fn pick_size(r: &mut Rng) -> usize {
    match r.below(1000) {
        0..=549 => 16 + r.below(49),                       // small: 16 .. 64 B
        550..=829 => r.log_between(65, 32 * KIB),          // medium
        830..=969 => r.log_between(32 * KIB + 1, 2 * MIB), // large
        _ => r.log_between(2 * MIB + 1, 8 * MIB),          // huge
    }
}

/// An alignment: mostly the default; sometimes 32 B .. 4 KiB; rarely
/// 64 KiB .. 2 MiB.
fn pick_align(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=89 => 16,
        90..=98 => 1 << (5 + r.below(8)),
        _ => 1 << (16 + r.below(6)),
    }
}

// ---------------------------------------------------------------------------
// Blocks

#[inline]
fn pattern(id: u64, w: usize) -> u64 {
    let x =
        (id ^ (w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^ (x >> 31)
}

/// A block of the test: filled with the pattern of `id` (word `w` of the
/// block holds `pattern(id, w)`, a last partial word its first bytes).
/// Dropping it verifies every byte and frees it, wherever that happens
/// (a worker, a channel dropped with blocks still queued, ...).
struct Blk {
    p: *mut u8,
    size: usize,
    align: usize,
    id: u64,
    /// The worker thread that allocated it.
    origin: u64,
}

// SAFETY: a block is plain memory owned by whoever holds the Blk.
unsafe impl Send for Blk {}

thread_local! {
    /// The calling worker's number (0: not a worker).
    static ME: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Blk {
    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("layout")
    }

    /// A new block of `size` bytes, zeroed (checked) or not, filled.
    fn new(size: usize, align: usize, zeroed: bool) -> Blk {
        let l = Self::layout(size, align);
        // SAFETY: size > 0.
        let p = unsafe {
            if zeroed {
                alloc_zeroed(l)
            } else {
                alloc(l)
            }
        };
        if p.is_null() {
            fail(&format!(
                "allocation of {size} bytes (align {align}) returned null"
            ));
        }
        if !(p as usize).is_multiple_of(align) {
            fail(&format!("{p:?} ({size} bytes) is not aligned to {align}"));
        }
        if zeroed {
            // SAFETY: p holds size readable bytes.
            let s = unsafe { core::slice::from_raw_parts(p, size) };
            if let Some(i) = s.iter().position(|&b| b != 0) {
                fail(&format!(
                    "zeroed block {p:?} of {size} bytes: byte {i} is {:#x}",
                    s[i]
                ));
            }
        }
        let b = Blk {
            p,
            size,
            align,
            id: NEXT_ID.fetch_add(1, Relaxed),
            origin: ME.with(|m| m.get()),
        };
        b.fill(0, size);
        LIVE.fetch_add(size, Relaxed);
        LIVE_BLOCKS.fetch_add(1, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        b
    }

    /// Writes the pattern into bytes `[from, to)` (`from` a multiple of 8
    /// or the block's old size: partial words are rewritten whole).
    fn fill(&self, from: usize, to: usize) {
        let words = to / 8;
        let mut w = from / 8;
        // SAFETY: [p, p+to) is the block; p is 16-aligned.
        unsafe {
            while w < words {
                (self.p as *mut u64).add(w).write(pattern(self.id, w));
                w += 1;
            }
            if !to.is_multiple_of(8) {
                let bytes = pattern(self.id, words).to_le_bytes();
                for (k, &byte) in bytes.iter().enumerate().take(to % 8) {
                    self.p.add(words * 8 + k).write(byte);
                }
            }
        }
    }

    /// Checks every byte of `[0, len)`.
    fn verify(&self, len: usize, what: &str) {
        let words = len / 8;
        // SAFETY: [p, p+len) lies in the block.
        unsafe {
            let s = core::slice::from_raw_parts(self.p as *const u64, words);
            if let Some(w) = s
                .iter()
                .enumerate()
                .position(|(w, &x)| x != pattern(self.id, w))
            {
                fail(&format!(
                    "{what}: block {:?} ({} bytes, id {}): word {w} (byte {}) is {:#018x}, expected {:#018x}",
                    self.p,
                    self.size,
                    self.id,
                    w * 8,
                    s[w],
                    pattern(self.id, w)
                ));
            }
            let bytes = pattern(self.id, words).to_le_bytes();
            for (k, &want) in bytes.iter().enumerate().take(len % 8) {
                let got = self.p.add(words * 8 + k).read();
                if got != want {
                    fail(&format!(
                        "{what}: block {:?} ({} bytes, id {}): byte {} is {got:#04x}, expected {want:#04x}",
                        self.p,
                        self.size,
                        self.id,
                        words * 8 + k
                    ));
                }
            }
        }
        VERIFIED.fetch_add(len as u64, Relaxed);
    }

    /// Resizes the block: the kept prefix must survive, the new tail is
    /// filled.
    fn resize(&mut self, new_size: usize) {
        self.verify(self.size, "before realloc");
        // SAFETY: p is live with this layout; new_size > 0.
        let q = unsafe { realloc(self.p, Self::layout(self.size, self.align), new_size) };
        if q.is_null() {
            fail(&format!(
                "realloc of {:?} to {new_size} returned null",
                self.p
            ));
        }
        if !(q as usize).is_multiple_of(self.align) {
            fail(&format!(
                "realloc to {new_size}: {q:?} is not aligned to {}",
                self.align
            ));
        }
        let old = self.size;
        LIVE.fetch_add(new_size, Relaxed);
        LIVE.fetch_sub(old, Relaxed);
        self.p = q;
        self.size = new_size;
        self.verify(old.min(new_size), "after realloc");
        if new_size > old {
            self.fill(old & !7, new_size);
        }
        REALLOCS.fetch_add(1, Relaxed);
    }
}

impl Drop for Blk {
    fn drop(&mut self) {
        self.verify(self.size, "before free");
        // SAFETY: p is live with this layout and freed once.
        unsafe { dealloc(self.p, Self::layout(self.size, self.align)) };
        LIVE.fetch_sub(self.size, Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
        FREES.fetch_add(1, Relaxed);
        if self.origin != ME.with(|m| m.get()) {
            CROSS_FREES.fetch_add(1, Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------
// Workers

/// The workers' mailboxes, by slot (None while a slot's worker is being
/// replaced).
struct Ctx {
    mail: Mutex<Vec<Option<Sender<Blk>>>>,
    /// Live bytes one worker may keep.
    cap: usize,
}

impl Ctx {
    /// Sends `b` to a random other worker; when there is none, or it just
    /// ended, the block comes back and is freed here.
    fn send_away(&self, me: usize, r: &mut Rng, b: Blk) {
        let mail = self.mail.lock().unwrap();
        let n = mail.len();
        let start = r.below(n);
        for k in 0..n {
            let slot = (start + k) % n;
            if slot == me {
                continue;
            }
            if let Some(tx) = &mail[slot] {
                if let Err(back) = tx.send(b) {
                    drop(mail);
                    drop(back.0);
                }
                return;
            }
        }
        drop(mail);
        drop(b);
    }
}

struct Worker {
    slot: usize,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

fn start_worker(ctx: &Arc<Ctx>, slot: usize, seed: u64) -> Worker {
    let (tx, rx) = channel();
    ctx.mail.lock().unwrap()[slot] = Some(tx);
    let stop = Arc::new(AtomicBool::new(false));
    let serial = THREADS_STARTED.fetch_add(1, Relaxed) + 1;
    let (ctx, stop2) = (ctx.clone(), stop.clone());
    let handle = std::thread::Builder::new()
        .name(format!("soak-{serial}"))
        .spawn(move || {
            ME.with(|m| m.set(serial));
            work(&ctx, slot, rx, &stop2, Rng::new(seed ^ serial));
        })
        .unwrap_or_else(|e| fail(&format!("cannot start a worker thread: {e}")));
    Worker { slot, stop, handle }
}

fn work(ctx: &Ctx, me: usize, rx: Receiver<Blk>, stop: &AtomicBool, mut r: Rng) {
    let mut own: Vec<Blk> = Vec::new();
    let mut own_bytes = 0usize;
    while !stop.load(Relaxed) && !STOP.load(Relaxed) {
        // Blocks from other threads: free most, keep (and resize) some.
        for _ in 0..8 {
            let Ok(mut b) = rx.try_recv() else { break };
            match r.below(10) {
                0..=5 => drop(b),
                6..=7 if own_bytes + 2 * b.size < ctx.cap => {
                    let to = (b.size / 2 + r.below(b.size + 1)).max(1);
                    b.resize(to);
                    own_bytes += b.size;
                    own.push(b);
                }
                _ if own_bytes + b.size < ctx.cap => {
                    own_bytes += b.size;
                    own.push(b);
                }
                _ => drop(b),
            }
        }
        match r.below(100) {
            0..=49 => {
                let size = pick_size(&mut r);
                if own_bytes + size > ctx.cap {
                    if !own.is_empty() {
                        let b = own.swap_remove(r.below(own.len()));
                        own_bytes -= b.size;
                    }
                    continue;
                }
                let b = Blk::new(size, pick_align(&mut r), r.below(10) == 0);
                if r.below(2) == 0 {
                    ctx.send_away(me, &mut r, b);
                } else {
                    own_bytes += b.size;
                    own.push(b);
                }
            }
            50..=79 => {
                if !own.is_empty() {
                    let b = own.swap_remove(r.below(own.len()));
                    own_bytes -= b.size;
                }
            }
            80..=94 => {
                if !own.is_empty() {
                    let i = r.below(own.len());
                    // Grow or shrink, sometimes into another size range.
                    let to = if r.below(4) == 0 {
                        pick_size(&mut r)
                    } else {
                        let s = own[i].size;
                        (s / 2 + r.below(s + 1)).max(1)
                    };
                    if own_bytes - own[i].size + to <= ctx.cap {
                        own_bytes -= own[i].size;
                        own[i].resize(to);
                        own_bytes += to;
                    }
                }
            }
            _ => {
                if !own.is_empty() {
                    let b = &own[r.below(own.len())];
                    b.verify(b.size, "check");
                }
            }
        }
        OPS.fetch_add(1, Relaxed);
    }
    // Ending: leave the mailbox (blocks still queued for us are freed
    // here when `rx` drops), then send half of what is left to the other
    // workers (they free it after this thread is gone) and free the rest.
    ctx.mail.lock().unwrap()[me] = None;
    drop(rx);
    let ending_all = STOP.load(Relaxed);
    for (k, b) in own.into_iter().enumerate() {
        if k % 2 == 0 && !ending_all {
            ctx.send_away(me, &mut r, b);
        } else {
            drop(b);
        }
    }
}

// ---------------------------------------------------------------------------
// Memory samples

fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / MIB as f64)
}

#[derive(Clone, Copy)]
struct Sample {
    rss: usize,
    live: usize,
}

/// The verdict on resident memory: an error message when it grew while
/// live memory did not.
fn rss_trend(samples: &[Sample]) -> Result<String, String> {
    let n = samples.len();
    if n < 6 {
        return Ok(format!("{n} samples: too few for a trend"));
    }
    let third = n / 3;
    let max = |s: &[Sample], f: fn(&Sample) -> usize| s.iter().map(f).max().unwrap_or(0);
    let (first, last) = (&samples[..third], &samples[n - third..]);
    let (rss_a, rss_b) = (max(first, |s| s.rss), max(last, |s| s.rss));
    let (live_a, live_b) = (max(first, |s| s.live), max(last, |s| s.live));
    let msg = format!(
        "max RSS first third {} -> last third {}, max live {} -> {}",
        mib(rss_a),
        mib(rss_b),
        mib(live_a),
        mib(live_b)
    );
    let live_grew = live_b as f64 > live_a as f64 * 1.10;
    if !live_grew && rss_b as f64 > rss_a as f64 * 1.25 + 32.0 * MIB as f64 {
        Err(format!(
            "resident memory keeps growing while live memory does not: {msg}"
        ))
    } else {
        Ok(msg)
    }
}

// ---------------------------------------------------------------------------

struct Config {
    secs: f64,
    threads: usize,
    live_mib: usize,
    churn_ms: u64,
    seed: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: tinymalloc-soak [--minutes M | --seconds S] [--threads N] [--live-mib L] \
         [--churn-ms C] [--seed X]\n\
         defaults: --minutes 10 --threads 4 --live-mib 256 --churn-ms 250"
    );
    std::process::exit(2);
}

fn parse_args() -> Config {
    let mut c = Config {
        secs: 600.0,
        threads: 4,
        live_mib: 256,
        churn_ms: 250,
        seed: 0x5eed,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || -> f64 {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| *v >= 0.0)
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--minutes" => c.secs = val() * 60.0,
            "--seconds" => c.secs = val(),
            "--threads" => c.threads = (val() as usize).max(2),
            "--live-mib" => c.live_mib = (val() as usize).max(16),
            "--churn-ms" => c.churn_ms = (val() as u64).max(1),
            "--seed" => c.seed = val() as u64,
            _ => usage(),
        }
    }
    c
}

fn main() {
    let cfg = parse_args();
    let t0 = Instant::now();
    let rss0 = rss();
    let ctx = Arc::new(Ctx {
        mail: Mutex::new((0..cfg.threads).map(|_| None).collect()),
        cap: cfg.live_mib * MIB / cfg.threads,
    });
    println!(
        "soak: {:.1} min, {} worker threads, {} MiB live at most, a worker replaced every {} ms",
        cfg.secs / 60.0,
        cfg.threads,
        cfg.live_mib,
        cfg.churn_ms
    );
    let workers: Vec<Worker> = (0..cfg.threads)
        .map(|slot| start_worker(&ctx, slot, cfg.seed))
        .collect();
    // The manager: thread churn.
    let manager = {
        let (ctx, churn, seed) = (ctx.clone(), cfg.churn_ms, cfg.seed);
        std::thread::spawn(move || {
            let mut workers = workers;
            let mut r = Rng::new(seed ^ 0xabcd);
            while !STOP.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(churn));
                if STOP.load(Relaxed) {
                    break;
                }
                // End one worker, then start its replacement (after the
                // join: the old worker clears its mailbox slot on its way
                // out).
                let slot = r.below(workers.len());
                let old = workers.swap_remove(slot);
                old.stop.store(true, Relaxed);
                old.handle
                    .join()
                    .unwrap_or_else(|_| fail("a worker thread panicked"));
                workers.push(start_worker(&ctx, old.slot, seed));
            }
            workers
        })
    };
    // Samples, once a second.
    let deadline = t0 + Duration::from_secs_f64(cfg.secs);
    let mut samples = Vec::new();
    let mut peak_rss = 0usize;
    let mut next_report = t0 + Duration::from_secs(60);
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(Duration::from_secs(1)));
        let s = Sample {
            rss: rss(),
            live: LIVE.load(Relaxed),
        };
        peak_rss = peak_rss.max(s.rss);
        samples.push(s);
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(60);
            println!(
                "soak: {:5.1} min  ops {}  live {}  RSS {}  threads started {}",
                t0.elapsed().as_secs_f64() / 60.0,
                OPS.load(Relaxed),
                mib(s.live),
                mib(s.rss),
                THREADS_STARTED.load(Relaxed)
            );
        }
    }
    STOP.store(true, Relaxed);
    let workers = manager
        .join()
        .unwrap_or_else(|_| fail("the manager thread panicked"));
    for w in workers {
        w.handle
            .join()
            .unwrap_or_else(|_| fail("a worker thread panicked"));
    }
    ctx.mail.lock().unwrap().clear();
    let live_end = LIVE.load(Relaxed);
    let blocks_end = LIVE_BLOCKS.load(Relaxed);
    if live_end != 0 || blocks_end != 0 {
        fail(&format!(
            "{blocks_end} blocks ({live_end} bytes) were never freed"
        ));
    }
    tinymalloc::raw::trim();
    let final_rss = rss();
    let trend = rss_trend(&samples).unwrap_or_else(|e| fail(&e));
    let st = tinymalloc::stats();
    println!("soak: RSS trend: {trend}");
    println!(
        "soak: OK: {:.1} min, {} threads started, ops {}, allocs {}, reallocs {}, frees {} \
         ({} cross-thread), bytes verified {:.2} GiB, peak RSS {}, final RSS {} \
         (start {}, after trim; allocator still holds {} in use)",
        t0.elapsed().as_secs_f64() / 60.0,
        THREADS_STARTED.load(Relaxed),
        OPS.load(Relaxed),
        ALLOCS.load(Relaxed),
        REALLOCS.load(Relaxed),
        FREES.load(Relaxed),
        CROSS_FREES.load(Relaxed),
        VERIFIED.load(Relaxed) as f64 / (1u64 << 30) as f64,
        mib(peak_rss),
        mib(final_rss),
        mib(rss0),
        mib(st.in_use)
    );
}
