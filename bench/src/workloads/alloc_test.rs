//! alloc-test — after OLogN Technologies' alloc-test (ITHare.com).
//!
//! Models allocation-heavy application code (parsers, document and object
//! models) with the size mix real programs show: a steep power law where
//! most objects are tiny and a few reach 32 KiB. Each thread owns a large
//! working set and replaces random members, so object lifetimes range from
//! a few operations to the whole run; every fourth step also makes a
//! short-lived temporary. No object crosses threads.

use super::{scaled, share, Outcome};
use crate::block::Block;
use crate::rng::{seed, Rng};
use std::thread;

/// Live objects per thread.
const SLOTS: usize = 8192;

/// Runs the workload.
pub fn run(threads: usize, scale: f64) -> Outcome {
    let steps = share(scaled(1_500_000, scale), threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| s.spawn(move || work(Rng::new(seed(&[6, i as u64])), steps)))
            .collect();
        Outcome::sum(handles.into_iter().map(|h| h.join().unwrap()))
    })
}

fn work(mut rng: Rng, steps: u64) -> Outcome {
    let mut out = Outcome::default();
    let new = |rng: &mut Rng, out: &mut Outcome| {
        let tag = rng.next_u64();
        out.add(tag);
        Block::new(rng.power_law(8, 32 << 10), tag)
    };
    let mut set: Vec<Block> = (0..SLOTS).map(|_| new(&mut rng, &mut out)).collect();
    for _ in 0..steps {
        let i = rng.below(SLOTS);
        set[i] = new(&mut rng, &mut out);
        if rng.chance(25) {
            drop(new(&mut rng, &mut out));
        }
    }
    out
}
