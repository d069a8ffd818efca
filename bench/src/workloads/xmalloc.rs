//! xmalloc — after xmalloc-test (Lever & Boreham, "malloc() performance in a
//! multithreaded Linux environment", USENIX 2000; later Christian Eder).
//!
//! Models a producer/consumer pipeline (a network stage parsing messages and
//! handing them to workers): T producer threads allocate small messages in
//! batches and T consumer threads read and free them. Every free is a
//! cross-thread free and memory flows one way, from the allocating threads
//! to the freeing ones, which is the worst case for allocators that cache
//! freed memory per thread.

use super::{scaled, share, Outcome};
use crate::block::Block;
use crate::rng::{seed, Rng};
use std::sync::mpsc::sync_channel;
use std::thread;

/// Messages per batch handed over.
const BATCH: usize = 64;
/// Batches in flight per producer/consumer pair.
const QUEUE: usize = 8;

/// Runs the workload; `threads` is the number of producer/consumer PAIRS.
pub fn run(threads: usize, scale: f64) -> Outcome {
    let batches = (share(scaled(2_000_000, scale), threads) / BATCH as u64).max(1);
    thread::scope(|s| {
        let mut pairs = Vec::new();
        for i in 0..threads {
            let (tx, rx) = sync_channel::<Vec<Block>>(QUEUE);
            let producer = s.spawn(move || {
                let mut rng = Rng::new(seed(&[2, i as u64]));
                let mut out = Outcome::default();
                for _ in 0..batches {
                    let batch: Vec<Block> = (0..BATCH)
                        .map(|_| {
                            let tag = rng.next_u64();
                            out.add(tag);
                            Block::new(rng.power_law(16, 512), tag)
                        })
                        .collect();
                    tx.send(batch).unwrap();
                }
                out
            });
            let consumer = s.spawn(move || {
                let mut sum = 0u64;
                for batch in rx {
                    for msg in batch {
                        sum = sum.wrapping_add(msg.tag());
                        drop(msg); // checks the pattern, then frees
                    }
                }
                sum
            });
            pairs.push((producer, consumer));
        }
        let mut total = Outcome::default();
        for (p, c) in pairs {
            let made = p.join().unwrap();
            assert_eq!(c.join().unwrap(), made.checksum, "a message went missing");
            total.merge(made);
        }
        total
    })
}
