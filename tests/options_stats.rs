//! Options and statistics, seen from a Rust program that uses tinymalloc
//! as its global allocator (this test binary):
//!
//! - options from the environment: good values used, bad ones rejected
//!   with exactly one warning line naming the variable and the value, the
//!   default kept; `set_option` before the first allocation (from a
//!   constructor), range checks, precedence over the environment;
//! - statistics that add up under threads (per class, allocations - frees
//!   = live blocks, and the deltas are exactly what the threads did, cross-
//!   thread frees included), large and huge blocks, the totals;
//! - `TINYMALLOC_SHOW_STATS=1`: the table printed to stderr at exit.
//!
//! Everything that needs exact numbers, a fresh start-up or a given
//! environment runs in a child process: this executable again, running
//! only the `child_process` test, with `TM_OPTIONS_STATS_MODE` naming what
//! it does (the test harness of a child is idle while its test runs, so it
//! adds no allocations of its own). A child reports what it observed on
//! stdout as `OBSERVE key=value ...`, or checks it itself and panics.

#[global_allocator]
static A: tinymalloc::TinyMalloc = tinymalloc::TinyMalloc;

use std::alloc::{alloc, dealloc, Layout};
use std::collections::HashMap;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use tinymalloc::{set_option, stats, Opt, Stats};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Names the child's mode.
const MODE: &str = "TM_OPTIONS_STATS_MODE";

/// The options' variables.
const OPTION_VARS: [&str; 5] = [
    "TINYMALLOC_ARENAS",
    "TINYMALLOC_PURGE_DELAY_MS",
    "TINYMALLOC_SECURE",
    "TINYMALLOC_SHOW_STATS",
    "TINYMALLOC_VERBOSE",
];

// ---------------------------------------------------------------------
// Running children.

/// What a finished child left.
#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The `OBSERVE key=value` pairs the child printed.
    fn observed(&self) -> HashMap<String, i64> {
        let mut m = HashMap::new();
        for line in self.stdout.lines() {
            if let Some(rest) = line.strip_prefix("OBSERVE ") {
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').unwrap();
                    m.insert(k.to_string(), v.parse().unwrap());
                }
            }
        }
        assert!(!m.is_empty(), "the child observed nothing: {self:#?}");
        m
    }

    /// The lines of stderr.
    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Runs this executable's `child_process` test in mode `mode`, with the
/// options' variables cleared and then `env` set. Panics (showing what it
/// printed) unless the child succeeds.
fn child(mode: &str, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_process",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ]);
    for var in OPTION_VARS {
        cmd.env_remove(var);
    }
    cmd.env_remove("TM_OPTIONS_STATS_EARLY");
    cmd.env(MODE, mode);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut c = cmd.spawn().expect("running the test executable again");
    let (status, stdout, stderr) = tinymalloc_testkit::wait_with_limit(
        &mut c,
        Duration::from_secs(60),
        &format!("child {mode} {env:?}"),
    );
    let o = Outcome {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert!(o.status.success(), "child {mode} {env:?} failed: {o:#?}");
    o
}

/// The child side: does nothing unless `TM_OPTIONS_STATS_MODE` is set.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    match mode.as_str() {
        "observe" => observe(),
        "threads" => threads_add_up(),
        "sizes" => large_and_huge(),
        "leak" => leak(),
        "huge-reuse" => huge_reuse(),
        "thp-advice" => thp_advice(),
        other => panic!("unknown mode {other}"),
    }
}

// ---------------------------------------------------------------------
// Helpers of the child modes.

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

/// Allocates `size` bytes, writing to the first and last byte; returns the
/// address (as usize, to send it to another thread).
fn get(size: usize) -> usize {
    // SAFETY: a non-zero size.
    let p = unsafe { alloc(layout(size)) };
    assert!(!p.is_null(), "allocation of {size} bytes failed");
    // SAFETY: p holds size bytes.
    unsafe {
        p.write(1);
        p.add(size - 1).write(2);
    }
    p as usize
}

/// Frees a block of `get(size)`.
fn put(p: usize, size: usize) {
    // SAFETY: p came from get(size) and is freed once.
    unsafe { dealloc(p as *mut u8, layout(size)) }
}

/// The index of the size class that serves `size` bytes.
fn class_of(s: &Stats, size: usize) -> usize {
    s.classes
        .iter()
        .position(|c| c.block_size >= size)
        .unwrap_or_else(|| panic!("no size class serves {size} bytes"))
}

/// Checks the invariants of one snapshot.
fn check_snapshot(s: &Stats) {
    let mut small = 0usize;
    for (i, c) in s.classes.iter().enumerate() {
        assert!(c.allocs >= c.frees, "class {i}: {c:?}");
        assert_eq!(c.allocs - c.frees, c.live, "class {i}: {c:?}");
        small += c.live as usize * c.block_size;
    }
    assert_eq!(s.small_in_use, small, "{s:#?}");
    assert_eq!(
        s.in_use,
        s.small_in_use + s.large_in_use + s.huge_in_use,
        "{s:#?}"
    );
    assert!(s.reserved >= s.in_use, "{s:#?}");
    // Every live block lies in committed memory, inside reserved memory.
    assert!(s.committed >= s.in_use, "{s:#?}");
    assert!(s.committed <= s.reserved, "{s:#?}");
    assert!(
        s.large_allocs - s.large_frees == s.large_blocks as u64,
        "{s:#?}"
    );
    assert!(
        s.huge_allocs - s.huge_frees == s.huge_blocks as u64,
        "{s:#?}"
    );
}

/// (allocs, frees, live) of class `c` in `after` minus `before`.
fn delta(before: &Stats, after: &Stats, c: usize) -> (i64, i64, i64) {
    let (b, a) = (before.classes[c], after.classes[c]);
    (
        a.allocs as i64 - b.allocs as i64,
        a.frees as i64 - b.frees as i64,
        a.live as i64 - b.live as i64,
    )
}

// ---------------------------------------------------------------------
// Options.

/// Results of `set_option` calls made by the constructor below, as
/// letters: T accepted, F rejected ('-' not made).
static EARLY_RESULTS: [AtomicU8; 8] = [const { AtomicU8::new(b'-') }; 8];

/// Runs before `main`, so before the first allocation: with
/// `TM_OPTIONS_STATS_EARLY` set, sets options in code, as a Rust program
/// does at the top of `main` (the test harness allocates before any test
/// runs). Allocates nothing.
extern "C" fn set_options_early() {
    // SAFETY: a NUL-terminated name; nothing allocates or sets variables
    // concurrently this early.
    let on = unsafe { !libc::getenv(c"TM_OPTIONS_STATS_EARLY".as_ptr()).is_null() };
    if !on {
        return;
    }
    let calls = [
        set_option(Opt::Arenas, 65),
        set_option(Opt::Arenas, -1),
        set_option(Opt::PurgeDelayMs, -2),
        set_option(Opt::Secure, 2),
        set_option(Opt::ShowStats, -1),
        set_option(Opt::Arenas, 3),
        set_option(Opt::PurgeDelayMs, 0),
        set_option(Opt::ShowStats, 1),
    ];
    for (r, ok) in EARLY_RESULTS.iter().zip(calls) {
        r.store(if ok { b'T' } else { b'F' }, Ordering::Relaxed);
    }
}

#[used]
#[link_section = ".init_array"]
static SET_OPTIONS_EARLY: extern "C" fn() = set_options_early;

/// Child: prints the number of arenas, the early `set_option` results,
/// and whether a freed large block is purged at once and, after 150 ms, on
/// the next free (the purge delay at work: freed large-block pages wait
/// `ARENA_PURGE_MULT` = 10 times it, 100 ms by default).
fn observe() {
    let arenas = stats().arenas;
    let p0 = stats().purges;
    // `keep` keeps the large segment in use, so that freed pages wait in
    // it for their purge (an empty segment would go to the arena's cache).
    let keep = get(100 * KIB);
    let h1 = get(300 * KIB);
    let h2 = get(500 * KIB);
    put(h1, 300 * KIB);
    let p1 = stats().purges;
    std::thread::sleep(Duration::from_millis(150));
    put(h2, 500 * KIB);
    let p2 = stats().purges;
    put(keep, 100 * KIB);
    let early: String = EARLY_RESULTS
        .iter()
        .map(|r| {
            if r.load(Ordering::Relaxed) == b'T' {
                '1'
            } else {
                '0'
            }
        })
        .collect();
    println!(
        "OBSERVE arenas={arenas} purged_at_once={} purged_later={} early=1{early}",
        p1 - p0,
        p2 - p1
    );
}

/// The behaviour of the defaults, observed by a child with no option set.
fn defaults() -> HashMap<String, i64> {
    let o = child("observe", &[]);
    assert_eq!(o.stderr, "", "no option set, yet: {o:#?}");
    let m = o.observed();
    assert!((1..=64).contains(&m["arenas"]), "{m:?}");
    // Default delay 10 ms (100 ms for large-block pages): not at once, but
    // by the next free 150 ms later.
    assert_eq!(m["purged_at_once"], 0, "{m:?}");
    assert!(m["purged_later"] >= 1, "{m:?}");
    m
}

#[test]
fn bad_environment_values_warn_once_and_keep_the_default() {
    let def = defaults();
    for (var, value) in [
        ("TINYMALLOC_ARENAS", "banana"),
        ("TINYMALLOC_ARENAS", "65"),
        ("TINYMALLOC_ARENAS", "-1"),
        ("TINYMALLOC_ARENAS", ""),
        ("TINYMALLOC_ARENAS", " 3"),
        ("TINYMALLOC_ARENAS", "99999999999999999999"),
        ("TINYMALLOC_PURGE_DELAY_MS", "banana"),
        ("TINYMALLOC_PURGE_DELAY_MS", "-2"),
        ("TINYMALLOC_PURGE_DELAY_MS", "10ms"),
        ("TINYMALLOC_SECURE", "2"),
        ("TINYMALLOC_SHOW_STATS", "maybe"),
        ("TINYMALLOC_VERBOSE", "very"),
    ] {
        let o = child("observe", &[(var, value)]);
        let lines = o.stderr_lines();
        assert_eq!(lines.len(), 1, "{var}={value:?}: one warning line: {o:#?}");
        let line = lines[0];
        assert!(line.starts_with("tinymalloc: "), "{var}={value:?}: {line}");
        assert!(line.contains("warning"), "{var}={value:?}: {line}");
        assert!(
            line.contains(&format!("{var}={value}")),
            "{var}={value:?}: the line names neither: {line}"
        );
        // The default is used: same behaviour as with nothing set (and for
        // TINYMALLOC_SHOW_STATS, no table: the one line above).
        let m = o.observed();
        assert_eq!(m["arenas"], def["arenas"], "{var}={value:?}");
        assert_eq!(m["purged_at_once"], 0, "{var}={value:?}");
        assert!(m["purged_later"] >= 1, "{var}={value:?}");
    }
    // Several bad values: one line each.
    let o = child(
        "observe",
        &[
            ("TINYMALLOC_ARENAS", "x"),
            ("TINYMALLOC_SECURE", "7"),
            ("TINYMALLOC_PURGE_DELAY_MS", "soon"),
        ],
    );
    let lines = o.stderr_lines();
    assert_eq!(lines.len(), 3, "{o:#?}");
    for want in [
        "TINYMALLOC_ARENAS=x",
        "TINYMALLOC_SECURE=7",
        "TINYMALLOC_PURGE_DELAY_MS=soon",
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(want)).count(),
            1,
            "{want}: {o:#?}"
        );
    }
}

#[test]
fn good_environment_values_are_used() {
    let def = defaults();
    let quiet = |o: &Outcome| {
        assert!(!o.stderr.contains("warning"), "{o:#?}");
    };
    let o = child("observe", &[("TINYMALLOC_ARENAS", "3")]);
    assert_eq!(o.stderr, "");
    assert_eq!(o.observed()["arenas"], 3);
    let o = child("observe", &[("TINYMALLOC_ARENAS", "64")]);
    assert_eq!(o.stderr, "");
    assert_eq!(o.observed()["arenas"], 64);
    let o = child("observe", &[("TINYMALLOC_ARENAS", "0")]);
    assert_eq!(o.observed()["arenas"], def["arenas"]);
    // 0: purged at once.
    let o = child("observe", &[("TINYMALLOC_PURGE_DELAY_MS", "0")]);
    assert_eq!(o.stderr, "");
    let m = o.observed();
    assert!(m["purged_at_once"] >= 1, "{m:?}");
    // -1: never.
    let o = child("observe", &[("TINYMALLOC_PURGE_DELAY_MS", "-1")]);
    assert_eq!(o.stderr, "");
    let m = o.observed();
    assert_eq!((m["purged_at_once"], m["purged_later"]), (0, 0), "{m:?}");
    // Words for the switches; 0 and off print nothing.
    for (var, value) in [
        ("TINYMALLOC_SECURE", "1"),
        ("TINYMALLOC_SECURE", "on"),
        ("TINYMALLOC_SECURE", "0"),
        ("TINYMALLOC_VERBOSE", "1"),
        ("TINYMALLOC_VERBOSE", "off"),
        ("TINYMALLOC_SHOW_STATS", "0"),
        ("TINYMALLOC_SHOW_STATS", "no"),
    ] {
        let o = child("observe", &[(var, value)]);
        quiet(&o);
        assert!(!o.stderr.contains("tinymalloc statistics"), "{o:#?}");
    }
}

#[test]
fn set_option_checks_ranges() {
    // Rejected values change nothing (checked in the early child below).
    assert!(!set_option(Opt::Arenas, 65));
    assert!(!set_option(Opt::Arenas, -1));
    assert!(!set_option(Opt::PurgeDelayMs, -2));
    assert!(!set_option(Opt::PurgeDelayMs, i64::MAX));
    assert!(!set_option(Opt::Secure, 2));
    assert!(!set_option(Opt::ShowStats, -1));
    assert!(!set_option(Opt::Verbose, 2));
    // Accepted (the defaults again, not to disturb the other tests; any
    // value in range is accepted after start-up, though `Arenas` only
    // matters before the first allocation).
    assert!(set_option(Opt::Verbose, 0));
    assert!(set_option(Opt::Secure, 0));
}

#[test]
fn set_option_before_the_first_allocation_wins_over_the_environment() {
    let o = child(
        "observe",
        &[
            ("TM_OPTIONS_STATS_EARLY", "1"),
            ("TINYMALLOC_ARENAS", "5"),
            ("TINYMALLOC_PURGE_DELAY_MS", "-1"),
        ],
    );
    let m = o.observed();
    // Five rejected calls, then three accepted.
    assert_eq!(m["early"], 100000111, "{o:#?}");
    assert_eq!(m["arenas"], 3, "{o:#?}");
    assert!(m["purged_at_once"] >= 1, "{o:#?}");
    assert!(!o.stderr.contains("warning"), "{o:#?}");
    // ShowStats set in code: the table at exit.
    assert!(o.stderr.contains("tinymalloc statistics"), "{o:#?}");
}

// ---------------------------------------------------------------------
// Statistics.

#[test]
fn stats_is_a_plain_debug_struct() {
    let s: Stats = stats();
    let copy = s;
    assert_eq!(copy, s);
    let d = format!("{s:?}");
    for field in [
        "Stats {", "in_use", "reserved", "resident", "segments", "arenas", "threads", "purges",
        "classes", "allocs", "frees", "live",
    ] {
        assert!(d.contains(field), "{field} missing from {d}");
    }
    assert!(s.arenas >= 1 && s.threads >= 1 && s.segments >= 1, "{s:#?}");
    assert!(s.resident > 0, "{s:#?}");
    // (The invariants are checked in children: counters read while other
    // tests' threads run are not a consistent snapshot.)
}

#[test]
fn stats_add_up_under_threads() {
    child("threads", &[]);
}

/// Child: N threads allocate and free known numbers of blocks of three
/// size classes nothing else here uses; per class, the deltas are exactly
/// that, mid-run and at the end, with cross-thread frees both ways.
fn threads_add_up() {
    const N: usize = 4;
    /// Blocks of class A each thread allocates and frees at once.
    const K: usize = 2000;
    /// Blocks of class A each thread keeps until after the mid-run look.
    const R: usize = 50;
    /// Blocks of class B each thread allocates and main frees.
    const L: usize = 100;
    /// Blocks of class C main allocates and each thread frees.
    const P: usize = 100;
    const SA: usize = 5000;
    const SB: usize = 12000;
    const SC: usize = 24000;
    // Pointer vectors stay below 1 KiB, far from these classes.
    let s0 = stats();
    check_snapshot(&s0);
    let (a, b, c) = (class_of(&s0, SA), class_of(&s0, SB), class_of(&s0, SC));
    assert!(a < b && b < c, "{a} {b} {c}");

    let gifts: Vec<Vec<usize>> = (0..N).map(|_| (0..P).map(|_| get(SC)).collect()).collect();
    let look = Arc::new(Barrier::new(N + 1));
    let go_on = Arc::new(Barrier::new(N + 1));
    let workers: Vec<_> = gifts
        .into_iter()
        .map(|gift| {
            let (look, go_on) = (look.clone(), go_on.clone());
            std::thread::spawn(move || {
                for _ in 0..K {
                    let p = get(SA);
                    put(p, SA);
                }
                let kept: Vec<usize> = (0..R).map(|_| get(SA)).collect();
                let sent: Vec<usize> = (0..L).map(|_| get(SB)).collect();
                for p in gift {
                    put(p, SC); // a cross-thread free: main allocated it
                }
                look.wait();
                go_on.wait();
                for p in kept {
                    put(p, SA);
                }
                sent
            })
        })
        .collect();

    look.wait();
    let mid = stats();
    go_on.wait();
    check_snapshot(&mid);
    assert!(mid.threads > N, "{} threads with a heap", mid.threads);
    let n = N as i64;
    let (k, r, l, p) = (K as i64, R as i64, L as i64, P as i64);
    assert_eq!(delta(&s0, &mid, a), (n * (k + r), n * k, n * r), "class A");
    assert_eq!(delta(&s0, &mid, b), (n * l, 0, n * l), "class B");
    assert_eq!(delta(&s0, &mid, c), (n * p, n * p, 0), "class C");

    let sent: Vec<Vec<usize>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    for p in sent.into_iter().flatten() {
        put(p, SB); // cross-thread frees, into the segments of exited threads
    }
    let end = stats();
    check_snapshot(&end);
    assert_eq!(
        delta(&s0, &end, a),
        (n * (k + r), n * (k + r), 0),
        "class A"
    );
    assert_eq!(delta(&s0, &end, b), (n * l, n * l, 0), "class B");
    assert_eq!(delta(&s0, &end, c), (n * p, n * p, 0), "class C");
    // Bytes requested: at least every size asked for above; the rest is
    // the test's own vectors and thread set-up (a few KiB).
    let asked = (N * (K + R) * SA + N * L * SB + N * P * SC) as u64;
    let extra = (end.requested - s0.requested).saturating_sub(asked);
    assert!(
        end.requested >= s0.requested + asked && extra < 256 << 10,
        "requested {} -> {}, asked {asked}",
        s0.requested,
        end.requested
    );
}

#[test]
fn stats_of_large_and_huge_blocks() {
    child("sizes", &[]);
}

/// Child: large and huge blocks counted in and out; the totals agree.
fn large_and_huge() {
    const LARGE: usize = 100 * KIB;
    const HUGE: usize = 3 * MIB;
    let s0 = stats();
    check_snapshot(&s0);
    let large: [usize; 10] = std::array::from_fn(|_| get(LARGE));
    let huge: [usize; 3] = std::array::from_fn(|_| get(HUGE));
    let s1 = stats();
    check_snapshot(&s1);
    assert_eq!(s1.large_blocks - s0.large_blocks, 10, "{s1:#?}");
    assert_eq!(s1.huge_blocks - s0.huge_blocks, 3, "{s1:#?}");
    let dl = s1.large_in_use - s0.large_in_use;
    let dh = s1.huge_in_use - s0.huge_in_use;
    assert!((10 * LARGE..=10 * (LARGE + 64 * KIB)).contains(&dl), "{dl}");
    assert!((3 * HUGE..=3 * (HUGE + 2 * MIB)).contains(&dh), "{dh}");
    assert!(s1.in_use - s0.in_use >= 10 * LARGE + 3 * HUGE);
    assert!(s1.reserved >= s0.reserved + 3 * HUGE, "{s1:#?}");
    assert!(s1.resident > 0 && s1.segments >= 1 && s1.arenas >= 1 && s1.threads >= 1);
    for p in large {
        put(p, LARGE);
    }
    for p in huge {
        put(p, HUGE);
    }
    let s2 = stats();
    check_snapshot(&s2);
    assert_eq!(s2.large_blocks, s0.large_blocks, "{s2:#?}");
    assert_eq!(s2.huge_blocks, s0.huge_blocks, "{s2:#?}");
    assert_eq!(s2.large_in_use, s0.large_in_use, "{s2:#?}");
    assert_eq!(s2.huge_in_use, s0.huge_in_use, "{s2:#?}");
    // Running totals and requested bytes.
    assert_eq!(s1.large_allocs - s0.large_allocs, 10, "{s1:#?}");
    assert_eq!(s2.large_frees - s0.large_frees, 10, "{s2:#?}");
    assert_eq!(s1.huge_allocs - s0.huge_allocs, 3, "{s1:#?}");
    assert_eq!(s2.huge_frees - s0.huge_frees, 3, "{s2:#?}");
    let asked = (10 * LARGE + 3 * HUGE) as u64;
    assert!(
        (asked..asked + 4096).contains(&(s1.requested - s0.requested)),
        "requested {} -> {}",
        s0.requested,
        s1.requested
    );
    // Committed memory follows use: it grows with the blocks and shrinks
    // once they are freed and purged.
    assert!(
        s1.committed >= s0.committed + 10 * LARGE + 3 * HUGE,
        "{s1:#?}"
    );
    // Counted on the allocating and the freeing thread's heaps: the counts
    // outlive a thread that exits, and a block allocated on one thread and
    // freed on another counts once each way.
    let theirs: Vec<usize> = std::thread::spawn(|| (0..6).map(|_| get(LARGE)).collect())
        .join()
        .unwrap();
    let s2b = stats();
    check_snapshot(&s2b);
    assert_eq!(s2b.large_allocs - s2.large_allocs, 6, "{s2b:#?}");
    for p in theirs {
        put(p, LARGE);
    }
    let s2c = stats();
    check_snapshot(&s2c);
    assert_eq!(s2c.large_frees - s2.large_frees, 6, "{s2c:#?}");
    assert_eq!(s2c.large_blocks, s0.large_blocks, "{s2c:#?}");
    let small: Vec<usize> = (0..10_000).map(|_| get(1000)).collect();
    let s3 = stats();
    check_snapshot(&s3);
    assert!(s3.committed >= s2.committed + 10_000 * 1000, "{s3:#?}");
    for p in small {
        put(p, 1000);
    }
    tinymalloc::raw::trim();
    let s4 = stats();
    check_snapshot(&s4);
    assert!(s4.committed < s0.committed + MIB, "{s0:#?} {s4:#?}");
}

#[test]
fn transparent_huge_pages_only_where_memory_is_used_again_or_plenty() {
    child("thp-advice", &[("TINYMALLOC_ARENAS", "64")]);
}

/// Whether the mapping holding `p` is advised transparent huge pages: the
/// `hg` flag on its `VmFlags` line in /proc/self/smaps. Read line by line
/// (small blocks only, so that the reading makes no large segment).
fn advised(p: usize) -> bool {
    use std::io::{BufRead, BufReader};
    let f = std::fs::File::open("/proc/self/smaps").expect("reading /proc/self/smaps");
    let mut inside = false;
    for line in BufReader::new(f).lines() {
        let line = line.unwrap();
        let range = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = range.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = (a..b).contains(&p);
                continue;
            }
        }
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if inside {
                return flags.split_whitespace().any(|f| f == "hg");
            }
        }
    }
    panic!("no mapping with VmFlags holds {p:#x}");
}

/// Child: which memory is advised transparent huge pages (`MADV_HUGEPAGE`:
/// one fault maps 2 MiB). Not a program's first large segment or its
/// first huge buffers before it frees one (a program touching them sparsely
/// would get 2 MiB resident per page it touches); a large segment past
/// its arena's first, huge blocks past the first region, and huge blocks
/// once the program recycles huge memory, are; a small segment made from
/// an advised one's memory is not.
fn thp_advice() {
    if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
        println!("this kernel has no transparent huge pages: nothing to check");
        return;
    }
    // The test thread has an arena of its own (64 arenas): its first
    // large segment holds two 1.5 MiB blocks, the third needs a second.
    let a = get(1536 * KIB);
    let b = get(1536 * KIB);
    let c = get(1536 * KIB);
    let seg = |p: usize| p & !(4 * MIB - 1);
    assert_eq!(seg(a), seg(b), "{a:#x} {b:#x}");
    assert_ne!(seg(a), seg(c), "{a:#x} {c:#x}");
    assert!(
        !advised(a),
        "the arena's first large segment is not advised"
    );
    assert!(advised(c), "a second large segment is advised");
    // Huge blocks: the first ones, in the first region, are not advised;
    // one that needs a second region (256 MiB each) is.
    let h1 = get(40 * MIB);
    assert!(!advised(h1), "a first huge block is not advised");
    let h2 = get(240 * MIB);
    assert!(advised(h2), "a huge block in a second region is advised");
    // Once a huge block is freed, the program recycles huge memory: a
    // block reusing its chunks is advised.
    put(h1, 40 * MIB);
    let h3 = get(8 * MIB);
    assert_eq!(h3, h1, "first fit reuses the freed run");
    assert!(advised(h3), "reused huge chunks are advised");
    put(h2, 240 * MIB);
    put(h3, 8 * MIB);
    // Empty segments go to the arena's cache with their advice; a small
    // segment made from the advised one loses it (small pages are 64 KiB
    // of one size class: 2 MiB pages would multiply what they hold).
    for (p, n) in [(a, 1536 * KIB), (b, 1536 * KIB), (c, 1536 * KIB)] {
        put(p, n);
    }
    let small: Vec<usize> = (0..12 * 1024).map(|_| get(KIB)).collect();
    assert!(
        small.iter().any(|&p| seg(p) == seg(c)),
        "the cached segment of c serves small blocks"
    );
    assert!(!advised(seg(c)), "a small segment is not advised");
    for p in small {
        put(p, KIB);
    }
}

#[test]
fn freed_huge_memory_is_reused_without_lingering() {
    child("huge-reuse", &[]);
}

/// Child: huge blocks are runs of 4 MiB chunks of a region, taken first
/// fit (src/region.rs): a freed run serves the next request that fits at
/// its place, cut to size (the rest stays free and resident, and serves the
/// next request), freed neighbours coalesce again, calloc clears reused
/// memory, a trim purges what is free, and a block grows in place into the
/// free chunks after it; no new address space is mapped for any of it.
fn huge_reuse() {
    let touch = |p: usize, n: usize, v: u8| {
        for off in (0..n).step_by(4096) {
            // SAFETY: p is a live block of n bytes.
            unsafe { ((p + off) as *mut u8).write(v) };
        }
    };
    let a = get(40 * MIB);
    touch(a, 40 * MIB, 1);
    put(a, 40 * MIB);
    let s0 = stats();
    check_snapshot(&s0);
    let b = get(10 * MIB);
    let s1 = stats();
    check_snapshot(&s1);
    assert_eq!(b, a, "a freed 40 MiB run serves a 10 MiB request");
    assert_eq!(s1.reserved, s0.reserved, "{s0:#?} {s1:#?}");
    assert_eq!(
        s1.committed, s0.committed,
        "the rest stays warm: {s0:#?} {s1:#?}"
    );
    // The rest of the run (past the 12 MiB of chunks b takes) serves a
    // request that fits it: no new mapping.
    let t = get(20 * MIB);
    let s1t = stats();
    check_snapshot(&s1t);
    assert_eq!(t, b + 12 * MIB, "the rest serves it: {b:#x} {t:#x}");
    assert_eq!(s1t.reserved, s0.reserved, "{s0:#?} {s1t:#?}");
    put(t, 20 * MIB);
    touch(b, 10 * MIB, 1);
    put(b, 10 * MIB);
    // Freed neighbours coalesce: the whole 40 MiB run serves a 40 MiB
    // request again, and calloc clears what the earlier blocks wrote.
    // SAFETY: a plain allocation, freed below.
    let z = unsafe { tinymalloc::raw::calloc(1, 40 * MIB) } as usize;
    assert_eq!(z, a, "freed neighbours coalesce into the first run");
    for off in (0..40 * MIB).step_by(4096).chain([40 * MIB - 1]) {
        // SAFETY: z is a live block of 40 MiB.
        let v = unsafe { *((z + off) as *const u8) };
        assert_eq!(v, 0, "calloc over reused chunks: byte {off:#x} is {v}");
    }
    // SAFETY: from calloc above, freed once.
    unsafe { tinymalloc::raw::free(z as *mut u8) };
    let before = stats();
    tinymalloc::raw::trim();
    let after = stats();
    check_snapshot(&after);
    assert!(
        after.committed + 28 * MIB <= before.committed,
        "a trim purges the free chunks: {before:#?} {after:#?}"
    );
    assert_eq!(after.reserved, before.reserved, "trim keeps one region");
    // A block grows in place into the free chunks after it (realloc
    // returns the same address), keeping its bytes.
    let s2 = stats();
    let c = get(30 * MIB);
    touch(c, 30 * MIB, 3);
    // SAFETY: c is a live block; the result replaces it.
    let c2 = unsafe { tinymalloc::raw::realloc(c as *mut u8, 60 * MIB) } as usize;
    assert_eq!(c2, c, "realloc grows the run in place");
    for off in (4096..30 * MIB - 4096).step_by(4096) {
        // SAFETY: c2 is a live block of 60 MiB.
        assert_eq!(unsafe { *((c2 + off) as *const u8) }, 3, "byte {off:#x}");
    }
    // With the chunks after it taken, growing moves it (its pages, no
    // copy) out of the region; its bytes go with it.
    let d = get(10 * MIB);
    assert_eq!(d, c + 64 * MIB, "the next run follows: {c:#x} {d:#x}");
    // SAFETY: c2 is a live block; the result replaces it.
    let c3 = unsafe { tinymalloc::raw::realloc(c2 as *mut u8, 100 * MIB) } as usize;
    assert!(c3 != c2 && c3 != 0, "realloc moves the block");
    for off in (4096..30 * MIB - 4096).step_by(4096) {
        // SAFETY: c3 is a live block of 100 MiB.
        assert_eq!(unsafe { *((c3 + off) as *const u8) }, 3, "byte {off:#x}");
    }
    // Its old chunks are free again: the next 60 MiB request takes them.
    let e = get(60 * MIB);
    assert_eq!(e, c, "the moved block's chunks serve the next request");
    let s3 = stats();
    check_snapshot(&s3);
    // Only the moved block's own mapping (with its slack) is new.
    let grown = s3.reserved - s2.reserved;
    assert!((100 * MIB..=108 * MIB).contains(&grown), "{s2:#?} {s3:#?}");
    put(e, 60 * MIB);
    put(d, 10 * MIB);
    // SAFETY: c3 is live, freed once.
    unsafe { tinymalloc::raw::free(c3 as *mut u8) };
}

// ---------------------------------------------------------------------
// The table at exit.

/// Child: leaves live blocks behind for the table at exit: 1000 of 5000
/// bytes (the 5 KiB class), 3 large, 1 huge.
fn leak() {
    for _ in 0..1000 {
        get(5000);
    }
    for _ in 0..3 {
        get(100 * KIB);
    }
    get(3 * MIB);
}

/// A row of the per-class part of the table: (block size as printed,
/// allocs, frees, live).
fn class_row(line: &str) -> Option<(String, u64, u64, u64)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 5 || !matches!(f[1], "B" | "KiB" | "MiB") {
        return None;
    }
    f[0].parse::<f64>().ok()?;
    Some((
        format!("{} {}", f[0], f[1]),
        f[2].parse().ok()?,
        f[3].parse().ok()?,
        f[4].parse().ok()?,
    ))
}

/// The number in a `name   value` row of the table.
fn table_value<'a>(lines: &[&'a str], name: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name:?} row in {lines:#?}"))
        .trim()
}

#[test]
fn show_stats_prints_a_table_at_exit() {
    let o = child("leak", &[("TINYMALLOC_SHOW_STATS", "1")]);
    let lines = o.stderr_lines();
    let start = lines
        .iter()
        .position(|l| l.contains("tinymalloc statistics"))
        .unwrap_or_else(|| panic!("no table at exit: {o:#?}"));
    let table = &lines[start..];
    assert!(
        o.stderr.contains(" KiB") && o.stderr.contains(" MiB"),
        "sizes in human units: {o:#?}"
    );
    let in_use = table_value(table, "in use");
    assert!(in_use.ends_with("MiB"), "{in_use}: over 3 MiB live");
    let huge: usize = table_value(table, "huge blocks").parse().unwrap();
    let large: usize = table_value(table, "large blocks").parse().unwrap();
    assert!(huge >= 1 && large >= 3, "{table:#?}");
    let header = table
        .iter()
        .position(|l| l.contains("allocs") && l.contains("frees") && l.contains("live"))
        .unwrap_or_else(|| panic!("no per-class header: {table:#?}"));
    let rows: Vec<_> = table[header + 1..]
        .iter()
        .filter_map(|l| class_row(l))
        .collect();
    assert!(rows.len() >= 2, "per-class rows: {table:#?}");
    for (size, allocs, frees, live) in &rows {
        assert_eq!(allocs - frees, *live, "row {size}: {table:#?}");
    }
    let five = rows
        .iter()
        .find(|r| r.0 == "5.0 KiB")
        .unwrap_or_else(|| panic!("no 5.0 KiB row: {table:#?}"));
    assert!(five.3 >= 1000, "{five:?}");

    // Off by default, and with 0.
    for env in [&[][..], &[("TINYMALLOC_SHOW_STATS", "0")]] {
        let o = child("leak", env);
        assert!(!o.stderr.contains("tinymalloc statistics"), "{o:#?}");
    }
}
