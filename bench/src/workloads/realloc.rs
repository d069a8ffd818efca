//! realloc — growth chains, after the realloc-heavy patterns of C string
//! builders and Rust's Vec/String growth.
//!
//! Models buffers that grow as data arrives: three in four chains are
//! strings appended a few bytes at a time (`realloc(p, n + k)`) up to a few
//! KiB, one in four are arrays grown by half each time up to 64 KiB-1 MiB.
//! Each thread grows four chains at once, round-robin, so a chain's
//! neighbour is usually not free and in-place growth is not a given. Every
//! step checks that the old contents moved with the block.

use super::{scaled, share, Outcome};
use crate::block::Block;
use crate::rng::{seed, Rng};
use std::thread;

/// Chains growing at the same time in one thread.
const ACTIVE: usize = 4;

struct Chain {
    block: Block,
    /// Bytes added per step; 0 means grow by half.
    step: usize,
    target: usize,
}

fn start(rng: &mut Rng, out: &mut Outcome) -> Chain {
    let tag = rng.next_u64();
    out.add(tag);
    if rng.chance(75) {
        Chain {
            block: Block::new(rng.range(8, 64), tag),
            step: rng.range(8, 64),
            target: rng.range(1024, 8192),
        }
    } else {
        Chain {
            block: Block::new(rng.range(16, 256), tag),
            step: 0,
            target: rng.log_uniform(64 << 10, 1 << 20),
        }
    }
}

/// Runs the workload.
pub fn run(threads: usize, scale: f64) -> Outcome {
    let steps = share(scaled(1_000_000, scale), threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || {
                    let mut rng = Rng::new(seed(&[11, i as u64]));
                    let mut out = Outcome::default();
                    let mut chains: Vec<Chain> =
                        (0..ACTIVE).map(|_| start(&mut rng, &mut out)).collect();
                    for n in 0..steps {
                        let c = &mut chains[n as usize % ACTIVE];
                        let size = c.block.size();
                        if size >= c.target {
                            *c = start(&mut rng, &mut out); // frees the old chain
                            continue;
                        }
                        let grown = if c.step == 0 {
                            size + size / 2
                        } else {
                            size + c.step
                        };
                        c.block.resize(grown.min(c.target), n as u8);
                        out.add(grown as u64);
                    }
                    out
                })
            })
            .collect();
        Outcome::sum(handles.into_iter().map(|h| h.join().unwrap()))
    })
}
