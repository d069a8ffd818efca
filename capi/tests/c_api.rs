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

/// The runtime depends on libc and nothing else: built for release
/// (`panic = "abort"`), `libtinymalloc.so` does without Rust's standard
/// library, so the only shared object it names is libc (no libgcc_s for
/// an unwinder it never uses). Builds that unwind (the dev profile) keep
/// std and its unwinder; for them only libc is required.
#[test]
fn shared_library_needs_only_libc() {
    check_needs_only_libc(&common::so_path());
}

/// The same, built as in a whole-workspace build, where another member
/// turns on the `libc` crate's `std` feature and `libc` then names no
/// library to link (it leaves that to std): the library must still name
/// libc.so.6 and resolve `atexit` (which glibc keeps in
/// `libc_nonshared.a`), or a program it is preloaded into fails to start.
#[test]
fn shared_library_built_with_libc_std_feature() {
    let target = common::scratch("libc-std-build");
    let dir =
        tinymalloc_testkit::build_into("tinymalloc-capi", &["--features", "libc/std"], &target);
    let so = dir.join("libtinymalloc.so");
    check_needs_only_libc(&so);
    let mut sh = Command::new("sh");
    sh.args(["-c", "echo started"]).env("LD_PRELOAD", &so);
    let out = run(&mut sh, b"", LIMIT);
    out.assert_success("sh with the libc/std build preloaded");
    assert_eq!(out.stdout, "started\n", "{out:#?}");
}

/// Asserts that the shared library `so` names libc.so.6 and, when built for
/// release, nothing else but the dynamic loader.
fn check_needs_only_libc(so: &std::path::Path) {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(so)
        .output()
        .expect("readelf (binutils)");
    assert!(out.status.success(), "readelf -d {}", so.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(
        needed.contains(&"libc.so.6"),
        "{}: {needed:?}",
        so.display()
    );
    if common::profile_dir().ends_with("release") {
        for lib in &needed {
            assert!(
                *lib == "libc.so.6" || lib.starts_with("ld-linux"),
                "{} needs {lib} (all: {needed:?})",
                so.display()
            );
        }
    }
}
