//! sh6bench and sh8bench — after MicroQuill's SmartHeap benchmarks bench6 and
//! bench8.
//!
//! Both model batch processing: a thread builds a batch of objects of
//! assorted sizes (the nodes of a list, tree or parse) and tears it down
//! later, in an order that differs from allocation order.
//!
//! - sh6bench: each thread frees every other object front to back (FIFO),
//!   then the rest back to front (LIFO). No object crosses threads.
//! - sh8bench: each thread frees a third of its batch in random order, then
//!   passes the rest to the next thread in a ring, which frees it back to
//!   front: local random-order frees mixed with cross-thread LIFO frees.

use super::{scaled, share, Outcome};
use crate::block::Block;
use crate::rng::{seed, Rng};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;

/// What one sh8bench thread hands to the next.
type Hand = Vec<Block>;

const SH6_BATCH: usize = 1000;
const SH8_BATCH: usize = 600;
/// Sizes are uniform in 1..=MAX, as in the originals.
const MAX: usize = 1000;

fn batch(rng: &mut Rng, n: usize, out: &mut Outcome) -> Vec<Block> {
    (0..n)
        .map(|_| {
            let tag = rng.next_u64();
            out.add(tag);
            Block::new(rng.range(1, MAX), tag)
        })
        .collect()
}

fn join_all(handles: Vec<thread::ScopedJoinHandle<'_, Outcome>>) -> Outcome {
    let mut total = Outcome::default();
    for h in handles {
        total.merge(h.join().unwrap());
    }
    total
}

/// Runs sh6bench.
pub fn sh6(threads: usize, scale: f64) -> Outcome {
    let rounds = (share(scaled(2_000_000, scale), threads) / SH6_BATCH as u64).max(1);
    thread::scope(|s| {
        let handles = (0..threads)
            .map(|i| {
                s.spawn(move || {
                    let mut rng = Rng::new(seed(&[9, i as u64]));
                    let mut out = Outcome::default();
                    for _ in 0..rounds {
                        let mut objs: Vec<Option<Block>> = batch(&mut rng, SH6_BATCH, &mut out)
                            .into_iter()
                            .map(Some)
                            .collect();
                        for o in objs.iter_mut().skip(1).step_by(2) {
                            *o = None; // odd ones, front to back
                        }
                        while let Some(o) = objs.pop() {
                            drop(o); // the rest, back to front
                        }
                    }
                    out
                })
            })
            .collect();
        join_all(handles)
    })
}

/// Runs sh8bench.
pub fn sh8(threads: usize, scale: f64) -> Outcome {
    let rounds = (share(scaled(2_000_000, scale), threads) / SH8_BATCH as u64).max(1);
    // Thread i sends to thread i+1 (mod threads).
    let (txs, mut rxs): (Vec<Sender<Hand>>, Vec<Receiver<Hand>>) =
        (0..threads).map(|_| channel()).unzip();
    rxs.rotate_right(1);
    thread::scope(|s| {
        let handles = txs
            .into_iter()
            .zip(rxs)
            .enumerate()
            .map(|(i, (tx, rx))| {
                s.spawn(move || {
                    let mut rng = Rng::new(seed(&[10, i as u64]));
                    let mut out = Outcome::default();
                    for _ in 0..rounds {
                        let mut objs = batch(&mut rng, SH8_BATCH, &mut out);
                        for _ in 0..SH8_BATCH / 3 {
                            let k = rng.below(objs.len());
                            drop(objs.swap_remove(k)); // random order
                        }
                        tx.send(objs).unwrap();
                        let mut theirs = rx.recv().unwrap();
                        while let Some(o) = theirs.pop() {
                            drop(o); // cross-thread, back to front
                        }
                    }
                    out
                })
            })
            .collect();
        join_all(handles)
    })
}
