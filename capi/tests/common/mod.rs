//! Shared helpers of the C-level tests: find (and build) libtinymalloc.so,
//! compile the C programs of `tests/c/`, run programs with a time limit.
//!
//! Where the library comes from: a test executable lives in
//! `target/<profile>/deps/`, and the library belongs in `target/<profile>/`.
//! Cargo does not build a package's cdylib/staticlib before running that
//! package's integration tests (they can only link an rlib), so the first
//! test of each test executable runs `cargo build -p tinymalloc-capi` with
//! the same profile and target directory (a no-op when it is up to date).
//! (Tests built with `--target <triple>` are not supported: the library
//! would be built for the host, in another directory.)
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

// Each test file uses a different part of these, too.
#[allow(unused_imports)]
pub use tinymalloc_testkit::{profile_dir, repo_root, run, wait_with_limit, Outcome};

/// The directory holding libtinymalloc.so and .a, built on first use.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        tinymalloc_testkit::build("tinymalloc-capi", &["libtinymalloc.so", "libtinymalloc.a"])
    })
}

/// The shared library, for LD_PRELOAD.
pub fn so_path() -> PathBuf {
    lib_dir().join("libtinymalloc.so")
}

/// A fresh, empty scratch directory `target/<profile>/capi-tests/<name>`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = profile_dir().join("capi-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Panics with an install hint when `path` (a Debian program) is missing.
pub fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is not installed: install it with `apt-get install {package}` \
         (.ci/apt-packages.txt lists what these tests need)"
    );
}

/// How a C test program gets tinymalloc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// `-ltinymalloc` with an rpath to the build directory.
    Shared,
    /// `libtinymalloc.a` linked into the executable.
    Static,
    /// Not linked (`-DTM_PRELOAD`); run it with [`preload`].
    Preload,
}

/// Compiles `tests/c/<src>` (C, or C++ for `.cc`) with tinymalloc linked
/// as `link` says; returns the executable's path.
pub fn compile(src: &str, link: Link) -> PathBuf {
    let lib = lib_dir();
    let cxx = src.ends_with(".cc");
    let compiler = if cxx { "c++" } else { "cc" };
    let stem = src.replace('.', "_");
    let out = profile_dir()
        .join("capi-tests")
        .join(format!("{stem}-{link:?}").to_lowercase());
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let root = repo_root();
    let mut cmd = Command::new(compiler);
    cmd.args([
        "-O1",
        "-g",
        "-fno-builtin",
        "-Wall",
        "-Wextra",
        "-pthread",
        "-I",
    ]);
    cmd.arg(root.join("include"))
        .arg("-o")
        .arg(&out)
        .arg(root.join("tests/c").join(src));
    match link {
        Link::Shared => {
            cmd.arg("-L").arg(lib).arg("-ltinymalloc");
            cmd.arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Link::Static => {
            cmd.arg(lib.join("libtinymalloc.a"));
            cmd.args([
                "-lgcc_s",
                "-lutil",
                "-lrt",
                "-lpthread",
                "-lm",
                "-ldl",
                "-lc",
            ]);
        }
        Link::Preload => {
            cmd.arg("-DTM_PRELOAD");
        }
    }
    cmd.arg("-ldl");
    let output = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {compiler} ({e}): install it with `apt-get install gcc g++`")
    });
    assert!(
        output.status.success(),
        "compiling {src} ({link:?}) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// Adds LD_PRELOAD=libtinymalloc.so to `cmd`.
pub fn preload(cmd: &mut Command) -> &mut Command {
    cmd.env("LD_PRELOAD", so_path())
}

/// Runs `cmd` in secure mode (`TINYMALLOC_SECURE=1`) or in default mode
/// (the variable removed, whatever this process was given).
pub fn mode(cmd: &mut Command, secure: bool) -> &mut Command {
    if secure {
        cmd.env("TINYMALLOC_SECURE", "1")
    } else {
        cmd.env_remove("TINYMALLOC_SECURE")
    }
}
