//! Multi-threaded stress through `tinymalloc::raw`: most frees are
//! cross-thread, blocks of every size range travel between threads, realloc
//! chains move blocks away from the thread that made them, and threads exit
//! while others still hold their blocks (their segments are abandoned, then
//! adopted by new threads or reclaimed when the last block is freed).
//!
//! Every block carries a pattern derived from a seed; it is checked before
//! every realloc and free. At the end, with every block freed and
//! `raw::trim()` called, no segment may be left in use: the arena caches
//! may keep up to 4 empty segments each, but those are not counted in
//! `stats().segments`.
//!
//! This binary does not install tinymalloc as the global allocator (the
//! channels and the harness use the system allocator), so the statistics
//! count only this test's blocks. The other test of this file runs its
//! work in a child process, so it does not disturb them.

use std::sync::mpsc;
use std::thread;
use tinymalloc::raw;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const WORKERS: usize = 6;

/// A block in flight: address, size, pattern seed.
#[derive(Clone, Copy, Debug)]
struct Blk {
    p: usize,
    size: usize,
    seed: u64,
}

use tinymalloc_testkit::Rng;

#[inline]
fn pattern_word(seed: u64, w: usize) -> u64 {
    let x =
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (w as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^ (x >> 31) ^ 0x0F0F_1234_F0F0_4321
}

/// Fills bytes `[from, to)` of the block; `from` is a multiple of 8.
unsafe fn fill(p: *mut u8, from: usize, to: usize, seed: u64) {
    debug_assert!(from.is_multiple_of(8));
    let mut i = from;
    while i + 8 <= to {
        unsafe { (p.add(i) as *mut u64).write(pattern_word(seed, i / 8)) };
        i += 8;
    }
    let last = pattern_word(seed, i / 8).to_le_bytes();
    while i < to {
        unsafe { p.add(i).write(last[i % 8]) };
        i += 1;
    }
}

/// Checks the first `len` bytes of a block; panics naming the first bad one.
unsafe fn check(b: Blk, len: usize, what: &str) {
    let p = b.p as *const u8;
    let mut i = 0;
    while i < len {
        let want = pattern_word(b.seed, i / 8).to_le_bytes();
        let n = (len - i).min(8);
        for (k, &w) in want.iter().enumerate().take(n) {
            let got = unsafe { p.add(i + k).read() };
            assert_eq!(
                got,
                w,
                "{what}: block {:#x} (size {}, seed {}) corrupted at offset {}",
                b.p,
                b.size,
                b.seed,
                i + k
            );
        }
        i += 8;
    }
}

fn random_size(r: &mut Rng) -> usize {
    match r.below(1000) {
        0..=579 => r.below(65),
        580..=899 => 65 + r.below(32 * KIB - 64),
        900..=994 => {
            let span = if r.below(4) == 0 {
                2 * MIB - 32 * KIB
            } else {
                200 * KIB
            };
            32 * KIB + 1 + r.below(span)
        }
        _ => 2 * MIB + 1 + r.below(4 * MIB),
    }
}

fn new_block(r: &mut Rng, seed: u64) -> Blk {
    let size = random_size(r);
    // SAFETY: a fresh allocation, checked and filled.
    unsafe {
        let p = match r.below(4) {
            0 => raw::zalloc(size),
            1 => raw::malloc_aligned(size, 1 << (4 + r.below(9))),
            _ => raw::malloc(size),
        };
        assert!(!p.is_null(), "allocation of {size} failed");
        assert!(raw::usable_size(p) >= size);
        fill(p, 0, size, seed);
        Blk {
            p: p as usize,
            size,
            seed,
        }
    }
}

fn free_block(b: Blk, what: &str) {
    // SAFETY: b is a live block, freed once.
    unsafe {
        check(b, b.size, what);
        raw::free(b.p as *mut u8);
    }
}

/// Reallocates `b` a few times (on whichever thread holds it), checking
/// that the common prefix survives each move.
fn realloc_chain(mut b: Blk, r: &mut Rng) -> Blk {
    for _ in 0..1 + r.below(3) {
        let new_size = random_size(r);
        // SAFETY: b is live; its contents are checked before and after.
        unsafe {
            check(b, b.size, "before realloc");
            let q = raw::realloc(b.p as *mut u8, new_size);
            assert!(!q.is_null(), "realloc to {new_size} failed");
            let keep = b.size.min(new_size);
            let nb = Blk {
                p: q as usize,
                size: new_size,
                seed: b.seed,
            };
            check(nb, keep, "after realloc");
            fill(q, keep & !7, new_size, b.seed);
            b = nb;
        }
    }
    b
}

/// The destination of block `i` of worker `t` (deterministic, so every
/// worker knows how many blocks it will receive).
fn dest(t: usize, i: usize) -> usize {
    (t + 1 + (i * 7 + i / 3) % (WORKERS - 1)) % WORKERS
}

fn production(t: usize) -> usize {
    // Uneven on purpose: light producers finish (and exit) early.
    [1500, 9000, 3000, 12000, 600, 6000][t % 6]
}

#[test]
fn cross_thread_stress_then_everything_is_reclaimed() {
    let expected: Vec<usize> = (0..WORKERS)
        .map(|u| {
            (0..WORKERS)
                .map(|t| (0..production(t)).filter(|&i| dest(t, i) == u).count())
                .sum()
        })
        .collect();

    // Phase A: workers pass blocks around; each keeps some received blocks
    // for a while and returns a few to the main thread when it exits.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..WORKERS).map(|_| mpsc::channel::<Blk>()).unzip();
    // A late freer: receives blocks from exiting workers and frees them in
    // batches, long after their makers are gone.
    let (late_tx, late_rx) = mpsc::channel::<Blk>();
    let late = thread::spawn(move || {
        let mut batch = Vec::new();
        let mut freed = 0;
        for b in late_rx {
            batch.push(b);
            if batch.len() >= 500 {
                for b in batch.drain(..) {
                    free_block(b, "late free");
                    freed += 1;
                }
            }
        }
        for b in batch {
            free_block(b, "late free");
            freed += 1;
        }
        freed
    });

    let mut handles = Vec::new();
    for (t, rx) in rxs.into_iter().enumerate() {
        let txs = txs.clone();
        let late_tx = late_tx.clone();
        let expect = expected[t];
        handles.push(thread::spawn(move || {
            let mut r = Rng(0xA5A5_0000 + t as u64 * 7919);
            let mut held: Vec<Blk> = Vec::new();
            let (mut produced, mut received) = (0, 0);
            let take = |b: Blk, r: &mut Rng, held: &mut Vec<Blk>| match r.below(8) {
                0 | 1 => held.push(b),
                2 => {
                    let b = realloc_chain(b, r);
                    free_block(b, "after realloc chain");
                }
                _ => free_block(b, "cross-thread free"),
            };
            while produced < production(t) || received < expect {
                if produced < production(t) {
                    let seed = (t as u64) << 40 | produced as u64;
                    let mut b = new_block(&mut r, seed);
                    if r.below(10) == 0 {
                        b = realloc_chain(b, &mut r);
                    }
                    txs[dest(t, produced)].send(b).unwrap();
                    produced += 1;
                    while let Ok(b) = rx.try_recv() {
                        received += 1;
                        take(b, &mut r, &mut held);
                    }
                } else {
                    let b = rx.recv().expect("all expected blocks arrive");
                    received += 1;
                    take(b, &mut r, &mut held);
                }
                // Free held blocks at random times.
                if held.len() > 200 || (!held.is_empty() && r.below(4) == 0) {
                    let b = held.swap_remove(r.below(held.len()));
                    free_block(b, "held free");
                }
            }
            // Exiting: some held blocks go to the late freer, some to the
            // main thread (freed after this thread is gone).
            let mut to_main = Vec::new();
            for (k, b) in held.into_iter().enumerate() {
                if k % 2 == 0 {
                    late_tx.send(b).unwrap();
                } else {
                    to_main.push(b);
                }
            }
            // A few blocks of our own, still live when we exit.
            for k in 0..50 {
                let mut rr = Rng(r.next() | 1);
                let mut b = new_block(&mut rr, (t as u64) << 40 | 1 << 39 | k);
                if b.size > 64 * KIB {
                    free_block(b, "own block");
                    b = new_block(&mut Rng(k + 1), (t as u64) << 40 | 1 << 38 | k);
                }
                to_main.push(b);
            }
            (received, to_main)
        }));
    }
    drop(txs);
    drop(late_tx);
    let mut orphans = Vec::new();
    for (t, h) in handles.into_iter().enumerate() {
        let (received, to_main) = h.join().expect("worker");
        assert_eq!(received, expected[t]);
        orphans.extend(to_main);
    }
    let late_freed = late.join().expect("late freer");
    assert!(late_freed > 0);
    let mid = tinymalloc::stats();
    assert!(
        mid.abandoned_segments > 0,
        "blocks of exited threads are live, so their segments must be abandoned: {mid:?}"
    );

    // Phase B: new threads allocate (adopting abandoned segments) and free
    // the orphans, then their own blocks.
    let shares: Vec<Vec<Blk>> = (0..4)
        .map(|k| orphans.iter().skip(k).step_by(4).copied().collect())
        .collect();
    let n_orphans = orphans.len();
    let handles: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(k, share)| {
            thread::spawn(move || {
                let mut r = Rng(0x5151 + k as u64);
                let mine: Vec<Blk> = (0..3000)
                    .map(|i| new_block(&mut r, 1 << 50 | (k as u64) << 20 | i))
                    .collect();
                let n = share.len();
                for b in share {
                    let b = if r.below(5) == 0 {
                        realloc_chain(b, &mut r)
                    } else {
                        b
                    };
                    free_block(b, "orphan free");
                }
                for b in mine {
                    free_block(b, "phase B own free");
                }
                n
            })
        })
        .collect();
    let freed: usize = handles
        .into_iter()
        .map(|h| h.join().expect("phase B"))
        .sum();
    assert_eq!(freed, n_orphans);

    raw::trim();
    let end = tinymalloc::stats();
    let msg = format!("after phase A: {mid:?}\nat the end: {end:?}");
    assert_eq!(
        end.segments, 0,
        "segments still in use with every block freed:\n{msg}"
    );
    assert_eq!(end.abandoned_segments, 0, "{msg}");
    assert_eq!(end.large_in_use, 0, "{msg}");
    assert_eq!(end.huge_in_use, 0, "{msg}");
    assert!(end.cached_segments <= 4 * end.arenas, "{msg}");
    // What stays reserved: the cached segments, one huge region without a
    // live block (256 MiB of address space, src/region.rs; trim unmaps
    // the others) and the heap pool.
    assert!(
        end.reserved <= end.cached_segments * 4 * MIB + 256 * MIB + 4 * MIB,
        "{msg}"
    );
    // ... and after trim() almost nothing of it is committed.
    assert!(end.committed <= 4 * MIB, "{msg}");
}

// ---------------------------------------------------------------------------

const CASE_VAR: &str = "TM_TEST_STRESS_CHILD";

/// Two threads free, at the same moment, the last two blocks of a segment
/// whose owner has exited (an abandoned segment). Both frees take the
/// abandoned path (`arena::reclaim_frees`); each collects its own block's
/// word under the arena lock (the blocks lie in different pages), and the
/// one that finds the segment empty with no other free in flight releases
/// it, which unmaps it when the arena's segment cache is full. The other
/// must not touch the segment after that, and one of them must release it. Many such races are run; the work runs in
/// a child process so that a crash is reported as a failure of this test.
#[test]
fn racing_last_frees_of_abandoned_segments() {
    in_child(
        "racing_last_frees_of_abandoned_segments",
        &[],
        racing_last_frees_child,
    );
}

/// Runs `child` in a child process (this test binary again, running only
/// the test `name`, with `env` set), so that its statistics start from
/// nothing and a crash is reported as a failure of the test.
fn in_child(name: &str, env: &[(&str, &str)], child: fn()) {
    if std::env::var_os(CASE_VAR).is_some() {
        child();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE_VAR, "1")
        .envs(env.iter().copied())
        .no_core_dump()
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child failed: {:?}\n--- stderr:\n{}\n--- stdout:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A thread that exits with live blocks leaves its segment abandoned in
/// its arena; the next thread is given the other arena (round robin), and
/// when it needs a page it adopts that segment rather than mapping a new
/// one beside it (a server thread that replaces an exited one inherits its
/// blocks and frees them as their owner). Two arenas, so that the two
/// threads' arenas differ whatever the machine's CPU count.
#[test]
fn abandoned_segments_are_adopted_across_arenas() {
    in_child(
        "abandoned_segments_are_adopted_across_arenas",
        &[("TINYMALLOC_ARENAS", "2")],
        adoption_across_arenas_child,
    );
}

fn adoption_across_arenas_child() {
    let inherited: Vec<usize> = thread::spawn(|| {
        (0..2000)
            .map(|_| unsafe { raw::malloc(48) } as usize)
            .collect()
    })
    .join()
    .unwrap();
    let s = tinymalloc::stats();
    assert_eq!(s.arenas, 2, "{s:?}");
    assert_eq!((s.segments, s.abandoned_segments), (1, 1), "{s:?}");
    thread::spawn(move || {
        // Another class: the new thread needs a page of its own.
        let p = unsafe { raw::malloc(1000) };
        assert!(!p.is_null());
        let s = tinymalloc::stats();
        assert_eq!(
            (s.segments, s.abandoned_segments),
            (1, 0),
            "the abandoned segment of the other arena must be adopted: {s:?}"
        );
        // The inherited blocks are now this thread's own.
        for b in inherited {
            // SAFETY: live blocks, freed once.
            unsafe { raw::free(b as *mut u8) };
        }
        // SAFETY: as above.
        unsafe { raw::free(p) };
        let s = tinymalloc::stats();
        assert_eq!(s.cross_thread_frees, 0, "{s:?}");
    })
    .join()
    .unwrap();
    raw::trim();
    let s = tinymalloc::stats();
    assert_eq!((s.segments, s.abandoned_segments), (0, 0), "{s:?}");
}

fn racing_last_frees_child() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const BLOCK: usize = 32 * KIB; // two blocks per 64 KiB page
    const PER_SEGMENT: usize = 124; // 62 usable pages
    const SEGMENTS_PER_MAKER: usize = 64;
    const MAKERS: usize = 8;
    // Fill the arena caches: empty segments beyond them are unmapped.
    for _ in 0..4 {
        thread::spawn(|| {
            let v: Vec<usize> = (0..8 * PER_SEGMENT)
                .map(|_| unsafe { raw::malloc(BLOCK) } as usize)
                .collect();
            for p in v {
                // SAFETY: live blocks, freed once.
                unsafe { raw::free(p as *mut u8) };
            }
        })
        .join()
        .unwrap();
    }
    let mut races = 0;
    for _ in 0..MAKERS {
        // A maker fills segments, frees all but two blocks of each, and
        // exits: its segments are abandoned with two live blocks each.
        let pairs: Vec<(usize, usize)> = thread::spawn(|| {
            let all: Vec<usize> = (0..SEGMENTS_PER_MAKER * PER_SEGMENT)
                .map(|_| unsafe { raw::malloc(BLOCK) } as usize)
                .collect();
            let mut by_segment: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
            for &p in &all {
                assert!(p != 0);
                by_segment.entry(p & !(4 * MIB - 1)).or_default().push(p);
            }
            let mut pairs = Vec::new();
            for (_, mut v) in by_segment {
                if v.len() < 2 {
                    continue;
                }
                let a = v.pop().unwrap();
                let b = v.swap_remove(0);
                for p in v {
                    // SAFETY: live blocks, freed once.
                    unsafe { raw::free(p as *mut u8) };
                }
                pairs.push((a, b));
            }
            pairs
        })
        .join()
        .unwrap();
        // Two threads free the two last blocks of each segment at once.
        let arrived = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|side| {
                let arrived = arrived.clone();
                let mine: Vec<usize> = pairs
                    .iter()
                    .map(|&(a, b)| if side == 0 { a } else { b })
                    .collect();
                thread::spawn(move || {
                    for (i, p) in mine.into_iter().enumerate() {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        while arrived.load(Ordering::SeqCst) < 2 * (i + 1) {
                            std::hint::spin_loop();
                        }
                        // SAFETY: a live block, freed once.
                        unsafe { raw::free(p as *mut u8) };
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        races += pairs.len();
    }
    // The last freer of each segment released it: no trim needed.
    let s = tinymalloc::stats();
    assert_eq!(s.abandoned_segments, 0, "before trim: {s:?}");
    raw::trim();
    let s = tinymalloc::stats();
    eprintln!("{races} racing pairs of last frees; {s:?}");
    assert_eq!(s.segments, 0, "{s:?}");
    assert_eq!(s.abandoned_segments, 0, "{s:?}");
}

/// Children that crash on purpose must not leave core files behind.
trait NoCoreDump {
    fn no_core_dump(&mut self) -> &mut Self;
}

impl NoCoreDump for std::process::Command {
    fn no_core_dump(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe and touches no memory of
        // the parent.
        unsafe {
            self.pre_exec(|| {
                let zero = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &zero);
                Ok(())
            })
        }
    }
}
