//! larson — after Larson & Krishnan's server benchmark ("Memory allocation for
//! long-running server applications", ISMM 1998).
//!
//! Models a multi-threaded server: each worker thread owns a pool of live
//! objects (sessions, requests, buffers) of random small sizes and keeps
//! replacing random ones: free one, allocate a new one. Server threads are
//! retired and replaced in generations, and each new thread inherits the
//! pool of a retired one, so most objects are freed by a thread other than
//! the one that allocated them, often one that has already exited.

use super::{scaled, share, Outcome};
use crate::block::Block;
use crate::rng::{seed, Rng};
use std::thread;

/// Live objects per server thread.
const SLOTS: usize = 1000;
/// Object sizes, uniform.
const MIN: usize = 8;
const MAX: usize = 1000;
/// Thread generations per run.
const GENERATIONS: u64 = 4;

/// Runs the workload.
pub fn run(threads: usize, scale: f64) -> Outcome {
    let per_gen = (share(scaled(2_000_000, scale), threads) / GENERATIONS).max(1);
    let mut total = Outcome::default();
    // The main thread fills every pool before the servers start, as the
    // original does: the first frees of every thread are cross-thread.
    let mut rng = Rng::new(seed(&[1, threads as u64]));
    let mut pools: Vec<Vec<Block>> = (0..threads)
        .map(|_| {
            (0..SLOTS)
                .map(|_| {
                    let tag = rng.next_u64();
                    total.add(tag);
                    Block::new(rng.range(MIN, MAX), tag)
                })
                .collect()
        })
        .collect();
    for gen in 0..GENERATIONS {
        let done: Vec<(Vec<Block>, Outcome)> = thread::scope(|s| {
            let handles: Vec<_> = pools
                .drain(..)
                .enumerate()
                .map(|(i, pool)| {
                    let rng = Rng::new(seed(&[1, gen, i as u64]));
                    s.spawn(move || serve(pool, rng, per_gen))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (pool, outcome) in done {
            total.merge(outcome);
            pools.push(pool);
        }
        // The next generation's thread i inherits thread i+1's pool.
        pools.rotate_left(1);
    }
    drop(pools);
    total
}

/// One server thread: `ops` times, free a random object and allocate a new
/// one of random size.
fn serve(mut pool: Vec<Block>, mut rng: Rng, ops: u64) -> (Vec<Block>, Outcome) {
    let mut out = Outcome::default();
    for _ in 0..ops {
        let victim = rng.below(pool.len());
        drop(pool.swap_remove(victim));
        let tag = rng.next_u64();
        out.add(tag);
        pool.push(Block::new(rng.range(MIN, MAX), tag));
    }
    (pool, out)
}
