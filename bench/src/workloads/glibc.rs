//! glibc-simple and glibc-thread — after glibc's benchtests
//! bench-malloc-simple and bench-malloc-thread.
//!
//! Both model the most common allocation pattern of C and C++ programs:
//! enormous numbers of tiny, short-lived objects (list nodes, small strings,
//! temporary structs).
//!
//! - simple: one thread allocates bursts of 25 to 1600 blocks of one size
//!   (16 to 128 bytes) and frees each burst in allocation order.
//! - thread: every thread keeps a 1024-slot working set and repeatedly frees
//!   a random slot and allocates a replacement of a size drawn from a steep
//!   power law (mostly 4 to 64 bytes); no object crosses threads.

use super::{scaled, share, Outcome};
use crate::block::Block;
use crate::rng::{seed, Rng};
use std::thread;

const SIZES: [usize; 4] = [16, 32, 64, 128];
const BURSTS: [usize; 4] = [25, 100, 400, 1600];
const WORKING_SET: usize = 1024;

/// Runs glibc-simple (single-threaded).
pub fn simple(_threads: usize, scale: f64) -> Outcome {
    let per_round: usize = SIZES.len() * BURSTS.iter().sum::<usize>();
    let rounds = (scaled(2_500_000, scale) / per_round as u64).max(1);
    let mut rng = Rng::new(seed(&[7]));
    let mut out = Outcome::default();
    let mut burst: Vec<Block> = Vec::with_capacity(BURSTS[3]);
    for _ in 0..rounds {
        for &size in &SIZES {
            for &n in &BURSTS {
                for _ in 0..n {
                    let tag = rng.next_u64();
                    out.add(tag);
                    burst.push(Block::new(size, tag));
                }
                burst.clear(); // frees in allocation order
            }
        }
    }
    out
}

/// Runs glibc-thread.
pub fn thread(threads: usize, scale: f64) -> Outcome {
    let steps = share(scaled(3_000_000, scale), threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || {
                    let mut rng = Rng::new(seed(&[8, i as u64]));
                    let mut out = Outcome::default();
                    let mut slots: Vec<Option<Block>> = (0..WORKING_SET).map(|_| None).collect();
                    for _ in 0..steps {
                        let j = rng.below(WORKING_SET);
                        slots[j] = None;
                        let tag = rng.next_u64();
                        out.add(tag);
                        slots[j] = Some(Block::new(rng.power_law(4, 4096), tag));
                    }
                    out
                })
            })
            .collect();
        Outcome::sum(handles.into_iter().map(|h| h.join().unwrap()))
    })
}
