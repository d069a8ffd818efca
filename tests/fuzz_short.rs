//! The fuzz targets of `fuzz/` (cargo-fuzz, libFuzzer with AddressSanitizer),
//! briefly: `ops` (one thread) and `threads` (2-4 threads, cross-thread
//! frees) for 30 seconds each, from the committed seed corpus plus what
//! earlier runs found (`fuzz/work/corpus/`, ignored by git), through
//! `fuzz/run-short.sh`. The long runs are described in docs/TESTING.md.
//!
//! Needs the nightly toolchain and cargo-fuzz. When either is missing the
//! test fails with the command that installs it (never a silent skip):
//! `fuzz/run-short.sh --install-only`. From scratch the step costs about
//! 2 minutes to install cargo-fuzz, 2 minutes to build the instrumented
//! targets, and the 60 seconds of fuzzing (2 cores).
//!
//! `TM_FUZZ_SECONDS` changes the time per target.

use std::path::Path;
use std::process::Command;

/// `cargo +nightly fuzz --version` works.
fn cargo_fuzz_available() -> Result<(), String> {
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn fuzz_targets_run_briefly_without_a_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Err(why) = cargo_fuzz_available() {
        panic!(
            "the fuzz step needs the nightly toolchain and cargo-fuzz, which are not \
             installed:\n{why}\ninstall them with:\n    rustup toolchain install nightly \
             --profile minimal\n    cargo install cargo-fuzz --locked\nor run \
             `fuzz/run-short.sh --install-only` (see docs/TESTING.md)"
        );
    }
    let secs = std::env::var("TM_FUZZ_SECONDS").unwrap_or_else(|_| "30".into());
    let start = std::time::Instant::now();
    let out = Command::new(root.join("fuzz/run-short.sh"))
        .arg(&secs)
        .output()
        .expect("running fuzz/run-short.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "fuzzing found a crash (or could not run), {:?}; the input is in \
         fuzz/artifacts/<target>/, the full log in fuzz/work/fuzz-<target>.log; replay it with \
         `TM_FUZZ_TRACE=1 fuzz/target/x86_64-unknown-linux-gnu/release/<target> <input>`:\n{text}",
        out.status
    );
    for target in ["ops", "threads"] {
        assert!(
            text.contains(&format!("== fuzz {target}: exit 0")),
            "target {target} did not run:\n{text}"
        );
    }
    eprintln!("{text}fuzzing took {:?}", start.elapsed());
}
