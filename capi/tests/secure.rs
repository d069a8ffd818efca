//! Secure mode (issue #6): each misuse case of `tests/c/secure.c` runs in
//! default mode and with `TINYMALLOC_SECURE=1`, and must end as stated:
//! default mode does not look for these (the program carries on and
//! prints "undetected"), secure mode aborts with one report line naming
//! tinymalloc, the fault and the address, or the program dies by SIGSEGV
//! (or SIGBUS) on a guard page or inaccessible freed memory. The `ok-`
//! cases are correct programs: nothing printed, exit 0, in both modes.

mod common;

use common::{compile, mode, run, Link, Outcome};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn program() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| compile("secure.c", Link::Shared)).clone()
}

/// How a case must end.
#[derive(Clone, Copy, Debug)]
enum End {
    /// SIGABRT after one report line naming this fault and the address.
    Abort(&'static str),
    /// Killed by SIGSEGV or SIGBUS (a guard page, freed memory).
    Fault,
    /// Exit 0 after printing "undetected": the misuse was not looked for.
    Undetected,
    /// A correct program: exit 0, nothing printed.
    Clean,
}

fn run_case(case: &str, secure: bool) -> Outcome {
    run(
        mode(Command::new(program()).arg(case), secure),
        b"",
        Duration::from_secs(60),
    )
}

fn check(case: &str, secure: bool, end: End) {
    let out = run_case(case, secure);
    let what = format!("{case} (secure {secure}, expected {end:?})");
    let addr = out.stdout.lines().next().unwrap_or("").trim().to_string();
    match end {
        End::Abort(fault) => {
            assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{what}: {out:#?}");
            assert!(addr.starts_with("0x"), "{what}: no address: {out:#?}");
            let lines: Vec<&str> = out.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{what}: one stderr line: {out:#?}");
            let line = lines[0];
            assert!(line.starts_with("tinymalloc: "), "{what}: {line}");
            assert!(line.contains(fault), "{what}: fault not named: {line}");
            assert!(line.contains(&addr), "{what}: {addr} not named: {line}");
        }
        End::Fault => {
            let sig = out.status.signal();
            assert!(
                sig == Some(libc::SIGSEGV) || sig == Some(libc::SIGBUS),
                "{what}: {out:#?}"
            );
            assert!(!out.stdout.contains("undetected"), "{what}: {out:#?}");
            assert!(addr.starts_with("0x"), "{what}: no address: {out:#?}");
        }
        End::Undetected => {
            assert!(out.status.success(), "{what}: {out:#?}");
            assert!(out.stdout.contains("undetected"), "{what}: {out:#?}");
            assert_eq!(out.stderr, "", "{what}: {out:#?}");
        }
        End::Clean => {
            assert!(out.status.success(), "{what}: {out:#?}");
            assert_eq!(out.stdout, "", "{what}: {out:#?}");
            assert_eq!(out.stderr, "", "{what}: {out:#?}");
        }
    }
}

macro_rules! cases {
    ($($name:ident: $case:literal => default $d:expr, secure $s:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check($case, false, $d);
                check($case, true, $s);
            }
        )*
    };
}

const OVERFLOW: End = End::Abort("heap overflow");
const WRITE_AFTER_FREE: End = End::Abort("write after free");
const DOUBLE_FREE: End = End::Abort("double free");

cases! {
    overflow_by_1_byte_small: "overflow-1-small" => default End::Undetected, secure OVERFLOW;
    overflow_by_8_bytes_small: "overflow-8-small" => default End::Undetected, secure OVERFLOW;
    overflow_by_1_byte_medium: "overflow-1-medium" => default End::Undetected, secure OVERFLOW;
    overflow_by_8_bytes_medium: "overflow-8-medium" => default End::Undetected, secure OVERFLOW;
    overflow_by_1_byte_large: "overflow-1-large" => default End::Undetected, secure OVERFLOW;
    overflow_seen_by_realloc: "overflow-realloc" => default End::Undetected, secure OVERFLOW;
    overflow_of_aligned_block: "overflow-aligned" => default End::Undetected, secure OVERFLOW;
    large_overflow_hits_guard_page: "overflow-large-far" => default End::Undetected, secure End::Fault;
    huge_overflow_hits_guard_page: "overflow-huge-far" => default End::Undetected, secure End::Fault;
    overflow_past_a_segment_s_slabs_hits_guard_page: "slab-guard" => default End::Undetected, secure End::Fault;
    write_after_free_small: "write-after-free-small" => default End::Undetected, secure WRITE_AFTER_FREE;
    write_after_free_medium: "write-after-free-medium" => default End::Undetected, secure WRITE_AFTER_FREE;
    write_after_free_seen_by_the_next_malloc: "write-after-free-recent" => default End::Undetected, secure WRITE_AFTER_FREE;
    read_after_free_large_faults: "read-after-free-large" => default End::Undetected, secure End::Fault;
    write_after_free_large_faults: "write-after-free-large" => default End::Undetected, secure End::Fault;
    read_after_free_huge_faults: "read-after-free-huge" => default End::Undetected, secure End::Fault;
    write_after_free_huge_faults: "write-after-free-huge" => default End::Undetected, secure End::Fault;
    malloc_0_read_faults: "zero-read" => default End::Undetected, secure End::Fault;
    malloc_0_write_faults: "zero-write" => default End::Undetected, secure End::Fault;
    malloc_0_double_free: "zero-double-free" => default DOUBLE_FREE, secure DOUBLE_FREE;
    double_free_after_quarantine: "double-free-after-quarantine" => default DOUBLE_FREE, secure DOUBLE_FREE;
    ok_blocks_of_every_size_and_alignment: "ok-blocks" => default End::Clean, secure End::Clean;
    ok_malloc_0_free_and_realloc: "ok-zero" => default End::Clean, secure End::Clean;
    ok_sized_frees_with_the_right_size: "ok-sized" => default End::Clean, secure End::Clean;
}

/// Secure mode is really on in the children: `malloc_usable_size` reports
/// the requested size there (the bytes past it are the canary), and the
/// size class's block size in default mode.
#[test]
fn usable_size_is_the_request_in_secure_mode() {
    let secure = run_case("usable-size", true);
    assert_eq!(secure.stdout.trim(), "24", "{secure:#?}");
    let default = run_case("usable-size", false);
    assert_eq!(default.stdout.trim(), "32", "{default:#?}");
}

/// An unterminated string read (`strlen`) stops at the end of the block in
/// secure mode: the canary's first byte is zero, so none of its secret
/// bytes reach the program (hardened_malloc's `string_overflow` expects
/// "overflow by 0 bytes"). Default mode has no canary: the read runs on
/// into whatever follows, so only secure mode is asserted.
#[test]
fn string_reads_stop_at_the_canary_in_secure_mode() {
    assert_eq!(number("string-read", true), 0);
}

/// Runs an information case and returns the number it printed.
fn number(case: &str, secure: bool) -> usize {
    let out = run_case(case, secure);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{case}: {out:#?}"
    );
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{case}: {out:#?}"))
}

/// Default mode hands out a page's slots in address order; secure mode
/// picks a random free slot.
#[test]
fn secure_mode_picks_random_slots() {
    let default = number("slot-order", false);
    let secure = number("slot-order", true);
    assert!(default >= 150, "default mode: {default} of 199 in order");
    assert!(secure <= 40, "secure mode: {secure} of 199 in order");
}

/// Default mode hands a freed block out again at once; secure mode keeps
/// it in the quarantine.
#[test]
fn secure_mode_delays_reuse() {
    assert!(number("reuse", false) >= 90);
    assert_eq!(number("reuse", true), 0);
}
