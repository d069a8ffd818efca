//! Helpers shared by the workspace's integration tests (a dev-dependency
//! only; nothing here is part of the allocator):
//!
//! - [`build`]: builds another package of the workspace (the C library, the
//!   soak binary) with the running test's profile and target directory.
//!   Cargo does not build a package's cdylib or another package's binary
//!   before running integration tests, so the tests ask for them; the build
//!   is a no-op when they are up to date.
//! - [`run`] / [`wait_with_limit`]: run a program to completion, killing it
//!   after a time limit (a hang is a failure, reported with what it
//!   printed).
//! - [`Rng`]: a deterministic xorshift generator.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ lies in the workspace root")
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

/// Runs `cargo build -p <package>` with the running test's profile and
/// target directory, checks that each of `artifacts` now exists in
/// `target/<profile>/`, and returns that directory. (Tests built with
/// `--target <triple>` are not supported: the artifacts would be built for
/// the host, in another directory.)
pub fn build(package: &str, artifacts: &[&str]) -> PathBuf {
    let dir = profile_dir();
    build_into(package, &[], dir.parent().unwrap());
    for name in artifacts {
        let path = dir.join(name);
        assert!(path.exists(), "{} was not built", path.display());
    }
    dir
}

/// Runs `cargo build -p <package>` with the running test's profile and the
/// `extra` arguments, into `target_dir`; returns `target_dir/<profile>`.
pub fn build_into(package: &str, extra: &[&str], target_dir: &Path) -> PathBuf {
    let profile = profile_dir()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root())
        .args(["build", "-p", package])
        .args(extra)
        .arg("--target-dir")
        .arg(target_dir);
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
        .unwrap_or_else(|e| panic!("running cargo build -p {package}: {e}"));
    assert!(
        status.success(),
        "cargo build -p {package} {extra:?} failed"
    );
    target_dir.join(profile)
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

/// Runs `cmd` to completion with `stdin` as its input, killing it after
/// `limit`.
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
/// waits for it, killing it (and panicking with its stderr) after `limit`.
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
        std::thread::sleep(Duration::from_millis(5));
    };
    (
        status,
        out_reader.join().unwrap(),
        err_reader.join().unwrap(),
    )
}

/// A deterministic xorshift64 generator (no dependency). The seed must not
/// be 0.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits. (Not an `Iterator`: the generator never
    /// ends, and the tests call it by this name.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_collects_output_and_status() {
        let o = run(
            Command::new("sh").args(["-c", "cat; echo err >&2; exit 3"]),
            b"in",
            Duration::from_secs(20),
        );
        assert_eq!(o.stdout, "in");
        assert_eq!(o.stderr, "err\n");
        assert_eq!(o.status.code(), Some(3));
    }

    #[test]
    #[should_panic(expected = "did not finish")]
    fn run_kills_a_hang() {
        run(
            Command::new("sleep").arg("30"),
            b"",
            Duration::from_millis(200),
        );
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
    }
}
