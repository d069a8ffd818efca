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

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `target/<profile>`: the directory above the test executable's `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The directory holding libtinymalloc.so and .a, built on first use.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        let profile = dir.file_name().unwrap().to_str().unwrap().to_string();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo_root())
            .args(["build", "-p", "tinymalloc-capi", "--target-dir"]);
        cmd.arg(dir.parent().unwrap());
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd
            .status()
            .expect("running cargo build -p tinymalloc-capi");
        assert!(status.success(), "cargo build -p tinymalloc-capi failed");
        for name in ["libtinymalloc.so", "libtinymalloc.a"] {
            assert!(
                dir.join(name).exists(),
                "{} was not built",
                dir.join(name).display()
            );
        }
        dir
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

/// What a finished program left.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Panics, showing everything, unless the program exited with 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(self.status.success(), "{what} failed: {self:#?}");
        self
    }
}

/// Runs `cmd` to completion with `stdin` as input, killing it after
/// `limit` (a hang is a failure, reported with what it printed).
pub fn run(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Outcome {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let input = stdin.to_vec();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let (status, stdout, stderr) = wait_with_limit(&mut child, limit, &format!("{cmd:?}"));
    writer.join().unwrap();
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Collects a spawned child's stdout and stderr (both must be piped) and
/// waits for it, killing it after `limit`.
pub fn wait_with_limit(
    child: &mut Child,
    limit: Duration,
    what: &str,
) -> (ExitStatus, Vec<u8>, Vec<u8>) {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap();
            panic!(
                "{what} did not finish within {limit:?} (hang?); stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        out_reader.join().unwrap(),
        err_reader.join().unwrap(),
    )
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
