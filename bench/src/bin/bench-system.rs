//! Benchmark worker using the system allocator as the global allocator:
//! glibc's malloc, or whatever LD_PRELOAD puts in its place (the driver's
//! `--preload` runs this worker).
//! Run by the `tinymalloc-bench` driver; see `tinymalloc_bench::worker`.

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    tinymalloc_bench::worker_main();
}
