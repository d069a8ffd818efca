//! Benchmark worker using tinymalloc as the global allocator.
//! Run by the `tinymalloc-bench` driver; see `tinymalloc_bench::worker`.

#[global_allocator]
static GLOBAL: tinymalloc::TinyMalloc = tinymalloc::TinyMalloc;

fn main() {
    tinymalloc_bench::worker_main();
}
