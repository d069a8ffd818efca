//! Freed memory goes back to the OS: resident memory (RSS) drops after a
//! quarter gigabyte of small, medium and large blocks is freed, both by
//! the delayed purge (driven by later allocator activity) and by
//! `raw::trim()`.
//!
//! This file runs in its own process so that no other test disturbs RSS;
//! its tests take a common lock so that they never overlap. The blocks are
//! made with `tinymalloc::raw` (the harness runs on the system allocator).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tinymalloc::{raw, set_option, stats, Opt};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const CHUNK: usize = 4 * MIB;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn resident() -> usize {
    stats().resident
}

fn mib(n: usize) -> String {
    format!("{:.1} MiB", n as f64 / MIB as f64)
}

/// Allocates and touches ~256 MiB: 128 MiB of 1 KiB blocks, 64 MiB of
/// 100-byte blocks and 64 MiB of large blocks (100 KiB .. 1 MiB).
fn allocate_quarter_gig() -> Vec<(*mut u8, usize)> {
    let mut blocks = Vec::with_capacity(800_000);
    let mut push = |size: usize, fillv: u8| {
        // SAFETY: fresh block of `size` bytes, touched whole.
        unsafe {
            let p = raw::malloc(size);
            assert!(!p.is_null(), "malloc({size}) failed");
            p.write_bytes(fillv, size);
            blocks.push((p, size));
        }
    };
    for i in 0..(128 * MIB / KIB) {
        push(KIB, i as u8);
    }
    for i in 0..(64 * MIB / 112) {
        push(100, i as u8);
    }
    let mut total = 0;
    let mut k = 0;
    while total < 64 * MIB {
        let size = 100 * KIB + (k * 37 * KIB) % (900 * KIB);
        push(size, k as u8);
        total += size;
        k += 1;
    }
    blocks
}

fn free_all(blocks: Vec<(*mut u8, usize)>) {
    for (p, size) in blocks {
        // SAFETY: live blocks, freed once; the first byte is checked.
        unsafe {
            assert!(raw::usable_size(p) >= size);
            raw::free(p);
        }
    }
}

/// A little allocator activity: the delayed purge runs on slow paths.
fn some_activity() {
    for round in 0..4 {
        let v: Vec<*mut u8> = (0..5000)
            .map(|i| {
                // SAFETY: plain allocations, freed below.
                unsafe { raw::malloc(16 + (i * 97 + round) % 4000) }
            })
            .collect();
        for p in v {
            // SAFETY: freed once.
            unsafe { raw::free(p) };
        }
        // SAFETY: a large block, freed at once.
        unsafe { raw::free(raw::malloc(300 * KIB)) };
    }
}

#[test]
fn delayed_purge_returns_memory_to_the_os() {
    let _g = serial();
    assert!(set_option(Opt::PurgeDelayMs, 10));
    let before = resident();
    let blocks = allocate_quarter_gig();
    let peak = resident();
    assert!(
        peak >= before + 240 * MIB,
        "touching 256 MiB raised RSS only from {} to {}",
        mib(before),
        mib(peak)
    );
    free_all(blocks);
    std::thread::sleep(Duration::from_millis(1000));
    some_activity();
    let after = resident();
    eprintln!(
        "delayed purge: before {}, peak {}, after free + 1 s + activity {}",
        mib(before),
        mib(peak),
        mib(after)
    );
    assert!(
        after + 200 * MIB <= peak,
        "RSS did not drop by 200 MiB: peak {}, after free + 1 s + activity {} ({:?})",
        mib(peak),
        mib(after),
        stats()
    );
}

/// With a purge delay of an hour nothing is purged by itself; one block
/// kept per segment keeps every segment in use. `trim()` must still give
/// the free pages back.
#[test]
fn trim_returns_memory_of_segments_still_in_use() {
    let _g = serial();
    trim_with_delay(3_600_000);
}

/// The same with the purge delay set to "never" (-1): `trim()`, like
/// `malloc_trim`, is an explicit request and must still release free pages.
#[test]
fn trim_returns_memory_with_purging_disabled() {
    let _g = serial();
    trim_with_delay(-1);
}

fn trim_with_delay(delay: i64) {
    assert!(set_option(Opt::PurgeDelayMs, delay));
    let before = resident();
    let blocks = allocate_quarter_gig();
    let peak = resident();
    assert!(
        peak >= before + 240 * MIB,
        "touching 256 MiB raised RSS only from {} to {}",
        mib(before),
        mib(peak)
    );
    // Keep the first block of each segment (small and large) alive.
    let mut kept = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut to_free = Vec::new();
    for (p, size) in blocks {
        if seen.insert(p as usize & !(CHUNK - 1)) {
            kept.push((p, size));
        } else {
            to_free.push((p, size));
        }
    }
    free_all(to_free);
    let before_trim = resident();
    let released = raw::trim();
    let after = resident();
    let s = stats();
    eprintln!(
        "delay {delay}: before {}, peak {}, after free {}, after trim {} ({} blocks kept in {} segments)",
        mib(before),
        mib(peak),
        mib(before_trim),
        mib(after),
        kept.len(),
        s.segments
    );
    // Restore the default before asserting, so a failure leaves the other
    // tests a sane setting (and give the kept blocks back).
    assert!(set_option(Opt::PurgeDelayMs, 10));
    free_all(kept);
    raw::trim();
    assert!(
        released,
        "purge delay {delay}: trim() reported nothing released ({s:?})"
    );
    assert!(
        after + 200 * MIB <= peak,
        "purge delay {delay}: RSS did not drop by 200 MiB after trim(): peak {}, after free {}, after trim {} ({s:?})",
        mib(peak),
        mib(before_trim),
        mib(after)
    );
}
