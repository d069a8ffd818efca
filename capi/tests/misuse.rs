//! Bad input is caught: each case of `tests/c/misuse.c` and
//! `tests/c/misuse.cc` makes one bad call, and must die by SIGABRT after
//! exactly one stderr line naming tinymalloc, the fault and the address
//! (which the program printed on stdout just before the call). Every case
//! runs in default mode and again in secure mode (`TINYMALLOC_SECURE=1`),
//! which must catch them all too.

mod common;

use common::{compile, mode, run, Link};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn program(src: &'static str) -> PathBuf {
    static C: OnceLock<PathBuf> = OnceLock::new();
    static CXX: OnceLock<PathBuf> = OnceLock::new();
    let cell = if src.ends_with(".cc") { &CXX } else { &C };
    cell.get_or_init(|| compile(src, Link::Shared)).clone()
}

/// Runs `src`'s `case` and checks the report: SIGABRT, one line on stderr
/// with "tinymalloc", one of `faults` and the announced address.
fn expect_abort(src: &'static str, case: &str, faults: &[&str], secure: bool) {
    let out = run(
        mode(Command::new(program(src)).arg(case), secure),
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{case}: not aborted: {out:#?}"
    );
    let addr = out.stdout.lines().next().unwrap_or("").trim().to_string();
    assert!(
        addr.starts_with("0x"),
        "{case}: no address announced: {out:#?}"
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{case}: expected one stderr line: {out:#?}");
    let line = lines[0].to_lowercase();
    assert!(
        line.contains("tinymalloc"),
        "{case}: report does not name tinymalloc: {line}"
    );
    assert!(
        faults.iter().any(|f| line.contains(f)),
        "{case}: report does not name the fault ({faults:?}): {line}"
    );
    assert!(
        line.contains(&addr),
        "{case}: report does not name address {addr}: {line}"
    );
}

macro_rules! misuse {
    ($($name:ident: $src:literal $case:literal => $($fault:literal)|+;)*) => {
        mod default_mode {
            use super::*;
            $(
                #[test]
                fn $name() {
                    expect_abort($src, $case, &[$($fault),+], false);
                }
            )*
        }
        mod secure_mode {
            use super::*;
            $(
                #[test]
                fn $name() {
                    expect_abort($src, $case, &[$($fault),+], true);
                }
            )*
        }
    };
}

misuse! {
    double_free_small: "misuse.c" "double-free-small" => "double free";
    double_free_medium: "misuse.c" "double-free-medium" => "double free";
    double_free_large: "misuse.c" "double-free-large" => "double free";
    double_free_huge: "misuse.c" "double-free-huge" => "double free";
    double_free_after_other_frees: "misuse.c" "double-free-delayed" => "double free";
    double_free_large_after_other_frees: "misuse.c" "double-free-delayed-large" => "double free";
    double_free_from_another_thread: "misuse.c" "thread-double-free" => "double free";
    free_after_another_thread_freed: "misuse.c" "thread-free-then-local-free" => "double free";
    free_of_stack_pointer: "misuse.c" "free-stack" => "invalid";
    free_of_static_data: "misuse.c" "free-static" => "invalid";
    free_of_foreign_mapping: "misuse.c" "free-mmap" => "invalid";
    free_of_interior_pointer_small: "misuse.c" "free-interior-small" => "invalid";
    free_of_interior_pointer_large: "misuse.c" "free-interior-large" => "invalid";
    free_of_interior_pointer_huge: "misuse.c" "free-interior-huge" => "invalid";
    realloc_of_freed_pointer: "misuse.c" "realloc-freed" => "double free" | "invalid";
    realloc_of_stack_pointer: "misuse.c" "realloc-stack" => "invalid";
    usable_size_of_bogus_pointer: "misuse.c" "usable-size-bogus" => "invalid";
    cxx_delete_through_base_without_virtual_dtor: "misuse.cc" "delete-wrong-size" => "size";
    cxx_sized_delete_with_wrong_size: "misuse.cc" "delete-wrong-size-explicit" => "size";
    cxx_double_delete: "misuse.cc" "delete-double" => "double free";
    cxx_delete_of_stack_object: "misuse.cc" "delete-stack" => "invalid";
}
