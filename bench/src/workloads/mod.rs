//! The workloads, one module per family. Each is written for this suite after
//! a classic allocator benchmark and says which program behaviour it models.
//!
//! Conventions:
//! - `run(threads, scale)` does a fixed TOTAL amount of work, split between
//!   the threads, so that on an ideal machine time falls with more threads
//!   (up to the core count) and stays flat when oversubscribed;
//! - `scale` 1.0 is the `--quick` size; the full suite uses a larger one;
//! - all randomness comes from [`crate::rng::Rng`] seeded per thread, and the
//!   [`Outcome`] (allocation count and a checksum of every block's tag) does
//!   not depend on thread scheduling, so it must be the same for every
//!   allocator: the driver compares it;
//! - every block is a [`crate::block::Block`], stamped on allocation and
//!   checked on free.

mod alloc_test;
mod cache;
mod glibc;
mod large;
mod larson;
mod mstress;
mod realloc;
mod rust_churn;
mod sh;
mod xmalloc;

/// What a workload run returns: how many allocations it made, and a checksum
/// (wrapping sum of all block tags) so the work cannot be optimised away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Allocations performed (reallocs count as one each).
    pub ops: u64,
    /// Order-independent checksum of the tags of every allocation.
    pub checksum: u64,
}

impl Outcome {
    /// Counts one allocation tagged `tag`.
    #[inline]
    pub fn add(&mut self, tag: u64) {
        self.ops += 1;
        self.checksum = self.checksum.wrapping_add(tag);
    }

    /// The merge of all `outcomes` (e.g. one per worker thread).
    pub fn sum(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
        let mut total = Outcome::default();
        for o in outcomes {
            total.merge(o);
        }
        total
    }

    /// Adds another thread's outcome.
    pub fn merge(&mut self, other: Outcome) {
        self.ops += other.ops;
        self.checksum = self.checksum.wrapping_add(other.checksum);
    }
}

/// One entry of the suite.
pub struct Workload {
    /// Name used on the command line and in results.
    pub name: &'static str,
    /// One line: the program behaviour it models.
    pub about: &'static str,
    /// Whether it runs at several thread counts (else only at 1).
    pub multi_threaded: bool,
    /// Runs it: `(threads, scale)`.
    pub run: fn(usize, f64) -> Outcome,
}

/// Every workload, in report order.
pub const ALL: &[Workload] = &[
    Workload {
        name: "larson",
        about: "server threads replace random-size objects; threads retire and successors free their objects",
        multi_threaded: true,
        run: larson::run,
    },
    Workload {
        name: "xmalloc",
        about: "producer/consumer pipeline: T producers, T consumers, every free is cross-thread",
        multi_threaded: true,
        run: xmalloc::run,
    },
    Workload {
        name: "cache-scratch",
        about: "passive false sharing: threads free a neighbour-line object, then hammer their own small objects",
        multi_threaded: true,
        run: cache::scratch,
    },
    Workload {
        name: "cache-thrash",
        about: "active false sharing: threads repeatedly allocate and write small objects",
        multi_threaded: true,
        run: cache::thrash,
    },
    Workload {
        name: "mstress",
        about: "mixed lifetimes and sizes, objects exchanged between threads, threads restarted",
        multi_threaded: true,
        run: mstress::run,
    },
    Workload {
        name: "alloc-test",
        about: "large per-thread working sets with a skewed (power-law) size mix up to 32 KiB",
        multi_threaded: true,
        run: alloc_test::run,
    },
    Workload {
        name: "glibc-simple",
        about: "single thread: bursts of many tiny allocations, then all freed",
        multi_threaded: false,
        run: glibc::simple,
    },
    Workload {
        name: "glibc-thread",
        about: "threads churning a 1024-slot working set of tiny objects",
        multi_threaded: true,
        run: glibc::thread,
    },
    Workload {
        name: "sh6bench",
        about: "batches of assorted sizes freed in mixed orders (FIFO, then LIFO)",
        multi_threaded: true,
        run: sh::sh6,
    },
    Workload {
        name: "sh8bench",
        about: "batches partly freed at random, the rest passed to the next thread and freed LIFO",
        multi_threaded: true,
        run: sh::sh8,
    },
    Workload {
        name: "realloc",
        about: "growth chains: strings appended by small steps and vectors grown by 1.5x",
        multi_threaded: true,
        run: realloc::run,
    },
    Workload {
        name: "large",
        about: "big buffers of 64 KiB to 2 MiB, every page touched",
        multi_threaded: true,
        run: large::large,
    },
    Workload {
        name: "huge",
        about: "whole data sets of 2 MiB to 64 MiB, every page touched",
        multi_threaded: true,
        run: large::huge,
    },
    Workload {
        name: "rust",
        about: "Rust service: HashMap/String/Vec churn, owned values sent to other threads",
        multi_threaded: true,
        run: rust_churn::run,
    },
];

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static Workload> {
    ALL.iter().find(|w| w.name == name)
}

/// `base` work units at this scale (at least 1).
pub(crate) fn scaled(base: u64, scale: f64) -> u64 {
    ((base as f64 * scale) as u64).max(1)
}

/// One thread's share of `total` (at least 1).
pub(crate) fn share(total: u64, threads: usize) -> u64 {
    (total / threads.max(1) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every workload runs at a tiny size, single- and multi-threaded, and
    /// gives the same outcome twice (the driver relies on determinism to
    /// compare allocators).
    #[test]
    fn all_workloads_run_and_are_deterministic() {
        for w in ALL {
            for threads in [1, 3] {
                if threads > 1 && !w.multi_threaded {
                    continue;
                }
                let a = (w.run)(threads, 0.005);
                let b = (w.run)(threads, 0.005);
                assert!(a.ops > 0, "{}", w.name);
                assert_eq!(a, b, "{} t={threads} is not deterministic", w.name);
            }
        }
    }

    #[test]
    fn names_are_unique() {
        for (i, w) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|o| o.name != w.name));
            assert!(find(w.name).is_some());
        }
    }
}
