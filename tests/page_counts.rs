//! Pages count their blocks in use exactly, although `malloc`'s fast path
//! does not count on the page (the heap catches the current page's count
//! up later: `heap::sync`). A count too low would retire a page that still
//! holds live blocks (later blocks would overlap them: the patterns below
//! catch it); a count too high would keep empty pages and segments forever
//! (the segment counts below catch it).
//!
//! One test, its scenarios in sequence: segment counts are process-wide.
//! Blocks are made with `tinymalloc::raw` (the harness runs on the system
//! allocator), each in threads of their own, so that every scenario starts
//! from a fresh heap and ends with the thread's exit.

use std::sync::mpsc;
use std::thread;
use tinymalloc::{raw, stats};

const SIZE: usize = 48;

/// A block stamped with its own address and a serial number.
struct Block(*mut u8, u64);

// SAFETY: a block is owned by whoever holds it (moved to free elsewhere).
unsafe impl Send for Block {}

impl Block {
    fn new(serial: u64) -> Block {
        // SAFETY: a fresh block of SIZE bytes, written whole.
        unsafe {
            let p = raw::malloc(SIZE);
            assert!(!p.is_null());
            for k in 0..SIZE / 8 {
                p.cast::<u64>().add(k).write(serial ^ (p as u64) ^ k as u64);
            }
            Block(p, serial)
        }
    }

    /// Checks the stamp, then frees the block.
    fn free(self) {
        // SAFETY: our live block of SIZE bytes.
        unsafe {
            for k in 0..SIZE / 8 {
                let v = self.0.cast::<u64>().add(k).read();
                assert_eq!(
                    v,
                    self.1 ^ (self.0 as u64) ^ k as u64,
                    "block {:p} (serial {}) overwritten: two live blocks overlap",
                    self.0,
                    self.1
                );
            }
            raw::free(self.0);
        }
    }
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Segments in use and bytes in live small blocks, now (after `trim`,
/// which in secure mode really frees the blocks its quarantine holds).
fn in_use() -> (usize, usize) {
    raw::trim();
    let s = stats();
    (s.segments, s.small_in_use)
}

/// Owner-only churn: one block out, one in, with bursts that fill whole
/// pages and empty them again, so that current pages change, fill up,
/// come back from full and empty while `malloc` counts late.
fn churn_alone() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut live: Vec<Block> = (0..300).map(Block::new).collect();
    let mut serial = 1000;
    for round in 0..300_000 {
        let i = rng.below(live.len());
        live.swap_remove(i).free();
        serial += 1;
        live.push(Block::new(serial));
        if round % 20_000 == 0 {
            let burst: Vec<Block> = (0..5_000).map(|k| Block::new(serial + 1 + k)).collect();
            serial += 5_001;
            // Freed in an order unlike their allocation's.
            let mut burst = burst;
            while !burst.is_empty() {
                let j = rng.below(burst.len());
                burst.swap_remove(j).free();
            }
        }
    }
    for b in live {
        b.free();
    }
}

/// The owner allocates while another thread frees most of its blocks
/// (collected cross-thread frees on the current page).
fn churn_with_remote_frees() {
    let (tx, rx) = mpsc::sync_channel::<Block>(1024);
    let freer = thread::spawn(move || {
        for b in rx {
            b.free();
        }
    });
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut mine: Vec<Block> = Vec::new();
    for serial in 0..200_000u64 {
        let b = Block::new(serial);
        if rng.below(4) == 0 {
            mine.push(b);
            if mine.len() > 200 {
                let j = rng.below(mine.len());
                mine.swap_remove(j).free();
            }
        } else {
            tx.send(b).unwrap();
        }
    }
    drop(tx);
    freer.join().unwrap();
    for b in mine {
        b.free();
    }
}

/// One block at a time, each freed by another thread before the next is
/// made: the owner never frees, so only collection brings the current
/// page's count down (tens of thousands of times without the page filling
/// up).
fn one_at_a_time_freed_elsewhere() {
    let (tx, rx) = mpsc::sync_channel::<Block>(0);
    let (done_tx, done_rx) = mpsc::sync_channel::<()>(0);
    let freer = thread::spawn(move || {
        for b in rx {
            b.free();
            done_tx.send(()).unwrap();
        }
    });
    for serial in 0..40_000u64 {
        tx.send(Block::new(serial)).unwrap();
        done_rx.recv().unwrap();
    }
    drop(tx);
    freer.join().unwrap();
}

/// Three threads free the owner's blocks at once, dealt round-robin, so
/// that they set bits of the same xfree words concurrently while the
/// owner keeps allocating and collecting. A cross-thread free into a word
/// that already holds an uncollected block touches nothing after its bit
/// (the collection of that block takes the whole word): a lost bit would
/// keep its page, and so the segment, in use for good (the segment count
/// after the owner's exit catches it).
fn many_freers_into_shared_words() {
    let (txs, handles): (Vec<_>, Vec<_>) = (0..3)
        .map(|_| {
            let (tx, rx) = mpsc::sync_channel::<Vec<Block>>(4);
            let h = thread::spawn(move || {
                for batch in rx {
                    for b in batch {
                        b.free();
                    }
                }
            });
            (tx, h)
        })
        .unzip();
    let mut serial = 0u64;
    for round in 0..3_000 {
        let mut batches: Vec<Vec<Block>> = (0..3).map(|_| Vec::new()).collect();
        for k in 0..96 {
            batches[k % 3].push(Block::new(serial));
            serial += 1;
        }
        for (tx, batch) in txs.iter().zip(batches) {
            tx.send(batch).unwrap();
        }
        if round % 500 == 0 {
            // Let the freers drain now and then, so that pages empty and
            // are retired while the owner is alive.
            thread::yield_now();
        }
    }
    drop(txs);
    for h in handles {
        h.join().unwrap();
    }
}

/// The blocks of a page's last free-row word (whose unused high bits,
/// past the page's last block, are always set) freed by another thread
/// after the owner collected every other free of the page: the first of
/// them must still flag the page for collection, the pad bits promising
/// none. Otherwise the page keeps them as in use and its segment is never
/// released (the segment count after the owner's exit catches it).
fn last_word_freed_elsewhere_after_a_collection() {
    const CAP: usize = 65536 / SIZE;
    let (tx, rx) = mpsc::sync_channel::<Vec<Block>>(0);
    let (done_tx, done_rx) = mpsc::sync_channel::<()>(0);
    let freer = thread::spawn(move || {
        for batch in rx {
            for b in batch {
                b.free();
            }
            done_tx.send(()).unwrap();
        }
    });
    let blocks: Vec<Block> = (0..2 * CAP as u64).map(Block::new).collect();
    // The fresh thread's first page: the one holding the first block.
    let page = blocks[0].0 as usize & !0xffff;
    let (first, rest): (Vec<Block>, Vec<Block>) = blocks
        .into_iter()
        .partition(|b| b.0 as usize & !0xffff == page);
    assert_eq!(first.len(), CAP, "the first page holds CAP blocks");
    let (last_word, others): (Vec<Block>, Vec<Block>) = first
        .into_iter()
        .partition(|b| (b.0 as usize & 0xffff) / SIZE >= CAP / 64 * 64);
    assert!(!last_word.is_empty());
    tx.send(others).unwrap();
    done_rx.recv().unwrap();
    // Collects the frees so far (the page's xfree row is now empty).
    raw::trim();
    tx.send(last_word).unwrap();
    done_rx.recv().unwrap();
    drop(tx);
    freer.join().unwrap();
    for b in rest {
        b.free();
    }
}

#[test]
fn page_counts_stay_exact() {
    let (segs0, small0) = in_use();

    thread::spawn(churn_alone).join().unwrap();
    assert_eq!(in_use(), (segs0, small0), "after owner-only churn");

    thread::spawn(churn_with_remote_frees).join().unwrap();
    assert_eq!(in_use(), (segs0, small0), "after cross-thread frees");

    thread::spawn(many_freers_into_shared_words).join().unwrap();
    assert_eq!(
        in_use(),
        (segs0, small0),
        "after three threads freeing into shared words"
    );

    thread::spawn(last_word_freed_elsewhere_after_a_collection)
        .join()
        .unwrap();
    assert_eq!(
        in_use(),
        (segs0, small0),
        "after a last word freed elsewhere"
    );

    thread::spawn(one_at_a_time_freed_elsewhere).join().unwrap();
    assert_eq!(
        in_use(),
        (segs0, small0),
        "after one-at-a-time remote frees"
    );

    // A thread ends while its current page holds blocks that `malloc`
    // has not yet counted on the page; another thread frees them into
    // the abandoned segment, which must then be released.
    let left: Vec<Block> = thread::spawn(|| (0..1_000).map(Block::new).collect())
        .join()
        .unwrap();
    assert!(in_use().0 > segs0);
    for b in left {
        b.free();
    }
    assert_eq!(
        in_use(),
        (segs0, small0),
        "after frees into an abandoned segment"
    );
}
