//! Misuse is caught: invalid and double frees abort with a one-line
//! "tinymalloc: ..." report naming the fault and the address. Each misuse
//! case runs in a child process (this test binary run again with an
//! environment variable naming the case), and the parent checks that the
//! child died of SIGABRT with the right message on stderr. Every child
//! runs twice: in default mode and in secure mode (`TINYMALLOC_SECURE=1`),
//! which must catch (and accept) the same things.
//!
//! Requests that cannot be satisfied (absurd sizes, overflowing `calloc`,
//! bad alignments) must return null without aborting; these run in-process.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use tinymalloc::raw;

const CASE_VAR: &str = "TM_TEST_ERRORS_CASE";
const SURVIVED: &str = "CHILD-SURVIVED-THE-CASE";
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// In the child (the case variable names `name`): runs `body`, then exits
/// with status 0 after printing a marker (so an abort that did not happen
/// shows). In the parent: runs the child and returns its output.
fn run_case(name: &str, body: fn(), secure: bool) -> Option<Output> {
    if std::env::var(CASE_VAR).as_deref() == Ok(name) {
        body();
        eprintln!("{SURVIVED}");
        std::process::exit(0);
    }
    if std::env::var_os(CASE_VAR).is_some() {
        // A child running another case: nothing to do here.
        return None;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    if secure {
        cmd.env("TINYMALLOC_SECURE", "1");
    } else {
        cmd.env_remove("TINYMALLOC_SECURE");
    }
    let out = cmd
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE_VAR, name)
        .no_core_dump()
        .output()
        .expect("run child");
    Some(out)
}

/// Runs case `name` in a child, in each mode, and checks it aborted with a
/// report that contains each of `all` and at least one of `any`.
fn expect_abort(name: &str, body: fn(), all: &[&str], any: &[&str]) {
    for secure in [false, true] {
        expect_abort_in(name, body, all, any, secure);
    }
}

fn expect_abort_in(name: &str, body: fn(), all: &[&str], any: &[&str], secure: bool) {
    let Some(out) = run_case(name, body, secure) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ctx = format!(
        "case {name} (secure {secure}): status {:?}\n--- stderr:\n{stderr}\n--- stdout:\n{stdout}",
        out.status
    );
    assert!(
        !stderr.contains(SURVIVED),
        "the misuse was not caught; {ctx}"
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "child did not die of SIGABRT; {ctx}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("tinymalloc:"))
        .unwrap_or_else(|| panic!("no report; {ctx}"));
    assert!(line.contains("0x"), "report names no address; {ctx}");
    for s in all {
        assert!(line.contains(s), "report lacks {s:?}; {ctx}");
    }
    assert!(
        any.is_empty() || any.iter().any(|s| line.contains(s)),
        "report lacks one of {any:?}; {ctx}"
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("tinymalloc:"))
            .count(),
        1,
        "one line expected; {ctx}"
    );
}

/// Runs case `name` in a child, in each mode, and checks it exited
/// successfully.
fn expect_success(name: &str, body: fn()) {
    for secure in [false, true] {
        let Some(out) = run_case(name, body, secure) else {
            return;
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.contains(SURVIVED),
            "case {name} (secure {secure}) should have succeeded: status {:?}\n--- stderr:\n{stderr}",
            out.status
        );
    }
}

const DOUBLE: &[&str] = &["double free"];
const INVALID: &[&str] = &["invalid pointer"];

fn double_free_of(size: usize) {
    // SAFETY: deliberate misuse: the second free must abort.
    unsafe {
        let keep = raw::malloc(size); // keeps the page / segment alive
        let p = raw::malloc(size);
        assert!(!p.is_null() && !keep.is_null());
        p.write_bytes(0xAB, size);
        raw::free(p);
        raw::free(p);
    }
}

#[test]
fn double_free_small() {
    expect_abort(
        "double_free_small",
        || double_free_of(32),
        DOUBLE,
        &["free()"],
    );
}

#[test]
fn double_free_medium() {
    expect_abort(
        "double_free_medium",
        || double_free_of(5000),
        DOUBLE,
        &["free()"],
    );
}

#[test]
fn double_free_large() {
    expect_abort(
        "double_free_large",
        || double_free_of(100 * KIB),
        DOUBLE,
        &["free()"],
    );
}

#[test]
fn double_free_of_a_cached_large_block_from_another_thread() {
    // The first free parks the block in the freeing thread's cache of
    // large blocks; a second free from another thread must see it.
    expect_abort(
        "double_free_of_a_cached_large_block_from_another_thread",
        || {
            // SAFETY: deliberate misuse.
            let p = unsafe { raw::malloc(100 * KIB) } as usize;
            // SAFETY: as above.
            unsafe { raw::free(p as *mut u8) };
            free_elsewhere(p);
        },
        DOUBLE,
        &[],
    );
}

#[test]
fn usable_size_of_a_cached_large_block() {
    expect_abort(
        "usable_size_of_a_cached_large_block",
        // SAFETY: deliberate misuse.
        || unsafe {
            let p = raw::malloc(100 * KIB);
            raw::free(p);
            raw::usable_size(p);
        },
        &["malloc_usable_size()"],
        // Secure mode names a freed block's use a double free.
        &["invalid pointer", "double free"],
    );
}

#[test]
fn double_free_large_alone() {
    // The only block of its large segment: the first free releases the
    // segment, the second must still be named a double free.
    expect_abort(
        "double_free_large_alone",
        || unsafe {
            let p = raw::malloc(MIB + 5);
            assert!(!p.is_null());
            raw::free(p);
            raw::free(p);
        },
        DOUBLE,
        &[],
    );
}

#[test]
fn double_free_huge() {
    expect_abort(
        "double_free_huge",
        || double_free_of(5 * MIB),
        DOUBLE,
        &["free()"],
    );
}

#[test]
fn free_of_stack_address() {
    expect_abort(
        "free_of_stack_address",
        || {
            let mut local = [0u8; 64];
            // SAFETY: deliberate misuse.
            unsafe { raw::free(local.as_mut_ptr().add(16)) };
            std::hint::black_box(&local);
        },
        INVALID,
        &["free()"],
    );
}

static mut STATIC_BUF: [u64; 512] = [0; 512];

#[test]
fn free_of_static() {
    expect_abort(
        "free_of_static",
        // SAFETY: deliberate misuse.
        || unsafe { raw::free(core::ptr::addr_of_mut!(STATIC_BUF) as *mut u8) },
        INVALID,
        &["free()"],
    );
}

/// The first address past the 47-bit user address space: its chunk-map
/// index is one past the last chunk (the map's spare entry, never set).
#[test]
fn free_of_address_past_user_space() {
    expect_abort(
        "free_of_address_past_user_space",
        // SAFETY: deliberate misuse.
        || unsafe { raw::free((1usize << 47) as *mut u8) },
        INVALID,
        &["free()"],
    );
}

#[test]
fn free_of_top_address() {
    expect_abort(
        "free_of_top_address",
        // SAFETY: deliberate misuse.
        || unsafe { raw::free((usize::MAX & !15) as *mut u8) },
        INVALID,
        &["free()"],
    );
}

#[test]
fn free_of_static_page_aligned() {
    // A page-aligned foreign address (the huge path inspects those).
    #[repr(align(4096))]
    #[allow(dead_code)]
    struct Page([u8; 8192]);
    static mut PAGE: Page = Page([0; 8192]);
    expect_abort(
        "free_of_static_page_aligned",
        // SAFETY: deliberate misuse.
        || unsafe { raw::free((core::ptr::addr_of_mut!(PAGE) as *mut u8).add(4096)) },
        INVALID,
        &["free()"],
    );
}

#[test]
fn free_of_interior_pointer_small() {
    expect_abort(
        "free_of_interior_pointer_small",
        // SAFETY: deliberate misuse.
        || unsafe {
            let p = raw::malloc(64);
            raw::free(p.add(16));
        },
        INVALID,
        &["free()"],
    );
}

/// The address just past the last whole block of a 48-byte page (65536 is
/// not a multiple of 48, so a 16-byte tail is left over): a block start as
/// far as the arithmetic goes, but no block.
fn small_page_tail() -> usize {
    // SAFETY: a plain allocation, kept (the page stays in use).
    let p = unsafe { raw::malloc(48) } as usize;
    (p & !(64 * KIB - 1)) + (64 * KIB / 48) * 48
}

#[test]
fn free_of_small_page_tail() {
    expect_abort(
        "free_of_small_page_tail",
        // SAFETY: deliberate misuse.
        || unsafe { raw::free(small_page_tail() as *mut u8) },
        INVALID,
        &["free()"],
    );
}

/// Frees `p` from a new thread (a cross-thread free) and waits for it.
fn free_elsewhere(p: usize) {
    // SAFETY: the callers' deliberate misuse.
    std::thread::spawn(move || unsafe { raw::free(p as *mut u8) })
        .join()
        .unwrap();
}

#[test]
fn free_of_small_page_tail_from_another_thread() {
    expect_abort(
        "free_of_small_page_tail_from_another_thread",
        || free_elsewhere(small_page_tail()),
        INVALID,
        &["free()"],
    );
}

/// The start of the second metadata page of a small segment: a page that
/// never holds blocks (its descriptor has none).
fn metadata_page_start() -> usize {
    // SAFETY: a plain allocation, kept (its segment stays mapped).
    let p = unsafe { raw::malloc(48) } as usize;
    (p & !(4 * MIB - 1)) + 64 * KIB
}

#[test]
fn free_of_segment_metadata() {
    expect_abort(
        "free_of_segment_metadata",
        // SAFETY: deliberate misuse.
        || unsafe {
            let m = metadata_page_start();
            raw::free(m as *mut u8);
            raw::free((m - 64 * KIB) as *mut u8);
        },
        INVALID,
        &["free()"],
    );
}

#[test]
fn free_of_segment_metadata_from_another_thread() {
    expect_abort(
        "free_of_segment_metadata_from_another_thread",
        || free_elsewhere(metadata_page_start()),
        INVALID,
        &["free()"],
    );
}

#[test]
fn free_of_interior_pointer_large() {
    expect_abort(
        "free_of_interior_pointer_large",
        // SAFETY: deliberate misuse (page-aligned interior pointer).
        || unsafe {
            let p = raw::malloc(200 * KIB);
            raw::free(p.add(8192));
        },
        INVALID,
        &["free()"],
    );
}

#[test]
fn free_of_interior_pointer_huge() {
    expect_abort(
        "free_of_interior_pointer_huge",
        // SAFETY: deliberate misuse (page-aligned interior pointer, and one
        // past the first chunk of the mapping).
        || unsafe {
            let p = raw::malloc(12 * MIB);
            let q = ((p as usize + 4 * MIB) & !(4 * MIB - 1)) as *mut u8;
            assert!(!raw::owns(q) && !raw::owns(p.add(4096)));
            raw::free(p.add(4096));
        },
        INVALID,
        &["free()"],
    );
}

#[test]
fn realloc_of_freed_pointer() {
    expect_abort(
        "realloc_of_freed_pointer",
        // SAFETY: deliberate misuse.
        || unsafe {
            let keep = raw::malloc(100);
            let p = raw::malloc(100);
            raw::free(p);
            let q = raw::realloc(p, 200);
            std::hint::black_box((keep, q));
        },
        &["realloc()"],
        &["invalid pointer", "double free"],
    );
}

#[test]
fn realloc_of_interior_pointer_small() {
    expect_abort(
        "realloc_of_interior_pointer_small",
        // SAFETY: deliberate misuse.
        || unsafe {
            let p = raw::malloc(100);
            let q = raw::realloc(p.add(16), 200);
            std::hint::black_box((p, q));
        },
        &["realloc()"],
        &["invalid pointer"],
    );
}

#[test]
fn realloc_of_freed_large_pointer() {
    expect_abort(
        "realloc_of_freed_large_pointer",
        // SAFETY: deliberate misuse.
        || unsafe {
            let keep = raw::malloc(100 * KIB);
            let p = raw::malloc(100 * KIB);
            raw::free(p);
            let q = raw::realloc(p, 300 * KIB);
            std::hint::black_box((keep, q));
        },
        &["realloc()"],
        &["invalid pointer", "double free"],
    );
}

#[test]
fn usable_size_of_foreign_pointer() {
    expect_abort(
        "usable_size_of_foreign_pointer",
        || {
            let v = std::hint::black_box(vec![0u64; 16]); // system allocator
                                                          // SAFETY: deliberate misuse.
            let n = unsafe { raw::usable_size(v.as_ptr() as *mut u8) };
            std::hint::black_box(n);
        },
        &["invalid pointer", "malloc_usable_size()"],
        &[],
    );
}

#[test]
fn double_free_from_another_thread() {
    // The owner frees, another thread frees again.
    expect_abort(
        "double_free_from_another_thread",
        || {
            // SAFETY: deliberate misuse.
            let p = unsafe { raw::malloc(48) } as usize;
            // SAFETY: as above.
            unsafe { raw::free(p as *mut u8) };
            free_elsewhere(p);
        },
        DOUBLE,
        &[],
    );
}

#[test]
fn double_free_twice_from_another_thread() {
    // Another thread frees twice (both cross-thread frees).
    expect_abort(
        "double_free_twice_from_another_thread",
        || {
            // SAFETY: deliberate misuse.
            let p = unsafe { raw::malloc(48) } as usize;
            std::thread::spawn(move || unsafe {
                raw::free(p as *mut u8);
                raw::free(p as *mut u8);
            })
            .join()
            .unwrap();
        },
        DOUBLE,
        &[],
    );
}

#[test]
fn double_free_remote_then_owner() {
    // Another thread frees first, then the owner frees the same block. The
    // owner's free must be caught (at the latest before the block could be
    // handed out twice).
    expect_abort(
        "double_free_remote_then_owner",
        || {
            // SAFETY: deliberate misuse.
            let p = unsafe { raw::malloc(48) } as usize;
            std::thread::spawn(move || unsafe { raw::free(p as *mut u8) })
                .join()
                .unwrap();
            // SAFETY: as above.
            unsafe {
                raw::free(p as *mut u8);
                let a = raw::malloc(48);
                raw::trim();
                let b = raw::malloc(48);
                let c = raw::malloc(48);
                eprintln!("blocks after the double free: {a:p} {b:p} {c:p} (first freed {p:#x})");
                assert!(
                    a != b && b != c && a != c,
                    "a live block was handed out twice"
                );
            }
        },
        DOUBLE,
        &[],
    );
}

#[test]
fn free_sized_with_wrong_size() {
    expect_abort(
        "free_sized_with_wrong_size",
        // SAFETY: deliberate misuse.
        || unsafe {
            let p = raw::malloc(100);
            raw::free_sized(p, 5000, 16);
        },
        &["size", "free_sized()"],
        &[],
    );
}

#[test]
fn free_sized_with_much_smaller_size() {
    expect_abort(
        "free_sized_with_much_smaller_size",
        // SAFETY: deliberate misuse: a 1 MiB block freed as 1 KiB.
        || unsafe {
            let p = raw::malloc(MIB);
            raw::free_sized(p, KIB, 16);
        },
        &["size", "free_sized()"],
        &[],
    );
}

#[test]
fn free_sized_with_wrong_alignment() {
    expect_abort(
        "free_sized_with_wrong_alignment",
        // SAFETY: deliberate misuse: a 16-aligned block that is not
        // 4096-aligned freed as 4096-aligned.
        || unsafe {
            let mut p = raw::malloc(100);
            while (p as usize).is_multiple_of(4096) {
                p = raw::malloc(100);
            }
            raw::free_sized(p, 100, 4096);
        },
        &["alignment", "free_sized()"],
        &[],
    );
}

/// BUG (reported): after `realloc` shrinks a small block in place, C23
/// `free_sized(p, size)` with the size given to `realloc` is valid, but
/// tinymalloc rejects it: `raw::realloc` keeps any block of <= 64 usable
/// bytes in place (src/raw.rs, `kind == Kind::Small && usable <= 64`), while
/// `raw::free_sized` demands `size * 2 + 32 >= usable`.
#[test]
fn free_sized_after_small_realloc_shrink() {
    expect_success("free_sized_after_small_realloc_shrink", || unsafe {
        let p = raw::malloc(64);
        let q = raw::realloc(p, 10);
        assert!(!q.is_null());
        raw::free_sized(q, 10, 16);
        let p = raw::malloc(60);
        let q = raw::realloc(p, 0);
        raw::free_sized(q, 0, 16);
    });
}

#[test]
fn correct_free_sized_is_accepted() {
    expect_success("correct_free_sized_is_accepted", || unsafe {
        for &size in &[
            0usize,
            1,
            16,
            17,
            64,
            65,
            1000,
            32 * KIB,
            32 * KIB + 1,
            MIB,
            2 * MIB + 1,
        ] {
            for &align in &[1usize, 8, 16, 32, 4096, 64 * KIB, 2 * MIB] {
                let p = raw::malloc_aligned(size, align);
                assert!(!p.is_null());
                raw::free_sized(p, size, align);
            }
            // Grown by realloc: the size given to realloc is the size.
            let p = raw::malloc(size);
            let q = raw::realloc(p, size * 3 + 1);
            raw::free_sized(q, size * 3 + 1, 16);
        }
    });
}

// ---------------------------------------------------------------------------
// Requests that fail cleanly (in-process).

#[test]
fn impossible_requests_return_null() {
    // SAFETY: these calls only return pointers (null expected).
    unsafe {
        for size in [
            usize::MAX,
            usize::MAX - 4096,
            usize::MAX / 2,
            isize::MAX as usize,
            isize::MAX as usize + 1,
        ] {
            assert!(raw::malloc(size).is_null(), "malloc({size:#x})");
            assert!(raw::zalloc(size).is_null(), "zalloc({size:#x})");
            assert!(
                raw::malloc_aligned(size, 64).is_null(),
                "malloc_aligned({size:#x}, 64)"
            );
            assert!(
                raw::malloc_aligned(size, 4 * MIB).is_null(),
                "malloc_aligned({size:#x}, 4 MiB)"
            );
            assert!(
                raw::zalloc_aligned(size, 4096).is_null(),
                "zalloc_aligned({size:#x}, 4096)"
            );
        }
        assert!(raw::calloc(usize::MAX / 2 + 1, 2).is_null());
        assert!(raw::calloc(1 << 40, 1 << 40).is_null());
        assert!(raw::calloc(usize::MAX, usize::MAX).is_null());
        assert!(raw::calloc(3, usize::MAX / 3 + 1).is_null());
        for align in [0usize, 3, 24, 48, 100, 4095, 4097, usize::MAX] {
            assert!(
                raw::malloc_aligned(64, align).is_null(),
                "malloc_aligned(64, {align})"
            );
            assert!(
                raw::zalloc_aligned(64, align).is_null(),
                "zalloc_aligned(64, {align})"
            );
        }
        assert!(raw::malloc_aligned(16, 1 << 62).is_null());
        assert!(raw::malloc_aligned(16, 1 << 63).is_null());

        // A failed realloc leaves the block untouched.
        let p = raw::malloc(100);
        p.write_bytes(0x5A, 100);
        assert!(raw::realloc(p, usize::MAX).is_null());
        assert!(raw::realloc(p, isize::MAX as usize).is_null());
        assert!(raw::realloc_aligned(p, 10, 3).is_null());
        assert!(raw::usable_size(p) >= 100);
        assert!((0..100).all(|i| p.add(i).read() == 0x5A));
        let q = raw::realloc(p, 200);
        assert!(!q.is_null() && (0..100).all(|i| q.add(i).read() == 0x5A));
        raw::free(q);

        // Null is ignored where C ignores it.
        raw::free(core::ptr::null_mut());
        raw::free_sized(core::ptr::null_mut(), 100, 16);
        assert_eq!(raw::usable_size(core::ptr::null_mut()), 0);
        assert!(!raw::owns(core::ptr::null()));
    }
}

#[test]
fn owns_never_aborts_on_foreign_pointers() {
    let local = 7u64;
    let v = Box::new([1u8; 100]); // system allocator
                                  // SAFETY: owns() accepts any address.
    unsafe {
        assert!(!raw::owns(&local as *const u64 as *const u8));
        assert!(!raw::owns(v.as_ptr()));
        assert!(!raw::owns(std::ptr::dangling::<u8>()));
        assert!(!raw::owns(usize::MAX as *const u8));
        let p = raw::malloc(100);
        assert!(raw::owns(p) && !raw::owns(p.add(1)) && !raw::owns(p.add(16)));
        raw::free(p);
        let p = raw::malloc(100 * KIB);
        assert!(raw::owns(p) && !raw::owns(p.add(4096)));
        raw::free(p);
    }
}

#[test]
fn huge_alignments_work() {
    for &align in &[4 * MIB, 8 * MIB, 16 * MIB] {
        for &size in &[1usize, 100, 4 * MIB, 5 * MIB + 3] {
            // SAFETY: checked allocations of `size` bytes.
            unsafe {
                let p = raw::malloc_aligned(size, align);
                assert!(!p.is_null(), "malloc_aligned({size}, {align})");
                assert_eq!(
                    p as usize % align,
                    0,
                    "malloc_aligned({size}, {align}) = {p:p}"
                );
                assert!(raw::usable_size(p) >= size);
                assert!(raw::owns(p));
                p.write_bytes(0xC3, size);
                // Grow keeping the alignment.
                let q = raw::realloc_aligned(p, size + 3 * MIB, align);
                assert!(!q.is_null() && (q as usize).is_multiple_of(align));
                assert!((0..size).step_by(4093).all(|i| q.add(i).read() == 0xC3));
                assert_eq!(q.add(size - 1).read(), 0xC3);
                q.add(size + 3 * MIB - 1).write(1);
                raw::free(q);

                let z = raw::zalloc_aligned(size, align);
                assert!(!z.is_null() && (z as usize).is_multiple_of(align));
                assert!((0..size).all(|i| z.add(i).read() == 0));
                raw::free_sized(z, size, align);
            }
        }
    }
    // Through GlobalAlloc too.
    use core::alloc::{GlobalAlloc, Layout};
    let tm = tinymalloc::TinyMalloc;
    for &align in &[4 * MIB, 16 * MIB] {
        let l = Layout::from_size_align(3000, align).unwrap();
        // SAFETY: a valid layout; freed with the same layout.
        unsafe {
            let p = tm.alloc_zeroed(l);
            assert!(!p.is_null() && (p as usize).is_multiple_of(align));
            assert!((0..3000).all(|i| p.add(i).read() == 0));
            let q = tm.realloc(p, l, 9 * MIB);
            assert!(!q.is_null() && (q as usize).is_multiple_of(align));
            tm.dealloc(q, Layout::from_size_align(9 * MIB, align).unwrap());
        }
    }
}

/// Children that crash on purpose must not leave core files behind.
trait NoCoreDump {
    fn no_core_dump(&mut self) -> &mut Self;
}

impl NoCoreDump for std::process::Command {
    fn no_core_dump(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe and touches no memory of
        // the parent.
        unsafe {
            self.pre_exec(|| {
                let zero = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &zero);
                Ok(())
            })
        }
    }
}
