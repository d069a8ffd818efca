//! Secure mode from Rust: this test binary uses tinymalloc as its global
//! allocator and runs a workload in a child process of itself started with
//! `TINYMALLOC_SECURE=1` (the mode is fixed before the first allocation,
//! so it cannot be switched on inside this process). The workload checks
//! contents through growth by realloc, aligned and zeroed layouts,
//! cross-thread frees, and that `stats()` counts nothing in use once
//! everything is freed. Built with `--features secure`, secure mode must be
//! on without the variable, in this process and in the child.

#[global_allocator]
static A: tinymalloc::TinyMalloc = tinymalloc::TinyMalloc;

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::process::Command;

const CHILD: &str = "TINYMALLOC_SECURE_TEST_CHILD";

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn pattern(seed: usize, i: usize) -> u8 {
    (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8
}

/// Raw layouts of many sizes and alignments: filled, grown and shrunk by
/// realloc with contents kept, zeroed layouts really zero.
fn layouts() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut live: Vec<(*mut u8, Layout, usize)> = Vec::new();
    for i in 0..3000usize {
        let size = match rng.next() % 10 {
            0 => (rng.next() % 300_000) as usize,
            1 => (rng.next() % 40_000) as usize,
            _ => (rng.next() % 600) as usize,
        }
        .max(1);
        let align = 1usize << (rng.next() % 14);
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: a non-zero size.
        let p = unsafe {
            if i % 3 == 0 {
                alloc_zeroed(layout)
            } else {
                alloc(layout)
            }
        };
        assert!(!p.is_null() && (p as usize).is_multiple_of(align));
        // SAFETY: p holds `size` bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
        if i % 3 == 0 {
            assert!(bytes.iter().all(|&b| b == 0), "alloc_zeroed not zero");
        }
        for (k, b) in bytes.iter_mut().enumerate() {
            *b = pattern(i, k);
        }
        live.push((p, layout, i));
        if rng.next().is_multiple_of(3) {
            let j = (rng.next() as usize) % live.len();
            let (p, layout, seed) = live.swap_remove(j);
            let new = (layout.size() * (1 + (rng.next() % 3) as usize) / 2).max(1);
            // SAFETY: p is live with this layout; new is non-zero.
            let q = unsafe { realloc(p, layout, new) };
            assert!(!q.is_null() && (q as usize).is_multiple_of(layout.align()));
            let keep = new.min(layout.size());
            // SAFETY: q holds at least `keep` bytes.
            let bytes = unsafe { std::slice::from_raw_parts_mut(q, new) };
            assert!(
                (0..keep).all(|k| bytes[k] == pattern(seed, k)),
                "realloc lost data"
            );
            for (k, b) in bytes.iter_mut().enumerate() {
                *b = pattern(seed, k);
            }
            live.push((
                q,
                Layout::from_size_align(new, layout.align()).unwrap(),
                seed,
            ));
        }
        if live.len() > 400 {
            let (p, layout, seed) = live.swap_remove((rng.next() as usize) % live.len());
            check_and_free(p, layout, seed);
        }
    }
    for (p, layout, seed) in live {
        check_and_free(p, layout, seed);
    }
}

/// Checks that the live block `p` still holds its pattern, then frees it.
fn check_and_free(p: *mut u8, layout: Layout, seed: usize) {
    // SAFETY: p is a live block with this layout, freed once here.
    unsafe {
        let bytes = std::slice::from_raw_parts(p, layout.size());
        assert!(bytes
            .iter()
            .enumerate()
            .all(|(k, &b)| b == pattern(seed, k)));
        dealloc(p, layout);
    }
}

/// Blocks made on one thread and checked and dropped on others.
fn cross_thread() {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Vec<u8>>>();
    let consumer = std::thread::spawn(move || {
        let mut n = 0;
        for batch in rx {
            for (i, v) in batch.into_iter().enumerate() {
                assert!(v.iter().all(|&b| b == (i % 256) as u8));
                n += 1;
            }
        }
        n
    });
    let producers: Vec<_> = (0..4)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for round in 0..50 {
                    let batch: Vec<Vec<u8>> = (0..100)
                        .map(|i| vec![(i % 256) as u8; (i * 13 + round + t) % 5000])
                        .collect();
                    tx.send(batch).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), 4 * 50 * 100);
}

/// Std collections: contents kept through growth.
fn collections() {
    let mut m = std::collections::HashMap::new();
    for i in 0..20_000u64 {
        m.insert(i, format!("value {i}"));
    }
    let mut s = String::new();
    for i in 0..5000 {
        s.push_str(&i.to_string());
    }
    assert!(s.starts_with("0123"));
    assert!((0..20_000u64).all(|i| m[&i] == format!("value {i}")));
    let mut v: Vec<u64> = Vec::new();
    for i in 0..1_000_000 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 999_999 * 1_000_000 / 2);
}

/// The workload, run in secure mode.
fn workload() {
    assert!(tinymalloc::secure_mode(), "secure mode is not on");
    // Secure mode reports the requested size (the rest is the canary).
    // SAFETY: a plain allocation, freed once.
    unsafe {
        let p = tinymalloc::raw::malloc(24);
        assert_eq!(tinymalloc::raw::usable_size(p), 24);
        tinymalloc::raw::free(p);
    }
    // A first round sets up what std keeps for the life of the process
    // (thread handles, ...); the second must leave nothing in use.
    cross_thread();
    collections();
    tinymalloc::raw::trim();
    let before = tinymalloc::stats().in_use;
    layouts();
    cross_thread();
    collections();
    tinymalloc::raw::trim();
    let after = tinymalloc::stats().in_use;
    assert_eq!(after, before, "in use before {before}, after {after}");
}

/// The child's side: does nothing unless started by the test below.
#[test]
fn child_workload() {
    if std::env::var_os(CHILD).is_some() {
        workload();
        println!("secure workload passed");
    }
}

/// Runs `child_workload` in a child process, with `TINYMALLOC_SECURE=1`
/// or without the variable, and checks that it passed.
fn run_child(env_secure: bool) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_workload",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1");
    if env_secure {
        cmd.env("TINYMALLOC_SECURE", "1");
    } else {
        cmd.env_remove("TINYMALLOC_SECURE");
    }
    let out = cmd.output().expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("secure workload passed"),
        "child failed: {:?}\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn secure_workload_in_a_child_process() {
    run_child(true);
}

/// With the `secure` feature, secure mode is on without the variable;
/// without it, off.
#[test]
fn feature_decides_without_the_variable() {
    if cfg!(feature = "secure") {
        assert!(tinymalloc::secure_mode());
        run_child(false);
    } else if std::env::var_os("TINYMALLOC_SECURE").is_none() {
        assert!(!tinymalloc::secure_mode());
    }
}
