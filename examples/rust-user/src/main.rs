//! A Rust program using tinymalloc, as a new user would write it:
//!
//! 1. one line makes tinymalloc the global allocator;
//! 2. worker threads build collections that other threads consume and drop;
//! 3. over-aligned types and layouts (up to 2 MiB) get their alignment;
//! 4. a big data structure is dropped and its memory goes back to the OS.
//!
//! It prints what it sees and exits with status 1 if anything is wrong.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

// (1) The one line that matters.
#[global_allocator]
static GLOBAL: tinymalloc::TinyMalloc = tinymalloc::TinyMalloc;

static FAILURES: AtomicUsize = AtomicUsize::new(0);

macro_rules! check {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            eprintln!("FAILED: {}", format!($($msg)*));
            FAILURES.fetch_add(1, Ordering::SeqCst);
        }
    };
}

const MIB: usize = 1024 * 1024;

fn mib(n: usize) -> String {
    format!("{:.1} MiB", n as f64 / MIB as f64)
}

/// A record as an application might have: strings, a vector, a map.
struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
    scores: HashMap<String, u32>,
}

impl Record {
    fn new(id: u64) -> Record {
        let tags = (0..id % 7).map(|t| format!("tag-{t}-{id}")).collect();
        let scores = (0..id % 5)
            .map(|k| (format!("s{k}"), (id * 10 + k) as u32))
            .collect();
        Record {
            id,
            name: format!("record number {id}"),
            tags,
            scores,
        }
    }

    fn is_intact(&self) -> bool {
        let id = self.id;
        self.name == format!("record number {id}")
            && self.tags.len() as u64 == id % 7
            && self
                .tags
                .iter()
                .enumerate()
                .all(|(t, s)| *s == format!("tag-{t}-{id}"))
            && self.scores.len() as u64 == id % 5
            && self
                .scores
                .iter()
                .all(|(k, &v)| v as u64 == id * 10 + k[1..].parse::<u64>().unwrap())
    }
}

/// (2) Producers build batches of records; one consumer thread checks them,
/// keeps a summary and drops them: every record is freed by a thread other
/// than the one that allocated it.
fn threads_and_collections() {
    const PRODUCERS: u64 = 4;
    const BATCHES: u64 = 200;
    const PER_BATCH: u64 = 250;
    let (tx, rx) = mpsc::sync_channel::<Vec<Record>>(16);
    let consumer = thread::spawn(move || {
        let mut per_name_len: BTreeMap<usize, usize> = BTreeMap::new();
        let mut seen = 0u64;
        let mut broken = 0u64;
        for batch in rx {
            for r in &batch {
                if !r.is_intact() {
                    broken += 1;
                }
                *per_name_len.entry(r.name.len()).or_default() += 1;
            }
            seen += batch.len() as u64;
            // `batch` is dropped here, on the consumer thread.
        }
        (seen, broken, per_name_len.values().sum::<usize>())
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                for b in 0..BATCHES {
                    let base = (p * BATCHES + b) * PER_BATCH;
                    let batch: Vec<Record> = (base..base + PER_BATCH).map(Record::new).collect();
                    tx.send(batch).expect("consumer alive");
                }
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.join().expect("producer");
    }
    let (seen, broken, counted) = consumer.join().expect("consumer");
    let want = PRODUCERS * BATCHES * PER_BATCH;
    println!(
        "threads: {seen} records built on {PRODUCERS} threads, checked and dropped on another"
    );
    check!(seen == want, "consumer saw {seen} records, expected {want}");
    check!(broken == 0, "{broken} records were corrupted");
    check!(counted as u64 == want, "summary counted {counted}");
}

#[repr(align(4096))]
struct PageAligned([u8; 4096]);

#[repr(align(2097152))]
struct HugeAligned(u64);

/// (3) Alignment: types with a large alignment, and raw layouts.
fn alignments() {
    let pages: Vec<Box<PageAligned>> = (0..64)
        .map(|i| Box::new(PageAligned([i as u8; 4096])))
        .collect();
    for (i, p) in pages.iter().enumerate() {
        let addr = &**p as *const PageAligned as usize;
        check!(addr.is_multiple_of(4096), "Box<PageAligned> at {addr:#x}");
        check!(
            p.0.iter().all(|&b| b == i as u8),
            "PageAligned {i} corrupted"
        );
    }
    let big = Box::new(HugeAligned(42));
    let addr = &*big as *const HugeAligned as usize;
    check!(
        addr.is_multiple_of(2 * MIB) && big.0 == 42,
        "Box<HugeAligned> at {addr:#x}"
    );

    let mut align = 16;
    let mut count = 0;
    while align <= 2 * MIB {
        for size in [1, 100, 5000, 100_000, 3 * MIB] {
            let layout = Layout::from_size_align(size, align).expect("valid layout");
            // SAFETY: a non-zero-size layout, freed with the same layout.
            unsafe {
                let p = alloc(layout);
                check!(!p.is_null(), "alloc({layout:?}) returned null");
                if p.is_null() {
                    continue;
                }
                check!(
                    (p as usize).is_multiple_of(align),
                    "alloc({layout:?}) = {p:p} is misaligned"
                );
                p.write_bytes(0x77, size);
                check!(p.add(size - 1).read() == 0x77, "last byte of {layout:?}");
                dealloc(p, layout);
            }
            count += 1;
        }
        align *= 2;
    }
    println!("alignment: {count} layouts from 16 B to 2 MiB alignment, all aligned");
}

/// (4) Build ~300 MiB of small and medium objects, drop it, and watch the
/// resident memory go back down.
fn memory_goes_back() {
    let start = tinymalloc::stats().resident;
    let mut index: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut words: Vec<String> = Vec::new();
    for i in 0..250_000u64 {
        index.insert(i, vec![(i % 251) as u8; 1000 + (i % 7) as usize * 100]);
        words.push(format!("word-{i:08}"));
    }
    let built = tinymalloc::stats().resident;
    let intact = index
        .iter()
        .all(|(k, v)| v.iter().all(|&b| b == (k % 251) as u8));
    check!(intact, "big structure corrupted");
    drop(index);
    drop(words);
    // Free pages go back to the OS after a short delay (10 ms by default),
    // the next time the allocator is busy. Give it a moment and some work.
    thread::sleep(Duration::from_millis(200));
    let scratch: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 64]).collect();
    drop(scratch);
    let after_drop = tinymalloc::stats().resident;
    // An explicit trim gives back everything free right away.
    tinymalloc::raw::trim();
    let after_trim = tinymalloc::stats().resident;
    println!(
        "memory: resident {} at start, {} with the structure, {} after dropping it, {} after trim()",
        mib(start),
        mib(built),
        mib(after_drop),
        mib(after_trim)
    );
    let grown = built.saturating_sub(start);
    check!(
        grown >= 250 * MIB,
        "the structure should take over 250 MiB, took {}",
        mib(grown)
    );
    check!(
        after_drop <= start + grown / 4,
        "after the drop resident memory should be back near {}, is {}",
        mib(start),
        mib(after_drop)
    );
    check!(
        after_trim <= start + grown / 8,
        "after trim() resident memory is still {}",
        mib(after_trim)
    );
}

fn main() {
    threads_and_collections();
    alignments();
    memory_goes_back();
    let s = tinymalloc::stats();
    println!(
        "tinymalloc: {} segments in use, {} arenas, {} threads",
        s.segments, s.arenas, s.threads
    );
    let failures = FAILURES.load(Ordering::SeqCst);
    if failures > 0 {
        eprintln!("{failures} check(s) failed");
        std::process::exit(1);
    }
    println!("all checks passed");
}
