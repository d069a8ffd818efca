//! The tinymalloc benchmark suite.
//!
//! Two kinds of program share this library:
//!
//! - the workers (`bench-tinymalloc`, `bench-system`, `bench-jemalloc`,
//!   `bench-mimalloc`, under `src/bin/`) each set one `#[global_allocator]`
//!   and call [`worker_main`], which runs ONE workload at one thread count and
//!   prints one `result ...` line;
//! - the driver (`tinymalloc-bench`, `src/main.rs`, see [`driver`]) runs every
//!   (workload, threads, allocator) cell in a fresh worker process, measures
//!   its peak resident memory with `wait4`, and writes tables, CSV and SVG.
//!
//! The workloads live in [`workloads`], one module per family, each after a
//! classic allocator benchmark and commented with the program behaviour it
//! models.

pub mod block;
pub mod cli;
pub mod driver;
pub mod report;
pub mod rng;
pub mod stats;
pub mod svg;
pub mod worker;
pub mod workloads;

pub use worker::worker_main;
