//! `tinymalloc-bench`: the benchmark driver. See `tinymalloc_bench::driver`
//! and `bench/README.md`.

fn main() {
    std::process::exit(tinymalloc_bench::driver::main());
}
