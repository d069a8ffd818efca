//! Benchmark worker using mimalloc (the mimalloc crate) as the global allocator.
//! Run by the `tinymalloc-bench` driver; see `tinymalloc_bench::worker`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tinymalloc_bench::worker_main();
}
