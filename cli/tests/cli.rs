//! The `tinymalloc` command, run as a user runs it: exit statuses passed
//! on, signals reported, errors for a missing program or library, the
//! preload in effect, the at-exit statistics table of `--stats`, and the
//! library found beside the tool, in an installed layout or by
//! `$TINYMALLOC_LIB`.
//!
//! Where the library comes from: the tool is `target/<profile>/tinymalloc`
//! and looks for `target/<profile>/libtinymalloc.so` beside itself. Cargo
//! does not build the `tinymalloc-capi` cdylib for this package's tests, so
//! the first test that needs it runs `cargo build -p tinymalloc-capi` with
//! the same profile and target directory (a no-op when it is up to date),
//! as the capi tests do (`capi/tests/common/mod.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use tinymalloc_testkit::{self as testkit, Outcome};

const TOOL: &str = env!("CARGO_BIN_EXE_tinymalloc");

/// `target/<profile>`: where the tool is.
fn profile_dir() -> PathBuf {
    Path::new(TOOL).parent().unwrap().to_path_buf()
}

/// `target/<profile>/libtinymalloc.so`, built on first use.
fn lib_path() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = testkit::build("tinymalloc-capi", &["libtinymalloc.so"]);
        assert_eq!(dir, profile_dir(), "the library is built beside the tool");
        dir.join("libtinymalloc.so").canonicalize().unwrap()
    })
}

/// A fresh, empty scratch directory `target/<profile>/cli-tests/<name>`.
fn scratch(name: &str) -> PathBuf {
    let dir = profile_dir().join("cli-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh scratch directory outside any source tree (for the tool's
/// "not inside the source tree" behaviour).
fn outside_scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinymalloc-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tool's own exit code (it must not die by a signal itself).
fn code(o: &Outcome) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("the tool itself died: {o:#?}"))
}

/// The tool at `exe` with a clean environment for it: no inherited
/// TINYMALLOC_* or LD_PRELOAD.
fn tool_at(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("TINYMALLOC_") || k == "LD_PRELOAD" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The built tool, its library built.
fn tool() -> Command {
    lib_path();
    tool_at(Path::new(TOOL))
}

/// Runs `cmd` to completion with no input (killed after a minute: a hang
/// is a failure).
fn run(cmd: &mut Command) -> Outcome {
    testkit::run(cmd, b"", Duration::from_secs(60))
}

/// The Python interpreter (a real one, not a wrapper script).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn passes_on_success() {
    let o = run(tool().args(["run", "--", "true"]));
    assert_eq!(code(&o), 0, "{o:#?}");
    assert_eq!(o.stderr, "", "{o:#?}");
    // Without `--` too.
    let o = run(tool().args(["run", "true"]));
    assert_eq!(code(&o), 0, "{o:#?}");
}

#[test]
fn passes_on_the_exit_status_and_output() {
    let o = run(tool().args(["run", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]));
    assert_eq!(code(&o), 7, "{o:#?}");
    assert_eq!(o.stdout, "out\n");
    assert_eq!(o.stderr, "err\n");
    // The program's own options are not the tool's.
    let o = run(tool().args(["run", "sh", "-c", "exit 3", "--stats", "--help"]));
    assert_eq!(code(&o), 3, "{o:#?}");
}

#[test]
fn reports_death_by_signal() {
    let o = run(tool().args(["run", "--", "sh", "-c", "ulimit -c 0; kill -SEGV $$"]));
    assert_eq!(code(&o), 128 + 11, "{o:#?}");
    assert!(
        o.stderr
            .contains("tinymalloc: sh killed by signal 11 (SIGSEGV)"),
        "{o:#?}"
    );
    let o = run(tool().args(["run", "--", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(code(&o), 128 + 15, "{o:#?}");
    assert!(o.stderr.contains("signal 15 (SIGTERM)"), "{o:#?}");
}

#[test]
fn missing_program() {
    let o = run(tool().args(["run", "--", "/nonexistent/program"]));
    assert_eq!(code(&o), 127, "{o:#?}");
    assert_eq!(
        o.stderr,
        "tinymalloc: /nonexistent/program: command not found\n"
    );
    let o = run(tool().args(["run", "no-such-command-tinymalloc"]));
    assert_eq!(code(&o), 127, "{o:#?}");
    assert!(o
        .stderr
        .contains("no-such-command-tinymalloc: command not found"));
}

#[test]
fn program_that_cannot_be_executed() {
    let dir = scratch("noexec");
    let script = dir.join("script.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    // Not executable (0644).
    let o = run(tool().arg("run").arg(&script));
    assert_eq!(code(&o), 126, "{o:#?}");
    assert!(o.stderr.contains("permission denied"), "{o:#?}");
    let o = run(tool().arg("run").arg(&dir));
    assert_eq!(code(&o), 126, "{o:#?}");
    assert!(o.stderr.contains("is a directory"), "{o:#?}");
}

#[test]
fn missing_library_given_by_option_or_variable() {
    let o = run(tool().args(["run", "--lib", "/nonexistent.so", "--", "true"]));
    assert_eq!(code(&o), 125, "{o:#?}");
    assert_eq!(
        o.stderr,
        "tinymalloc: --lib /nonexistent.so: no such file\n"
    );
    let o = run(tool()
        .env("TINYMALLOC_LIB", "/nonexistent.so")
        .args(["run", "true"]));
    assert_eq!(code(&o), 125, "{o:#?}");
    assert!(o
        .stderr
        .contains("TINYMALLOC_LIB /nonexistent.so: no such file"));
    // Not a library.
    let o = run(tool().args(["run", "--lib", "/etc/passwd", "--", "true"]));
    assert_eq!(code(&o), 125, "{o:#?}");
    assert!(o.stderr.contains("not a shared library"), "{o:#?}");
}

#[test]
fn missing_library_beside_a_lone_tool() {
    // The tool copied alone out of the source tree: nothing beside it, no
    // ../lib, no variable.
    let dir = outside_scratch("alone");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let exe = dir.join("bin/tinymalloc");
    std::fs::copy(TOOL, &exe).unwrap();
    let o = run(tool_at(&exe).args(["run", "--", "true"]));
    assert_eq!(code(&o), 125, "{o:#?}");
    assert!(
        o.stderr
            .starts_with("tinymalloc: cannot find libtinymalloc.so (looked in: "),
        "{o:#?}"
    );
    assert!(o
        .stderr
        .contains(&dir.join("bin/libtinymalloc.so").display().to_string()));
    assert!(o
        .stderr
        .contains(&dir.join("lib/libtinymalloc.so").display().to_string()));
    assert!(o.stderr.contains("cargo build --release"), "{o:#?}");
    // $TINYMALLOC_LIB supplies it.
    let o = run(tool_at(&exe).env("TINYMALLOC_LIB", lib_path()).args([
        "run",
        "--",
        "cat",
        "/proc/self/maps",
    ]));
    assert_eq!(code(&o), 0, "{o:#?}");
    assert!(o.stdout.contains(&lib_path().display().to_string()));
    // The benchmark suite cannot be found there either.
    let o = run(tool_at(&exe).args(["bench", "--quick"]));
    assert_eq!(code(&o), 125, "{o:#?}");
    assert!(o.stderr.contains("cannot find tinymalloc-bench"), "{o:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn installed_layout_finds_prefix_lib() {
    let dir = outside_scratch("prefix");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    let exe = dir.join("bin/tinymalloc");
    std::fs::copy(TOOL, &exe).unwrap();
    std::fs::copy(lib_path(), dir.join("lib/libtinymalloc.so")).unwrap();
    let o = run(tool_at(&exe).args(["run", "--", "cat", "/proc/self/maps"]));
    assert_eq!(code(&o), 0, "{o:#?}");
    let installed = dir.join("lib/libtinymalloc.so").canonicalize().unwrap();
    assert!(
        o.stdout.contains(&installed.display().to_string()),
        "{o:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_library_is_preloaded() {
    let o = run(tool().args(["run", "--", "cat", "/proc/self/maps"]));
    assert_eq!(code(&o), 0, "{o:#?}");
    assert!(
        o.stdout.contains(&lib_path().display().to_string()),
        "libtinymalloc.so not mapped: {o:#?}"
    );
    // Put first in an existing LD_PRELOAD, not twice.
    let lib = lib_path().display().to_string();
    let o = run(tool()
        .env("LD_PRELOAD", format!("{lib} /nonexistent-other.so"))
        .args(["run", "--", "sh", "-c", "echo \"$LD_PRELOAD\""]));
    assert_eq!(code(&o), 0, "{o:#?}");
    assert_eq!(o.stdout, format!("{lib}:/nonexistent-other.so\n"));
}

#[test]
fn options_become_variables() {
    let o = run(tool().args([
        "run",
        "--secure",
        "--arenas",
        "3",
        "--purge-delay=-1",
        "--",
        "sh",
        "-c",
        "echo \"$TINYMALLOC_SECURE $TINYMALLOC_ARENAS $TINYMALLOC_PURGE_DELAY_MS\"",
    ]));
    assert_eq!(code(&o), 0, "{o:#?}");
    assert_eq!(o.stdout, "1 3 -1\n");
    assert!(!o.stderr.contains("warning"), "{o:#?}");
    let o = run(tool().args([
        "run",
        "--verbose",
        "--",
        "sh",
        "-c",
        "echo \"$TINYMALLOC_VERBOSE\"",
    ]));
    assert_eq!(code(&o), 0, "{o:#?}");
    assert_eq!(o.stdout, "1\n");
}

#[test]
fn stats_table_at_exit() {
    let o = run(tool().env("PYTHONMALLOC", "malloc").args([
        "run",
        "--stats",
        "--",
        python(),
        "-c",
        "x = [str(i) for i in range(100000)]",
    ]));
    assert_eq!(code(&o), 0, "{o:#?}");
    assert!(o.stderr.contains("tinymalloc statistics"), "{o:#?}");
    assert!(
        o.stderr.contains(" KiB") || o.stderr.contains(" MiB"),
        "no size in human units: {o:#?}"
    );
    // Without --stats, no table.
    let o = run(tool().args(["run", "--", "true"]));
    assert!(!o.stderr.contains("tinymalloc statistics"), "{o:#?}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["run", "--frobnicate", "true"][..],
        &["run", "--arenas", "65", "true"],
        &["run", "--arenas", "many", "true"],
        &["run", "--purge-delay", "-2", "true"],
        &["run", "--lib"],
        &["run"],
        &["run", "--"],
        &["frobnicate"],
        &["--frobnicate"],
        &[],
    ] {
        let o = run(tool_at(Path::new(TOOL)).args(args));
        assert_eq!(code(&o), 2, "{args:?}: {o:#?}");
        assert!(o.stderr.starts_with("tinymalloc: "), "{args:?}: {o:#?}");
        assert!(o.stderr.contains("usage: tinymalloc"), "{args:?}: {o:#?}");
        assert_eq!(o.stdout, "", "{args:?}");
    }
}

#[test]
fn help_and_version() {
    for (args, want) in [
        (&["--help"][..], "tinymalloc bench"),
        (&["-h"], "tinymalloc run"),
        (&["help"], "Commands:"),
        (&["help", "run"], "--purge-delay MS"),
        (&["run", "--help"], "--arenas N"),
        (&["run", "--stats", "-h", "prog"], "Exit status"),
        (&["bench", "--help"], "tinymalloc-bench"),
    ] {
        let o = run(tool_at(Path::new(TOOL)).args(args));
        assert_eq!(code(&o), 0, "{args:?}: {o:#?}");
        assert!(o.stdout.contains(want), "{args:?}: {o:#?}");
        assert_eq!(o.stderr, "", "{args:?}");
    }
    let o = run(tool_at(Path::new(TOOL)).arg("--version"));
    assert_eq!(code(&o), 0);
    assert_eq!(
        o.stdout,
        format!("tinymalloc {}\n", env!("CARGO_PKG_VERSION"))
    );
}
