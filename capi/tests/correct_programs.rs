//! Correct programs must not be flagged: `tests/c/ok.c`'s cases, each run
//! preloaded and linked with -ltinymalloc, in default mode and in secure
//! mode (`TINYMALLOC_SECURE=1`), must print nothing and exit 0.

mod common;

use common::{compile, mode, preload, run, Link};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn program(link: Link) -> PathBuf {
    static SHARED: OnceLock<PathBuf> = OnceLock::new();
    static PRELOAD: OnceLock<PathBuf> = OnceLock::new();
    let cell = if link == Link::Preload {
        &PRELOAD
    } else {
        &SHARED
    };
    cell.get_or_init(|| compile("ok.c", link)).clone()
}

/// Runs `case` of ok.c `times` times each way, in both modes.
fn expect_ok(case: &str, times: usize) {
    for secure in [false, true] {
        for link in [Link::Preload, Link::Shared] {
            for _ in 0..times {
                let mut cmd = Command::new(program(link));
                cmd.arg(case);
                mode(&mut cmd, secure);
                if link == Link::Preload {
                    preload(&mut cmd);
                }
                let out = run(&mut cmd, b"", Duration::from_secs(120));
                let what = format!("ok {case} ({link:?}, secure {secure})");
                out.assert_success(&what);
                assert_eq!(out.stderr, "", "{what} printed on stderr");
            }
        }
    }
}

#[test]
fn threads_exit_while_others_free_their_blocks() {
    expect_ok("threads-exit", 1);
}

#[test]
fn fork_from_multithreaded_allocating_parent() {
    expect_ok("fork", 2);
}

#[test]
fn exit_while_threads_allocate() {
    expect_ok("exit-busy", 5);
}

#[test]
fn calloc_overflow_is_null_with_enomem() {
    expect_ok("calloc-overflow", 1);
}
