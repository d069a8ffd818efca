//! The C API, from C: `tests/c/api.c` (the malloc family, rule by rule) and
//! `tests/c/tiny.c` (the tinymalloc API), `tests/c/cxx.cc` (C++ new and
//! delete), and `examples/hello.c`. Each prints nothing and exits 0, in
//! default mode and in secure mode (`TINYMALLOC_SECURE=1`).

mod common;

use common::{compile, mode, preload, run, Link};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// Runs a C test program that must print nothing and exit 0, in default
/// mode and in secure mode.
fn run_quiet(exe: &std::path::Path, link: Link) {
    for secure in [false, true] {
        let mut cmd = Command::new(exe);
        mode(&mut cmd, secure);
        if link == Link::Preload {
            preload(&mut cmd);
        }
        let out = run(&mut cmd, b"", LIMIT);
        let what = format!("{} ({link:?}, secure {secure})", exe.display());
        out.assert_success(&what);
        assert_eq!(out.stdout, "", "{what} printed on stdout");
        assert_eq!(out.stderr, "", "{what} printed on stderr");
    }
}

#[test]
fn api_linked_with_shared_library() {
    run_quiet(&compile("api.c", Link::Shared), Link::Shared);
}

#[test]
fn api_linked_with_static_library() {
    run_quiet(&compile("api.c", Link::Static), Link::Static);
}

#[test]
fn api_preloaded() {
    run_quiet(&compile("api.c", Link::Preload), Link::Preload);
}

#[test]
fn tinymalloc_api_shared_and_static() {
    for link in [Link::Shared, Link::Static] {
        run_quiet(&compile("tiny.c", link), link);
    }
}

#[test]
fn cxx_new_delete_linked_and_preloaded() {
    for link in [Link::Shared, Link::Preload] {
        run_quiet(&compile("cxx.cc", link), link);
    }
}

#[test]
fn hello_example_builds_and_runs() {
    let lib = common::lib_dir();
    let root = common::repo_root();
    let exe = common::scratch("hello").join("hello");
    // The command documented at the top of examples/hello.c.
    let status = Command::new("cc")
        .arg(root.join("examples/hello.c"))
        .arg("-I")
        .arg(root.join("include"))
        .arg("-L")
        .arg(lib)
        .arg("-ltinymalloc")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("cc");
    assert!(status.success(), "examples/hello.c does not build");
    let out = run(&mut Command::new(&exe), b"", LIMIT);
    out.assert_success("examples/hello");
    assert!(out.stdout.contains("hello from tinymalloc"), "{out:#?}");
}
