//! Builds and runs `examples/rust-user`, a separate Cargo project that uses
//! tinymalloc as its global allocator the way a new user would, and checks
//! that it succeeds (it exits non-zero when any of its checks fails).
//!
//! Its build output goes to `target/rust-user` under this workspace's
//! target directory, so nothing is left untracked in the source tree.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn rust_user_example_builds_and_runs() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("examples/rust-user/Cargo.toml");
    // The enclosing build's target directory if it was moved, else target/.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        root.join(target)
    };
    let out = Command::new(env!("CARGO"))
        .args(["run", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target.join("rust-user"))
        // Run the example with the defaults, whatever this process was given.
        .env_remove("TINYMALLOC_PURGE_DELAY_MS")
        .env_remove("TINYMALLOC_ARENAS")
        .env_remove("RUSTFLAGS")
        .current_dir(&root)
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rust-user failed: {:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
        out.status
    );
    for line in ["threads:", "alignment:", "memory:", "all checks passed"] {
        assert!(
            stdout.contains(line),
            "output lacks {line:?}:\n{stdout}\n--- stderr:\n{stderr}"
        );
    }
    assert!(
        !root.join("examples/rust-user/target").exists(),
        "build output left in the source tree"
    );
}
