//! Microbenchmarks of allocator fast paths (`cargo bench -p tinymalloc-bench`).
//!
//! Every allocator is called through its `GlobalAlloc` implementation
//! directly (none is installed as this program's global allocator), so all
//! of them run in one process under the same conditions:
//! - `malloc_free`: one allocation and its free, per size class;
//! - `malloc_free_batch`: 100 allocations, then 100 frees, per size class;
//! - `cross_thread_free`: frees of blocks another thread allocated;
//! - `realloc_growth`: a 16-byte block grown 16 bytes at a time to 4 KiB.

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;
use tikv_jemallocator::Jemalloc;
use tinymalloc::TinyMalloc;

fn main() {
    divan::main();
}

/// An allocator instance reachable from a type parameter.
trait Alloc: GlobalAlloc + Sync + 'static {
    fn get() -> &'static Self;
}

macro_rules! alloc_impl {
    ($($t:ident),*) => {$(
        impl Alloc for $t {
            fn get() -> &'static Self {
                static A: $t = $t;
                &A
            }
        }
    )*};
}
alloc_impl!(TinyMalloc, System, MiMalloc, Jemalloc);

const SIZES: &[usize] = &[16, 64, 256, 1024, 8192, 32768];

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Makes the allocator set up its thread state and a page of this size
/// class before timing starts (divan sizes its samples from the first runs,
/// and a cold first allocation would skew that).
fn warm_up<A: Alloc>(a: &A, size: usize) {
    let l = layout(size);
    let ptrs: Vec<*mut u8> = (0..100)
        // SAFETY: a non-zero layout.
        .map(|_| unsafe { a.alloc(l) })
        .collect();
    for p in ptrs {
        assert!(!p.is_null());
        // SAFETY: allocated just above with `l`, freed once.
        unsafe { a.dealloc(p, l) };
    }
}

// Fixed sample sizes: the operations are far shorter than divan's timer
// precision, and noisy first runs must not shrink samples to one operation.
#[divan::bench(types = [TinyMalloc, System, MiMalloc, Jemalloc], args = SIZES, sample_size = 1000)]
fn malloc_free<A: Alloc>(bencher: Bencher, size: usize) {
    let a = A::get();
    warm_up(a, size);
    let l = layout(size);
    bencher.bench_local(|| {
        // SAFETY: a non-zero layout; the block is written inside its bounds
        // and freed once with the same layout.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            black_box(p).write(1);
            a.dealloc(p, l);
        }
    });
}

#[divan::bench(types = [TinyMalloc, System, MiMalloc, Jemalloc], args = SIZES, sample_size = 20)]
fn malloc_free_batch<A: Alloc>(bencher: Bencher, size: usize) {
    const N: usize = 100;
    let a = A::get();
    warm_up(a, size);
    let l = layout(size);
    let mut ptrs = [std::ptr::null_mut::<u8>(); N];
    bencher.counter(ItemsCount::new(N)).bench_local(|| {
        for p in ptrs.iter_mut() {
            // SAFETY: a non-zero layout; the first byte is inside the block.
            unsafe {
                *p = a.alloc(l);
                assert!(!p.is_null());
                p.write(1);
            }
        }
        for &p in black_box(&ptrs) {
            // SAFETY: each pointer was allocated just above with `l`.
            unsafe { a.dealloc(p, l) };
        }
    });
}

/// Blocks allocated by the helper thread.
struct Batch(Vec<*mut u8>);
// SAFETY: the pointers are owned heap blocks handed over whole; only the
// receiving thread touches them.
unsafe impl Send for Batch {}

const XT_N: usize = 64;
const XT_SIZE: usize = 64;

#[divan::bench(types = [TinyMalloc, System, MiMalloc, Jemalloc], sample_size = 16)]
fn cross_thread_free<A: Alloc>(bencher: Bencher) {
    let a = A::get();
    warm_up(a, XT_SIZE);
    let l = layout(XT_SIZE);
    let (want_tx, want_rx): (Sender<()>, Receiver<()>) = channel();
    let (batch_tx, batch_rx) = channel::<Batch>();
    // A long-lived producer thread, so frees go to a live thread's heap.
    let producer = thread::spawn(move || {
        for () in want_rx {
            let v = (0..XT_N)
                // SAFETY: a non-zero layout.
                .map(|_| unsafe { a.alloc(l) })
                .collect::<Vec<_>>();
            assert!(v.iter().all(|p| !p.is_null()));
            batch_tx.send(Batch(v)).unwrap();
        }
    });
    bencher
        .counter(ItemsCount::new(XT_N))
        .with_inputs(|| {
            want_tx.send(()).unwrap();
            batch_rx.recv().unwrap()
        })
        .bench_local_values(|batch: Batch| {
            for &p in &batch.0 {
                // SAFETY: allocated by the producer with `l`, freed once.
                unsafe { a.dealloc(p, l) };
            }
        });
    drop(want_tx);
    producer.join().unwrap();
}

#[divan::bench(types = [TinyMalloc, System, MiMalloc, Jemalloc], sample_size = 20)]
fn realloc_growth<A: Alloc>(bencher: Bencher) {
    const STEP: usize = 16;
    const MAX: usize = 4096;
    let a = A::get();
    warm_up(a, MAX);
    bencher
        .counter(ItemsCount::new(MAX / STEP))
        .bench_local(|| {
            // SAFETY: every realloc gets the block's current layout and a
            // non-zero new size; the last byte written is inside the block; the
            // final block is freed with its final layout.
            unsafe {
                let mut p = a.alloc(layout(STEP));
                let mut size = STEP;
                while size < MAX {
                    p = a.realloc(p, layout(size), size + STEP);
                    assert!(!p.is_null());
                    size += STEP;
                    p.add(size - 1).write(size as u8);
                }
                a.dealloc(black_box(p), layout(size));
            }
        });
}
