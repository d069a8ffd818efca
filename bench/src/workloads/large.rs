//! large and huge — big allocations, as in the large-object tests of the
//! mimalloc-bench and jemalloc suites.
//!
//! - large models programs that juggle big buffers (I/O buffers, image
//!   tiles, decompression windows): 64 KiB to 2 MiB, eight live per thread,
//!   a random one replaced at each step.
//! - huge models programs that allocate whole data sets (matrices, file
//!   images, arenas of their own): 2 MiB to 64 MiB, two live per thread.
//!
//! Every page of every block is touched, as a program filling it would, so
//! the cost of fresh pages from the OS (page faults, zeroing) against
//! reusing cached memory shows, and so does the memory kept resident.

use super::{scaled, share, Outcome};
use crate::block::Block;
use crate::rng::{seed, Rng};
use std::thread;

/// Runs large.
pub fn large(threads: usize, scale: f64) -> Outcome {
    churn(threads, scaled(20_000, scale), 8, 64 << 10, 2 << 20, 12)
}

/// Runs huge.
pub fn huge(threads: usize, scale: f64) -> Outcome {
    churn(threads, scaled(200, scale), 2, 2 << 20, 64 << 20, 13)
}

fn churn(threads: usize, total: u64, live: usize, lo: usize, hi: usize, id: u64) -> Outcome {
    let steps = share(total, threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || {
                    let mut rng = Rng::new(seed(&[id, i as u64]));
                    let mut out = Outcome::default();
                    let mut slots: Vec<Option<Block>> = (0..live).map(|_| None).collect();
                    for _ in 0..steps {
                        let j = rng.below(live);
                        slots[j] = None;
                        let tag = rng.next_u64();
                        out.add(tag);
                        slots[j] = Some(Block::new_touched(rng.log_uniform(lo, hi), tag));
                    }
                    out
                })
            })
            .collect();
        Outcome::sum(handles.into_iter().map(|h| h.join().unwrap()))
    })
}
