//! mstress — after mimalloc-bench's mstress (Daan Leijen).
//!
//! Models a long-running multi-threaded application with mixed object
//! lifetimes: half of all objects are temporaries freed at once, some are
//! retained for a while in per-thread state, a few are large, and some are
//! published in a shared table where another thread later replaces (and
//! frees) them. Threads are restarted between iterations, so allocators must
//! also deal with heaps of exited threads whose objects are still live.

use super::{scaled, share, Outcome};
use crate::block::Block;
use crate::rng::{seed, Rng};
use std::sync::Mutex;
use std::thread;

/// Shared slots through which objects change hands.
const TRANSFER: usize = 1000;
/// Per-thread retained objects.
const RETAIN: usize = 500;
/// Thread restarts per run.
const ITERATIONS: u64 = 5;

/// Runs the workload.
pub fn run(threads: usize, scale: f64) -> Outcome {
    let steps = (share(scaled(1_500_000, scale), threads) / ITERATIONS).max(1);
    let transfer: Vec<Mutex<Option<Block>>> = (0..TRANSFER).map(|_| Mutex::new(None)).collect();
    let mut total = Outcome::default();
    for it in 0..ITERATIONS {
        thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let transfer = &transfer;
                    let rng = Rng::new(seed(&[5, it, i as u64]));
                    s.spawn(move || stress(transfer, rng, steps))
                })
                .collect();
            for h in handles {
                total.merge(h.join().unwrap());
            }
        });
    }
    drop(transfer);
    total
}

/// Mostly small objects, 1% medium to large.
fn size(rng: &mut Rng) -> usize {
    if rng.chance(1) {
        rng.log_uniform(1024, 256 << 10)
    } else {
        rng.power_law(8, 1024)
    }
}

fn stress(transfer: &[Mutex<Option<Block>>], mut rng: Rng, steps: u64) -> Outcome {
    let mut out = Outcome::default();
    let mut retained: Vec<Option<Block>> = (0..RETAIN).map(|_| None).collect();
    for _ in 0..steps {
        let tag = rng.next_u64();
        out.add(tag);
        let b = Block::new(size(&mut rng), tag);
        match rng.below(100) {
            // A temporary: freed at once.
            0..=49 => drop(b),
            // Kept in thread state, replacing an older object.
            50..=79 => retained[rng.below(RETAIN)] = Some(b),
            // Published: whoever held the slot's object frees it.
            80..=94 => {
                let slot = rng.below(TRANSFER);
                let old = transfer[slot].lock().unwrap().replace(b);
                drop(old);
            }
            // State shrinks: a retained object goes, and so does the temporary.
            _ => {
                retained[rng.below(RETAIN)] = None;
                drop(b);
            }
        }
    }
    out
}
