//! cache-scratch and cache-thrash — after the Hoard benchmarks (Berger et al.,
//! "Hoard: a scalable memory allocator for multithreaded applications",
//! ASPLOS 2000).
//!
//! Both model threads that each work on their own small objects (counters,
//! per-connection state) and write them often. An allocator that places
//! small objects of different threads on the same cache line causes false
//! sharing: the line ping-pongs between cores and every write stalls.
//!
//! - thrash (active false sharing): each thread allocates, writes and frees
//!   its own small objects; only the allocator's placement can put two
//!   threads' objects on one line.
//! - scratch (passive false sharing): the main thread allocates one small
//!   object per thread back to back (so they share lines) and hands them out;
//!   each thread frees its object first, so an allocator that reuses that
//!   freed slot for the thread's next objects keeps the false sharing alive.

use super::{scaled, share, Outcome};
use crate::block::Block;
use crate::rng::{seed, Rng};
use std::thread;

/// Object size (Hoard uses 8 bytes).
const OBJ: usize = 8;
/// Writes to each object before it is freed.
const WRITES: usize = 400;

/// Runs cache-thrash.
pub fn thrash(threads: usize, scale: f64) -> Outcome {
    hammer_all(threads, scale, None)
}

/// Runs cache-scratch.
pub fn scratch(threads: usize, scale: f64) -> Outcome {
    let mut rng = Rng::new(seed(&[3, threads as u64]));
    let handout: Vec<Block> = (0..threads)
        .map(|_| Block::new(OBJ, rng.next_u64()))
        .collect();
    hammer_all(threads, scale, Some(handout))
}

fn hammer_all(threads: usize, scale: f64, handout: Option<Vec<Block>>) -> Outcome {
    let objects = share(scaled(200_000, scale), threads);
    let mut handout: Vec<Option<Block>> = match handout {
        Some(v) => v.into_iter().map(Some).collect(),
        None => (0..threads).map(|_| None).collect(),
    };
    thread::scope(|s| {
        let handles: Vec<_> = handout
            .drain(..)
            .enumerate()
            .map(|(i, given)| {
                s.spawn(move || {
                    drop(given); // scratch: free the neighbour-line object first
                    let mut rng = Rng::new(seed(&[4, i as u64]));
                    let mut out = Outcome::default();
                    for _ in 0..objects {
                        let tag = rng.next_u64();
                        out.add(tag);
                        let mut b = Block::new(OBJ, tag);
                        hammer(&mut b);
                    }
                    out
                })
            })
            .collect();
        Outcome::sum(handles.into_iter().map(|h| h.join().unwrap()))
    })
}

/// Writes every byte of the object `WRITES` times, then restores its stamp.
#[inline(never)]
fn hammer(b: &mut Block) {
    let p = b.as_mut_ptr();
    for w in 0..WRITES {
        for k in 0..OBJ {
            // SAFETY: k < OBJ = the block's size; volatile so the writes
            // really reach memory, as in the original.
            unsafe { p.add(k).write_volatile((w + k) as u8) };
        }
    }
    b.stamp();
}
