//! Fuzz target `threads`: the input's first byte picks 2-4 threads; the
//! rest is dealt out to them (8-byte runs, round robin), and each thread
//! runs its own op stream at the same time as the others. Blocks travel
//! between threads through a shared vector, so most frees and reallocs of
//! travelled blocks are cross-thread, and a thread may end while others
//! still free its blocks (its segments are abandoned, then reclaimed).
//! One shared range map (under a mutex) checks that no two live blocks of
//! any thread overlap; every block is verified before it is freed or
//! resized, and once more by whoever frees it at the end.
//!
//! Op byte (then its arguments):
//!   0-4  alloc: api(byte) size align (kept)
//!   5-6  alloc small and give it away: api(byte) size(byte)
//!   7    give a kept block to the shared vector: pick(byte)
//!   8-9  take a block from the shared vector and free it: how(byte)
//!   10   take a block from the shared vector and keep it (realloc it)
//!   11-12 free a kept block: pick(byte) how(byte)
//!   13   realloc a kept block: pick(byte) size
//!   14   yield
//!   15   trim
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Barrier, Mutex};
use tinymalloc::raw;
use tinymalloc_fuzz::{alloc, free, realloc, Block, Input, Ranges, LIVE_CAP};

struct Shared {
    ranges: Mutex<Ranges>,
    pool: Mutex<Vec<Block>>,
}

fn run(sh: &Shared, data: &[u8], tno: u64) {
    let mut inp = Input::new(data);
    let mut mine: Vec<Block> = Vec::new();
    // Ids are unique across threads: thread number in the top bits.
    let mut next_id = (tno << 48) + 1;
    let take = |how: u8| -> Option<Block> {
        let mut pool = sh.pool.lock().unwrap();
        if pool.is_empty() {
            return None;
        }
        let i = how as usize % pool.len();
        Some(pool.swap_remove(i))
    };
    let remove = |b: &Block| sh.ranges.lock().unwrap().remove(b);
    let insert = |b: &Block| sh.ranges.lock().unwrap().insert(b);
    while !inp.done() {
        let op = inp.byte() % 16;
        match op {
            0..=6 => {
                let how = inp.byte();
                let (size, align) = if op >= 5 {
                    (inp.byte() as usize % 200, 16)
                } else {
                    (inp.size(), inp.align())
                };
                if sh.ranges.lock().unwrap().live + size > LIVE_CAP {
                    if let Some(b) = mine.pop() {
                        remove(&b);
                        free(&b, how);
                    }
                    continue;
                }
                let Some(b) = alloc(how, size, align, next_id) else {
                    panic!("alloc({size}, align {align}, api {how}) returned null");
                };
                next_id += 1;
                insert(&b);
                if op >= 5 {
                    sh.pool.lock().unwrap().push(b);
                } else {
                    mine.push(b);
                }
            }
            7 => {
                let pick = inp.byte() as usize;
                if !mine.is_empty() {
                    let b = mine.swap_remove(pick % mine.len());
                    sh.pool.lock().unwrap().push(b);
                }
            }
            8 | 9 => {
                let how = inp.byte();
                if let Some(b) = take(how) {
                    remove(&b);
                    free(&b, how);
                }
            }
            10 => {
                let how = inp.byte();
                if let Some(b) = take(how) {
                    mine.push(b);
                }
            }
            11 | 12 => {
                let (pick, how) = (inp.byte() as usize, inp.byte());
                if !mine.is_empty() {
                    let b = mine.swap_remove(pick % mine.len());
                    remove(&b);
                    free(&b, how);
                }
            }
            13 => {
                let pick = inp.byte() as usize;
                let size = inp.size();
                if !mine.is_empty() {
                    let i = pick % mine.len();
                    let b = mine[i];
                    if sh.ranges.lock().unwrap().live - b.size + size > LIVE_CAP {
                        continue;
                    }
                    remove(&b);
                    let Some(nb) = realloc(&b, size) else {
                        panic!("realloc({:#x}, {size}) returned null", b.p);
                    };
                    insert(&nb);
                    mine[i] = nb;
                }
            }
            14 => std::thread::yield_now(),
            _ => {
                raw::trim();
            }
        }
    }
    // Half of what is left goes to the shared vector (freed by the main
    // thread after this one has ended), the rest is freed here.
    for (k, b) in mine.drain(..).enumerate() {
        if k % 2 == 0 {
            sh.pool.lock().unwrap().push(b);
        } else {
            remove(&b);
            free(&b, b.id as u8);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let n = 2 + inp.byte() as usize % 3;
    let parts = inp.split(n);
    let sh = Shared {
        ranges: Mutex::new(Ranges::default()),
        pool: Mutex::new(Vec::new()),
    };
    let start = Barrier::new(n);
    std::thread::scope(|s| {
        for (t, part) in parts.iter().enumerate() {
            let (sh, start) = (&sh, &start);
            s.spawn(move || {
                start.wait();
                run(sh, part, t as u64 + 1);
            });
        }
    });
    // Every thread has ended: free what they left, cross-thread.
    let left: Vec<Block> = sh.pool.lock().unwrap().drain(..).collect();
    for b in left {
        sh.ranges.lock().unwrap().remove(&b);
        free(&b, b.id as u8);
    }
    assert_eq!(sh.ranges.lock().unwrap().live, 0);
    // Every thread of this input has ended (its segments abandoned, then
    // released as their blocks were freed): nothing in use, a bounded
    // footprint.
    tinymalloc_fuzz::check_nothing_lost(768 << 20);
});
