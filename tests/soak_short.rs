//! The soak test (`soak/`, package `tinymalloc-soak`), short: 20 seconds of
//! multi-threaded churn with tinymalloc as the global allocator (cross-
//! thread frees, realloc across size ranges, 16 B .. 8 MiB blocks, worker
//! threads ended and replaced every 100 ms), every byte verified, and a
//! resident-memory trend check. The full run is
//! `cargo run --release -p tinymalloc-soak` (10 minutes; docs/TESTING.md).
//!
//! Cargo does not build another package's binary for this package's tests,
//! so the test builds it first with the same profile and target directory
//! (a no-op when up to date), as `capi/tests/common` does for the C
//! library.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Builds `tinymalloc-soak` with this test's profile; returns its path.
fn soak_binary() -> PathBuf {
    tinymalloc_testkit::build("tinymalloc-soak", &["tinymalloc-soak"]).join("tinymalloc-soak")
}

#[test]
fn soak_20_seconds() {
    let bin = soak_binary();
    let start = Instant::now();
    let out = Command::new(&bin)
        .args(["--seconds", "20", "--threads", "4", "--churn-ms", "100"])
        .output()
        .expect("running tinymalloc-soak");
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tinymalloc-soak failed ({:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("soak: OK"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    eprintln!("{summary}");
    // Some real work was done: many operations and thread churn.
    let num_after = |key: &str| -> u64 {
        let i = summary
            .find(key)
            .unwrap_or_else(|| panic!("no '{key}' in {summary}"));
        summary[i + key.len()..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(num_after("ops") > 5_000, "too few operations: {summary}");
    let threads: u64 = summary
        .split(" threads started")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no thread count in {summary}"));
    assert!(threads > 20, "too little thread churn: {summary}");
    assert!(
        took < Duration::from_secs(120),
        "the 20 s soak took {took:?}"
    );
}
