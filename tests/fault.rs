//! Fault injection: tinymalloc when the OS refuses memory, across fork, and
//! when threads exit while others still free their blocks.
//!
//! - **Address-space limit** (`RLIMIT_AS` = what the process uses + 64
//!   MiB): for small, medium, large and huge blocks, allocate until
//!   `raw::malloc` returns null; every other entry point then fails cleanly
//!   too (null, a failed realloc leaves its block intact); every block
//!   allocated before still holds its pattern; after freeing half,
//!   allocating works again; after freeing all, every size can be had again.
//!   The same through the C library (`tests/c/oom.c`, linked with
//!   `libtinymalloc.so`): NULL comes with `errno == ENOMEM`.
//! - **Injected mmap / mremap failures**: this test binary defines its own
//!   `mmap` and `mremap` (they take precedence over libc's for every call
//!   tinymalloc makes) and makes one in N of them fail with ENOMEM while
//!   one, then four threads churn through every size range, handing blocks
//!   to each other. Nulls are allowed, crashes and harmed blocks are not;
//!   once injection stops every size can be had again, and with every block
//!   freed nothing is left in use.
//! - **Fork** 300 times while four threads allocate and free (all size
//!   ranges, cross-thread): each child checks a block made before the fork,
//!   allocates and frees across all ranges (every tenth also from a new
//!   thread) and exits 0 within a time limit.
//! - **Huge blocks moving while other threads map segments**: a block that
//!   realloc moves with mremap frees its old address range at once; new
//!   segments mapped there by other threads must stay known.
//! - **Threads that exit while others free their blocks**: 200 short-lived
//!   producer threads stream blocks to two consumer threads that free them
//!   while the producer ends; at the end nothing is in use or abandoned.
//!
//! Each scenario runs in a child process (this executable again, with
//! `TM_FAULT_SCENARIO` naming it), so that limits, injected failures and
//! forks touch no other test. Children print `fault: ...` figures, shown
//! with `--nocapture`. The harness runs on the system allocator; blocks are
//! made with `tinymalloc::raw`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tinymalloc::raw;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const SCENARIO: &str = "TM_FAULT_SCENARIO";

// ---------------------------------------------------------------------------
// Child processes

/// True in the child process that runs scenario `name`.
fn in_child(name: &str) -> bool {
    std::env::var(SCENARIO).as_deref() == Ok(name)
}

/// Runs test `name` of this executable in a child process with the
/// scenario variable set; fails on a non-zero exit or after `limit`.
/// Returns what the child printed.
fn run_child(name: &str, limit: Duration) -> String {
    let exe = std::env::current_exe().unwrap();
    let o = tinymalloc_testkit::run(
        Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(SCENARIO, name),
        b"",
        limit,
    );
    let text = format!("{}{}", o.stdout, o.stderr);
    assert!(
        o.status.success(),
        "scenario {name} failed ({:?}):\n{text}",
        o.status
    );
    // (A child's line may follow libtest's "test NAME ... " prefix.)
    for line in text
        .lines()
        .filter_map(|l| l.find("fault:").map(|i| &l[i..]))
    {
        eprintln!("{line}");
    }
    text
}

// ---------------------------------------------------------------------------
// Blocks with patterns

use tinymalloc_testkit::Rng;

/// A size from every range: small, medium, large, and now and then huge.
fn any_size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=49 => 1 + r.below(64),
        50..=79 => 65 + r.below(32 * KIB - 64),
        80..=96 => 32 * KIB + 1 + r.below(2 * MIB - 32 * KIB),
        _ => 2 * MIB + 1 + r.below(6 * MIB),
    }
}

#[inline]
fn pat(seed: u64, i: usize) -> u8 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ (i as u8).wrapping_mul(31)
}

/// Marks a block: all of it when small, else its first and last 256 bytes
/// and one byte per 4 KiB page (the tests here are about address space,
/// not about touching memory).
fn mark(p: *mut u8, size: usize, seed: u64) {
    each_marked(size, |i| unsafe { p.add(i).write(pat(seed, i)) });
}

/// Panics unless the block still holds `mark`'s pattern.
fn check(p: *const u8, size: usize, seed: u64, what: &str) {
    each_marked(size, |i| {
        let got = unsafe { p.add(i).read() };
        assert_eq!(
            got,
            pat(seed, i),
            "{what}: block {p:?} of {size} bytes lost byte {i}"
        );
    });
}

fn each_marked(size: usize, mut f: impl FnMut(usize)) {
    if size <= 4 * KIB {
        (0..size).for_each(f);
        return;
    }
    (0..256).for_each(&mut f);
    (256..size - 256).step_by(4096).for_each(&mut f);
    (size - 256..size).for_each(f);
}

/// A block handed between threads.
#[derive(Clone, Copy)]
struct Blk {
    p: usize,
    size: usize,
    seed: u64,
}

impl Blk {
    fn alloc(size: usize, seed: u64) -> Option<Blk> {
        // SAFETY: plain allocation.
        let p = unsafe { raw::malloc(size) };
        if p.is_null() {
            return None;
        }
        assert_eq!(p as usize % raw::MIN_ALIGN, 0);
        mark(p, size, seed);
        Some(Blk {
            p: p as usize,
            size,
            seed,
        })
    }
    fn check(&self, what: &str) {
        check(self.p as *const u8, self.size, self.seed, what);
    }
    fn free(self) {
        self.check("before free");
        // SAFETY: a live block, freed once.
        unsafe { raw::free(self.p as *mut u8) };
    }
}

// ---------------------------------------------------------------------------
// Address-space limit

fn vm_size() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace()
        .next()
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4096
}

/// Sets RLIMIT_AS's soft limit (None: back to the hard limit).
fn limit_as(bytes: Option<usize>) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-parameter.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) }, 0);
    rl.rlim_cur = bytes.map_or(rl.rlim_max, |b| b as libc::rlim_t);
    // SAFETY: valid argument.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
}

/// Fills the address space left under the limit with blocks of `size`,
/// then checks the failure, the old blocks, and recovery.
fn exhaust(size: usize, name: &str) {
    // Everything the check needs is allocated before the limit: the
    // harness allocates from the system allocator, which the limit also
    // starves.
    let mut blocks: Vec<usize> = Vec::with_capacity(1 << 20);
    let cap = blocks.capacity();
    println!("fault: {name}: limiting the address space");
    limit_as(Some(vm_size() + 64 * MIB));
    let mut nulls = 0u64;
    // SAFETY (this block): raw allocation calls and blocks we own.
    unsafe {
        loop {
            assert!(blocks.len() < cap, "{name}: no failure after {cap} blocks");
            let p = raw::malloc(size);
            if p.is_null() {
                nulls += 1;
                break;
            }
            mark(p, size, blocks.len() as u64);
            blocks.push(p as usize);
        }
        let n = blocks.len();
        // Every entry point fails cleanly at this point.
        assert!(raw::calloc(1, size).is_null(), "{name}: calloc");
        assert!(raw::zalloc(size).is_null(), "{name}: zalloc");
        assert!(
            raw::malloc_aligned(size, 4096).is_null(),
            "{name}: malloc_aligned"
        );
        nulls += 3;
        if let Some(&last) = blocks.last() {
            let q = raw::realloc(last as *mut u8, size + 256 * MIB);
            assert!(q.is_null(), "{name}: realloc past the limit succeeded");
            nulls += 1;
            check(
                last as *const u8,
                size,
                n as u64 - 1,
                "after failed realloc",
            );
        }
        for (i, &p) in blocks.iter().enumerate() {
            check(p as *const u8, size, i as u64, "after the limit was hit");
        }
        // Free half: the same size can be had again.
        let mut freed = 0;
        for i in (0..n).step_by(2) {
            raw::free(blocks[i] as *mut u8);
            blocks[i] = 0;
            freed += 1;
        }
        let mut again = 0;
        for i in (0..n).step_by(2) {
            let p = raw::malloc(size);
            if p.is_null() {
                break;
            }
            mark(p, size, i as u64);
            blocks[i] = p as usize;
            again += 1;
        }
        assert!(
            n < 2 || again * 2 >= freed,
            "{name}: {n} blocks, {freed} freed, only {again} allocated again"
        );
        for (i, &p) in blocks.iter().enumerate() {
            if p != 0 {
                check(p as *const u8, size, i as u64, "before the final free");
                raw::free(p as *mut u8);
            }
        }
        // Everything free: every size can be had again.
        for s in [100, 20 * KIB, MIB, 16 * MIB] {
            let p = raw::malloc(s);
            assert!(
                !p.is_null(),
                "{name}: with every block freed, malloc({s}) still fails (stats: {:?})",
                tinymalloc::stats()
            );
            mark(p, s, 7);
            check(p, s, 7, "recovery");
            raw::free(p);
        }
        limit_as(None);
        println!(
            "fault: {name}: {n} blocks of {size} bytes then null ({nulls} nulls), \
             {again} again after freeing half, all intact"
        );
    }
}

#[test]
fn address_space_limit_small() {
    if in_child("address_space_limit_small") {
        return exhaust(100, "RLIMIT_AS small");
    }
    run_child("address_space_limit_small", Duration::from_secs(120));
}

#[test]
fn address_space_limit_medium() {
    if in_child("address_space_limit_medium") {
        return exhaust(20 * KIB, "RLIMIT_AS medium");
    }
    run_child("address_space_limit_medium", Duration::from_secs(120));
}

#[test]
fn address_space_limit_large() {
    if in_child("address_space_limit_large") {
        return exhaust(MIB, "RLIMIT_AS large");
    }
    run_child("address_space_limit_large", Duration::from_secs(120));
}

#[test]
fn address_space_limit_huge() {
    if in_child("address_space_limit_huge") {
        return exhaust(16 * MIB, "RLIMIT_AS huge");
    }
    run_child("address_space_limit_huge", Duration::from_secs(120));
}

/// Allocates blocks of `size` until null (at most `max`); returns them.
fn fill_until_null(size: usize, max: usize, out: &mut Vec<usize>) {
    out.clear();
    while out.len() < max {
        // SAFETY: plain allocation.
        let p = unsafe { raw::malloc(size) };
        if p.is_null() {
            return;
        }
        mark(p, size, out.len() as u64);
        out.push(p as usize);
    }
}

fn free_all(size: usize, blocks: &mut Vec<usize>) {
    for (i, &p) in blocks.iter().enumerate() {
        check(p as *const u8, size, i as u64, "before free");
        // SAFETY: live blocks, freed once.
        unsafe { raw::free(p as *mut u8) };
    }
    blocks.clear();
}

/// Memory freed in one size range serves another: freed huge memory must
/// not starve small blocks once the OS refuses new mappings. With 64 MiB of
/// headroom no 256 MiB huge region can be reserved, and huge blocks get
/// mappings of their own.
#[test]
fn address_space_limit_freed_huge_blocks_serve_small_ones() {
    freed_huge_blocks_serve_small_ones(
        "address_space_limit_freed_huge_blocks_serve_small_ones",
        64 * MIB,
        100,
    );
}

/// As above with 400 MiB of headroom: the huge blocks fill a region (and
/// then mappings of their own); once they are freed, the region, without a
/// live block, must be given back when the OS refuses a small segment.
#[test]
fn address_space_limit_freed_huge_region_serves_small_blocks() {
    freed_huge_blocks_serve_small_ones(
        "address_space_limit_freed_huge_region_serves_small_blocks",
        400 * MIB,
        1000,
    );
}

/// Counts `small`-byte blocks that fit under `headroom` bytes of address
/// space from a clean start, then again after huge blocks of 7 MiB filled
/// it and were all freed: at least 80% as many must fit.
fn freed_huge_blocks_serve_small_ones(name: &str, headroom: usize, small: usize) {
    if !in_child(name) {
        run_child(name, Duration::from_secs(120));
        return;
    }
    let mut blocks: Vec<usize> = Vec::with_capacity(1 << 20);
    println!("fault: limiting the address space");
    limit_as(Some(vm_size() + headroom));
    // Reference: how many small blocks fit from a clean start.
    fill_until_null(small, 1 << 20, &mut blocks);
    let reference = blocks.len();
    assert!(reference < 1 << 20, "the limit was not reached");
    free_all(small, &mut blocks);
    // Huge blocks until null, all freed...
    let huge = 7 * MIB;
    fill_until_null(huge, 1000, &mut blocks);
    let nhuge = blocks.len();
    free_all(huge, &mut blocks);
    // ... then small blocks again.
    fill_until_null(small, 1 << 20, &mut blocks);
    let after = blocks.len();
    free_all(small, &mut blocks);
    let st = tinymalloc::stats();
    limit_as(None);
    println!(
        "fault: freed huge blocks serve small ones: {reference} blocks of {small} bytes from a \
         clean start, {after} after {nhuge} huge blocks of 7 MiB were freed (reserved {} MiB)",
        st.reserved / MIB
    );
    assert!(
        after * 10 >= reference * 8,
        "after {nhuge} huge blocks of 7 MiB were freed, only {after} blocks of {small} bytes \
         fit ({reference} from a clean start): the freed huge memory holds the address space, \
         and a failed mapping does not release it; {st:?}"
    );
}

/// Memory freed in one size range serves another: the empty segments
/// tinymalloc keeps (arena caches, a thread's last segment) must not
/// starve a huge block once the OS refuses new mappings.
#[test]
fn address_space_limit_freed_small_blocks_serve_a_huge_one() {
    const NAME: &str = "address_space_limit_freed_small_blocks_serve_a_huge_one";
    if !in_child(NAME) {
        run_child(NAME, Duration::from_secs(120));
        return;
    }
    let mut blocks: Vec<usize> = Vec::with_capacity(1 << 20);
    println!("fault: limiting the address space");
    limit_as(Some(vm_size() + 64 * MIB));
    // Reference: a 40 MiB block fits from a clean start (with no room for a
    // 256 MiB region, in a mapping of its own, unmapped when freed).
    let big = 40 * MIB;
    fill_until_null(big, 1000, &mut blocks);
    let reference = blocks.len();
    free_all(big, &mut blocks);
    // Small blocks until null, all freed...
    fill_until_null(100, 1 << 20, &mut blocks);
    let nsmall = blocks.len();
    free_all(100, &mut blocks);
    raw::trim();
    // ... then the big block again.
    fill_until_null(big, 1000, &mut blocks);
    let after = blocks.len();
    free_all(big, &mut blocks);
    let st = tinymalloc::stats();
    limit_as(None);
    println!(
        "fault: freed small blocks serve a huge one: {reference} blocks of 40 MiB from a clean \
         start, {after} after {nsmall} small blocks were freed (reserved {} MiB)",
        st.reserved / MIB
    );
    assert!(
        reference >= 1,
        "no 40 MiB block fits under 64 MiB of headroom at all"
    );
    assert!(
        after >= reference,
        "with all {nsmall} small blocks freed (and trim), no 40 MiB block fits any more: the \
         empty segments tinymalloc keeps hold the address space, and a failed mapping does \
         not release them; {st:?}"
    );
}

/// Freed huge memory is either reused or unmapped, never lost: alternating
/// a 7 MiB block and a 4 MiB-aligned block (which always gets a mapping of
/// its own) must run forever under a 64 MiB headroom.
#[test]
fn address_space_limit_cached_huge_mappings_are_not_lost() {
    const NAME: &str = "address_space_limit_cached_huge_mappings_are_not_lost";
    if !in_child(NAME) {
        run_child(NAME, Duration::from_secs(60));
        return;
    }
    println!("fault: limiting the address space");
    limit_as(Some(vm_size() + 64 * MIB));
    let before = tinymalloc::stats().reserved;
    for i in 0..100 {
        // SAFETY: plain allocations, freed once.
        unsafe {
            let q = raw::malloc(7 * MIB);
            let p = if q.is_null() {
                q
            } else {
                raw::free(q);
                raw::malloc_aligned(35, 4 * MIB)
            };
            if p.is_null() {
                let st = tinymalloc::stats();
                limit_as(None);
                panic!(
                    "round {i}: out of address space with nothing in use: {} MiB reserved (was \
                     {} MiB before the loop): freed huge memory is kept where no request can \
                     use it and not given back; {st:?}",
                    st.reserved / MIB,
                    before / MIB
                );
            }
            raw::free(p);
        }
    }
    let after = tinymalloc::stats().reserved;
    limit_as(None);
    println!(
        "fault: freed huge memory: 100 rounds of a 7 MiB and a 4 MiB-aligned block, \
         reserved {} -> {} MiB",
        before / MIB,
        after / MIB
    );
}

// ---------------------------------------------------------------------------
// The C library under an address-space limit: ENOMEM

/// Builds libtinymalloc.so with this test's profile (a no-op when up to
/// date; cargo does not build another package's cdylib for our tests) and
/// returns its directory.
fn c_library() -> PathBuf {
    tinymalloc_testkit::build("tinymalloc-capi", &["libtinymalloc.so"])
}

#[test]
fn c_api_sets_enomem_under_an_address_space_limit() {
    let lib = c_library();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = tinymalloc_testkit::profile_dir()
        .join("fault-tests")
        .join("oom");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    let out = Command::new("cc")
        .args(["-O1", "-g", "-fno-builtin", "-Wall", "-Wextra", "-I"])
        .arg(root.join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(root.join("tests/c/oom.c"))
        .arg("-L")
        .arg(&lib)
        .arg("-ltinymalloc")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .output()
        .expect("cannot run cc: install it with `apt-get install gcc`");
    assert!(
        out.status.success(),
        "compiling tests/c/oom.c failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    let out = Command::new(&exe).arg("64").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "oom ({:?}):\n{text}", out.status);
    assert!(text.contains("oom: ok"), "{text}");
    for l in text.lines().filter(|l| l.starts_with("oom:")) {
        eprintln!("fault: C {l}");
    }
    assert!(start.elapsed() < Duration::from_secs(60));
}

// ---------------------------------------------------------------------------
// Injected mmap / mremap failures

/// This executable's `mmap` and `mremap`: libc's, except that while
/// `ARMED`, one call in `EVERY` for 64 KiB or more fails with ENOMEM
/// (smaller requests, such as std's signal stacks for new threads, pass).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod inject {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

    pub static ARMED: AtomicBool = AtomicBool::new(false);
    pub static EVERY: AtomicU64 = AtomicU64::new(3);
    pub static CALLS: AtomicU64 = AtomicU64::new(0);
    pub static INJECTED: AtomicU64 = AtomicU64::new(0);

    fn refuse(len: usize) -> bool {
        if !ARMED.load(Relaxed) || len < 64 * 1024 {
            return false;
        }
        let n = CALLS.fetch_add(1, Relaxed) + 1;
        if n.is_multiple_of(EVERY.load(Relaxed).max(1)) {
            INJECTED.fetch_add(1, Relaxed);
            // SAFETY: this thread's errno.
            unsafe { *libc::__errno_location() = libc::ENOMEM };
            true
        } else {
            false
        }
    }

    /// # Safety
    /// As mmap(2).
    #[no_mangle]
    pub unsafe extern "C" fn mmap(
        addr: *mut libc::c_void,
        len: libc::size_t,
        prot: libc::c_int,
        flags: libc::c_int,
        fd: libc::c_int,
        off: libc::off_t,
    ) -> *mut libc::c_void {
        if refuse(len) {
            return libc::MAP_FAILED;
        }
        // SAFETY: forwarded as given.
        unsafe {
            libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) as *mut libc::c_void
        }
    }

    /// mremap(2) is variadic in C; on x86-64 a caller passes the optional
    /// fifth argument in the same register as a fixed one.
    ///
    /// # Safety
    /// As mremap(2).
    #[no_mangle]
    pub unsafe extern "C" fn mremap(
        old: *mut libc::c_void,
        old_len: libc::size_t,
        new_len: libc::size_t,
        flags: libc::c_int,
        new_addr: *mut libc::c_void,
    ) -> *mut libc::c_void {
        if refuse(new_len) {
            return libc::MAP_FAILED;
        }
        // SAFETY: forwarded as given.
        unsafe {
            libc::syscall(libc::SYS_mremap, old, old_len, new_len, flags, new_addr)
                as *mut libc::c_void
        }
    }
}

/// One worker of the injection scenario: `ops` random operations; nulls
/// are counted, never fatal; every block is checked before it is freed or
/// resized, and after a resize (failed or not).
fn churn_with_failures(seed: u64, ops: usize, pool: &Mutex<Vec<Blk>>, nulls: &AtomicU64) {
    let mut r = Rng(seed | 1);
    let mut mine: Vec<Blk> = Vec::with_capacity(256);
    for k in 0..ops {
        match r.below(10) {
            0..=4 => {
                let size = any_size(&mut r);
                let seed = r.next();
                let b = if r.below(4) == 0 {
                    // Aligned or zeroed entry points.
                    // SAFETY: plain allocation.
                    let p = unsafe {
                        if r.below(2) == 0 {
                            raw::malloc_aligned(size, 1 << (5 + r.below(12)))
                        } else {
                            raw::zalloc(size)
                        }
                    };
                    (!p.is_null()).then(|| {
                        mark(p, size, seed);
                        Blk {
                            p: p as usize,
                            size,
                            seed,
                        }
                    })
                } else {
                    Blk::alloc(size, seed)
                };
                match b {
                    Some(b) if k % 3 == 0 => pool.lock().unwrap().push(b),
                    Some(b) => mine.push(b),
                    None => {
                        nulls.fetch_add(1, Relaxed);
                    }
                }
                if mine.len() > 200 {
                    mine.swap_remove(r.below(mine.len())).free();
                }
            }
            5..=6 => {
                if !mine.is_empty() {
                    mine.swap_remove(r.below(mine.len())).free();
                }
            }
            7 => {
                let b = pool.lock().unwrap().pop();
                if let Some(b) = b {
                    b.free();
                }
            }
            _ => {
                if !mine.is_empty() {
                    let i = r.below(mine.len());
                    let b = mine[i];
                    b.check("before realloc");
                    let to = any_size(&mut r);
                    // SAFETY: a live block; on success only q is used.
                    let q = unsafe { raw::realloc(b.p as *mut u8, to) };
                    if q.is_null() {
                        nulls.fetch_add(1, Relaxed);
                        b.check("after a failed realloc");
                    } else {
                        check(q, b.size.min(to).min(256), b.seed, "after realloc");
                        mark(q, to, b.seed);
                        mine[i] = Blk {
                            p: q as usize,
                            size: to,
                            seed: b.seed,
                        };
                    }
                }
            }
        }
    }
    for b in mine {
        b.free();
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn injected_mmap_failures() {
    const NAME: &str = "injected_mmap_failures";
    if !in_child(NAME) {
        run_child(NAME, Duration::from_secs(120));
        return;
    }
    use inject::{ARMED, CALLS, EVERY, INJECTED};
    let pool = Mutex::new(Vec::new());
    let nulls = AtomicU64::new(0);
    // One thread, then four, with one big mapping in 2, 3 or 5 refused.
    for (round, (every, threads)) in [(2u64, 1usize), (3, 1), (3, 4), (5, 4), (2, 4)]
        .into_iter()
        .enumerate()
    {
        EVERY.store(every, Relaxed);
        ARMED.store(true, Relaxed);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (pool, nulls) = (&pool, &nulls);
                s.spawn(move || {
                    churn_with_failures((round * 16 + t) as u64 + 99, 3000, pool, nulls)
                });
            }
        });
        ARMED.store(false, Relaxed);
        // Whatever threads left is freed here, cross-thread.
        for b in pool.lock().unwrap().drain(..) {
            b.free();
        }
        // Injection off: every size can be had again.
        for s in [16, 100, 20 * KIB, 100 * KIB, MIB, 3 * MIB, 16 * MIB] {
            let b = Blk::alloc(s, 5).unwrap_or_else(|| panic!("malloc({s}) fails after injection"));
            b.free();
        }
    }
    raw::trim();
    let st = tinymalloc::stats();
    assert_eq!(st.in_use, 0, "blocks left in use: {st:?}");
    assert_eq!(st.abandoned_segments, 0, "{st:?}");
    let injected = INJECTED.load(Relaxed);
    assert!(injected > 100, "too few failures injected: {injected}");
    assert!(nulls.load(Relaxed) > 0);
    println!(
        "fault: injected: {injected} mmap/mremap failures of {} big calls, {} null results, \
         no block harmed, nothing left in use",
        CALLS.load(Relaxed),
        nulls.load(Relaxed)
    );
}

// ---------------------------------------------------------------------------
// Fork while other threads allocate

/// Runs in a forked child: only tinymalloc and raw system calls. Returns
/// the exit status (0: fine).
fn in_forked_child(parent_block: Blk, pool: &Mutex<Vec<Blk>>, i: usize) -> i32 {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        parent_block.check("a parent block in the fork child");
        parent_block.free();
        // A block of another (vanished) thread, if the pool's lock is free
        // (its holder may not exist here).
        if let Ok(mut v) = pool.try_lock() {
            if let Some(b) = v.pop() {
                b.free();
            }
        }
        let mut r = Rng(i as u64 * 7919 + 1);
        let mut live = [None::<Blk>; 32];
        for k in 0..200 {
            let slot = &mut live[r.below(32)];
            if let Some(b) = slot.take() {
                b.free();
            } else {
                let size = if k % 50 == 0 {
                    3 * MIB
                } else {
                    any_size(&mut r)
                };
                *slot = Some(Blk::alloc(size, k).expect("malloc in the fork child"));
            }
        }
        for b in live.into_iter().flatten() {
            b.free();
        }
        if i.is_multiple_of(10) {
            // A new thread in the child gets a heap from the pool.
            std::thread::spawn(|| {
                let b = Blk::alloc(1000, 3).expect("malloc in a thread of the fork child");
                b.free();
            })
            .join()
            .unwrap();
        }
    }));
    if r.is_ok() {
        0
    } else {
        1
    }
}

#[test]
fn fork_while_threads_allocate() {
    const NAME: &str = "fork_while_threads_allocate";
    const FORKS: usize = 300;
    if !in_child(NAME) {
        run_child(NAME, Duration::from_secs(180));
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let pool = Arc::new(Mutex::new(Vec::<Blk>::new()));
    let ops = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (stop, pool, ops) = (stop.clone(), pool.clone(), ops.clone());
            std::thread::spawn(move || {
                let mut r = Rng(t * 31 + 5);
                let mut mine: Vec<Blk> = Vec::new();
                while !stop.load(Relaxed) {
                    // Every range, but mostly small blocks: each fork
                    // makes the parent's next writes copy pages, so the
                    // workers keep their footprint small.
                    let size = match r.below(1000) {
                        0 => 3 * MIB,
                        1..=20 => 32 * KIB + 1 + r.below(512 * KIB),
                        _ => any_size(&mut r) % (16 * KIB) + 1,
                    };
                    let b = Blk::alloc(size, r.next()).expect("malloc");
                    if r.below(3) == 0 {
                        pool.lock().unwrap().push(b);
                    } else {
                        mine.push(b);
                    }
                    if mine.len() > 32 {
                        mine.swap_remove(r.below(mine.len())).free();
                    }
                    // Pop at least as often as push: the pool stays small.
                    if r.below(3) == 0 || pool.lock().unwrap().len() > 64 {
                        let b = pool.lock().unwrap().pop();
                        if let Some(b) = b {
                            b.free();
                        }
                    }
                    // Let the fork children run too (2 cores, 4 workers).
                    if ops.fetch_add(1, Relaxed) % 16 == 0 {
                        std::thread::yield_now();
                    }
                }
                for b in mine {
                    b.free();
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..FORKS {
        let parent_block = Blk::alloc(100 + i * 37 % 50_000, i as u64).unwrap();
        // SAFETY: the child only uses tinymalloc, the pool (try_lock) and
        // a fresh thread, then leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = in_forked_child(parent_block, &pool, i);
            // SAFETY: ends the child without running the parent's exit
            // handlers or destructors.
            unsafe { libc::_exit(code) };
        }
        let t = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            assert_eq!(r, 0, "waitpid failed");
            if t.elapsed() > Duration::from_secs(20) {
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("fork child {i} hung (a lock held across fork?)");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        slowest = slowest.max(t.elapsed());
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "fork child {i} failed: status {status:#x}"
        );
        parent_block.free();
    }
    stop.store(true, Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    for b in pool.lock().unwrap().drain(..) {
        b.free();
    }
    println!(
        "fault: fork: {FORKS} forks while 4 threads allocated ({} ops), every child exited 0 \
         (slowest {slowest:?}, all {:?})",
        ops.load(Relaxed),
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Huge blocks moving while other threads map segments

/// A huge block that realloc moves (mremap to a new place) leaves its old
/// address range unmapped; other threads map new segments there at once.
/// Their chunk map entries must survive: four threads move huge blocks
/// back and forth (3 MiB <-> 13 MiB) while four others map large segments
/// and check that every block they hold is still known (`raw::owns`).
/// (Found by the soak test: `tinymalloc: invalid pointer ... in free()`
/// after 8 minutes; this reproduces it within seconds.)
#[test]
fn huge_moves_race_new_mappings() {
    const NAME: &str = "huge_moves_race_new_mappings";
    if !in_child(NAME) {
        let text = run_child(NAME, Duration::from_secs(60));
        assert!(text.contains("fault: huge moves"), "{text}");
        return;
    }
    let stop = AtomicBool::new(false);
    let lost = AtomicU64::new(0);
    let (moves, rounds) = std::thread::scope(|s| {
        let movers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    // SAFETY: one live block, replaced by each realloc.
                    unsafe {
                        let mut p = raw::malloc(3 * MIB);
                        while !stop.load(Relaxed) && lost.load(Relaxed) == 0 {
                            if !raw::owns(p) {
                                lost.fetch_add(1, Relaxed);
                                println!("fault: huge moves: live huge block {p:?} lost");
                                break;
                            }
                            let to = if n.is_multiple_of(2) {
                                13 * MIB
                            } else {
                                3 * MIB
                            };
                            let q = raw::realloc(p, to);
                            assert!(!q.is_null());
                            p = q;
                            n += 1;
                        }
                        if lost.load(Relaxed) == 0 {
                            raw::free(p);
                        }
                    }
                    n
                })
            })
            .collect();
        let mappers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Relaxed) && lost.load(Relaxed) == 0 {
                        // 1.5 MiB blocks, two per large segment: new
                        // segments are mapped and released all the time.
                        // SAFETY: fresh blocks, freed once.
                        unsafe {
                            let blocks: Vec<*mut u8> =
                                (0..8).map(|_| raw::malloc(1536 * KIB)).collect();
                            for &b in &blocks {
                                if !raw::owns(b) {
                                    lost.fetch_add(1, Relaxed);
                                    println!("fault: huge moves: live large block {b:?} lost");
                                }
                            }
                            if lost.load(Relaxed) == 0 {
                                blocks.into_iter().for_each(|b| raw::free(b));
                            }
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(6));
        stop.store(true, Relaxed);
        (
            movers.into_iter().map(|t| t.join().unwrap()).sum::<u64>(),
            mappers.into_iter().map(|t| t.join().unwrap()).sum::<u64>(),
        )
    });
    assert_eq!(
        lost.load(Relaxed),
        0,
        "a live block's chunk map entry was cleared: huge::realloc_move clears the old \
         chunk's entry (segmap::set(h, None)) after mremap has already unmapped it, so a \
         segment another thread mapped there in between loses its entry"
    );
    println!(
        "fault: huge moves: {moves} huge reallocs moved while {rounds} rounds of 8 large \
         blocks were mapped; no block lost"
    );
}

// ---------------------------------------------------------------------------
// Threads that exit while others free their blocks

#[test]
fn threads_exit_while_others_free_their_blocks() {
    const NAME: &str = "threads_exit_while_others_free_their_blocks";
    const PRODUCERS: usize = 200;
    if !in_child(NAME) {
        run_child(NAME, Duration::from_secs(120));
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel::<Blk>();
    let rx = Arc::new(Mutex::new(rx));
    let freed = Arc::new(AtomicUsize::new(0));
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (rx, freed) = (rx.clone(), freed.clone());
            std::thread::spawn(move || loop {
                let b = rx.lock().unwrap().recv();
                match b {
                    Ok(b) => {
                        b.free();
                        freed.fetch_add(1, Relaxed);
                    }
                    Err(_) => break,
                }
            })
        })
        .collect();
    let mut kept = Vec::new();
    let mut made = 0;
    for p in 0..PRODUCERS {
        let tx = tx.clone();
        // Each producer streams its blocks to the consumers (freed while
        // it runs and after it ends) and leaves a few to the main thread.
        let h = std::thread::spawn(move || {
            let mut r = Rng(p as u64 * 13 + 1);
            let mut keep = Vec::new();
            for k in 0..150 {
                let size = if k == 77 && p % 8 == 0 {
                    3 * MIB
                } else {
                    any_size(&mut r) % (256 * KIB) + 1
                };
                let b = Blk::alloc(size, r.next()).expect("malloc");
                if k % 10 == 0 {
                    keep.push(b);
                } else {
                    tx.send(b).unwrap();
                }
            }
            keep
        });
        let keep = h.join().unwrap();
        made += 150;
        // The producer has ended; free some of its blocks now, the rest
        // later, after more producers came and went.
        for (k, b) in keep.into_iter().enumerate() {
            if k % 2 == 0 {
                b.free();
                freed.fetch_add(1, Relaxed);
            } else {
                kept.push(b);
            }
        }
    }
    let mid = tinymalloc::stats();
    for b in kept.drain(..) {
        b.free();
        freed.fetch_add(1, Relaxed);
    }
    drop(tx);
    for c in consumers {
        c.join().unwrap();
    }
    assert_eq!(freed.load(Relaxed), made);
    raw::trim();
    let end = tinymalloc::stats();
    let msg = format!("mid-run {mid:?}\nend {end:?}");
    assert_eq!(end.in_use, 0, "{msg}");
    assert_eq!(end.abandoned_segments, 0, "{msg}");
    assert_eq!(
        end.segments, 0,
        "segments still in use with every block freed: {msg}"
    );
    println!(
        "fault: thread exit: {PRODUCERS} producer threads ended while 2 consumers freed their \
         {made} blocks; {} segments were abandoned mid-run, none left at the end",
        mid.abandoned_segments
    );
}
