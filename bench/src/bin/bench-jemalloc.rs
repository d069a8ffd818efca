//! Benchmark worker using jemalloc (tikv-jemallocator) as the global allocator.
//! Run by the `tinymalloc-bench` driver; see `tinymalloc_bench::worker`.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    tinymalloc_bench::worker_main();
}
