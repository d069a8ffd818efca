//! `tinymalloc`: the command-line tool of the tinymalloc allocator.
//!
//! ```text
//! tinymalloc run [OPTIONS] [--] PROGRAM [ARGS...]   PROGRAM with libtinymalloc.so preloaded
//! tinymalloc bench [ARGS...]                        the benchmark suite (tinymalloc-bench)
//! tinymalloc --help | --version
//! ```
//!
//! `run` finds `libtinymalloc.so` (`--lib PATH`, `$TINYMALLOC_LIB`, beside
//! this executable, or `../lib/` from it), puts it first in `LD_PRELOAD`,
//! turns its options into `TINYMALLOC_*` variables, runs the program and
//! exits with its status (128+N when a signal N killed it). The statistics
//! table of `--stats` is printed by the library itself, at the program's
//! exit (`TINYMALLOC_SHOW_STATS=1`).
//!
//! Exit statuses of the tool itself: 2 usage error, 125 the library (or the
//! benchmark suite) cannot be found or tinymalloc failed otherwise, 126
//! PROGRAM cannot be executed, 127 PROGRAM not found.

use std::ffi::{OsStr, OsString};
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const LIB_NAME: &str = "libtinymalloc.so";
const BENCH_NAME: &str = "tinymalloc-bench";

/// Exit status of a usage error (unknown command or option, bad value).
const EXIT_USAGE: u8 = 2;
/// Exit status when tinymalloc itself fails: the library or the benchmark
/// suite cannot be found, cargo cannot be run.
const EXIT_FAILED: u8 = 125;
/// Exit status when PROGRAM exists but cannot be executed.
const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit status when PROGRAM is not found.
const EXIT_NOT_FOUND: u8 = 127;

const USAGE: &str = "\
usage: tinymalloc run [OPTIONS] [--] PROGRAM [ARGS...]
       tinymalloc bench [ARGS...]
       tinymalloc --help | --version

Commands:
  run      run PROGRAM with libtinymalloc.so preloaded, so that it (and
           the programs it starts) use tinymalloc as their malloc
  bench    run the benchmark suite (tinymalloc-bench)
  help     this text, or `tinymalloc help COMMAND`

Options:
  -h, --help       this text
  -V, --version    print the version

`tinymalloc COMMAND --help` describes a command.
";

const RUN_USAGE: &str = "\
usage: tinymalloc run [OPTIONS] [--] PROGRAM [ARGS...]

Runs PROGRAM with libtinymalloc.so preloaded (put first in LD_PRELOAD), so
that PROGRAM and the programs it starts use tinymalloc for malloc, free and
the rest of the family, and exits with PROGRAM's exit status. The `--` is
needed only when PROGRAM starts with '-'.

Options (each sets the allocator's variable of the same meaning, which
PROGRAM's children inherit):
  --stats            print a statistics table to stderr when PROGRAM exits
                     (TINYMALLOC_SHOW_STATS=1; every process that loads the
                     library prints its own)
  --secure           secure mode (TINYMALLOC_SECURE=1)
  --arenas N         number of arenas, 0 to 64; 0: one per CPU
                     (TINYMALLOC_ARENAS)
  --purge-delay MS   how long free memory waits before going back to the
                     OS, in ms; 0: at once, -1: never
                     (TINYMALLOC_PURGE_DELAY_MS)
  --verbose          report notable events on stderr (TINYMALLOC_VERBOSE=1)
  --lib PATH         the library to preload
  -h, --help         this text

The library is the first found of: --lib PATH, $TINYMALLOC_LIB, beside the
tinymalloc executable (e.g. target/release/), ../lib/ from the executable's
directory (an installed PREFIX/bin/tinymalloc uses PREFIX/lib/).

Exit status: PROGRAM's; 128+N when signal N killed it; 2: usage error;
125: library not found (or tinymalloc failed); 126: PROGRAM cannot be
executed; 127: PROGRAM not found.
";

const BENCH_USAGE: &str = "\
usage: tinymalloc bench [ARGS...]

Runs the benchmark suite, tinymalloc-bench, with ARGS: the executable
beside this one (built by `cargo build --release -p tinymalloc-bench`), or,
inside the source tree, `cargo run --release -p tinymalloc-bench -- ARGS`.
Its exit status is the suite's.

  tinymalloc bench --quick        the whole suite, reduced sizes
  tinymalloc bench -- --help      the suite's own options

Exit status: the suite's; 125: the suite cannot be found or started.
";

/// Why the tool stops before (or instead of) running what it was asked to.
#[derive(Debug)]
enum Failure {
    /// A usage error: the message, then the usage text on stderr, exit 2.
    Usage(String, &'static str),
    /// Any other failure: the message on stderr and this exit status.
    Fatal(u8, String),
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(Failure::Usage(msg, usage)) => {
            eprintln!("tinymalloc: {msg}");
            eprint!("{usage}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Fatal(code, msg)) => {
            eprintln!("tinymalloc: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Runs the command named by the first argument.
fn dispatch(args: &[OsString]) -> Result<ExitCode, Failure> {
    let Some(first) = args.first() else {
        return Err(Failure::Usage("no command given".into(), USAGE));
    };
    let rest = &args[1..];
    match first.to_str() {
        Some("run") => run(rest),
        Some("bench") => bench(rest),
        Some("-h" | "--help") => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some("help") => {
            match rest.first().and_then(|a| a.to_str()) {
                None => print!("{USAGE}"),
                Some("run") => print!("{RUN_USAGE}"),
                Some("bench") => print!("{BENCH_USAGE}"),
                Some(other) => {
                    return Err(Failure::Usage(format!("no such command: {other}"), USAGE))
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("-V" | "--version") => {
            println!("tinymalloc {VERSION}");
            Ok(ExitCode::SUCCESS)
        }
        _ if first.as_bytes().starts_with(b"-") => Err(Failure::Usage(
            format!("unknown option: {}", first.to_string_lossy()),
            USAGE,
        )),
        _ => Err(Failure::Usage(
            format!("no such command: {}", first.to_string_lossy()),
            USAGE,
        )),
    }
}

/// What `tinymalloc run` was asked to do.
#[derive(Debug, Default)]
struct RunArgs {
    /// `TINYMALLOC_*` variables to set, in order.
    env: Vec<(&'static str, String)>,
    /// `--lib PATH`.
    lib: Option<OsString>,
    /// The program and its arguments.
    command: Vec<OsString>,
    /// `--help`.
    help: bool,
}

/// Parses the arguments of `run`.
fn parse_run(args: &[OsString]) -> Result<RunArgs, Failure> {
    let usage = |msg: String| Failure::Usage(msg, RUN_USAGE);
    let mut out = RunArgs::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            i += 1;
            break;
        }
        if !bytes.starts_with(b"-") || bytes == b"-" {
            break;
        }
        // `--name=value` or `--name value`.
        let (name, inline) = match arg.to_str().and_then(|s| s.split_once('=')) {
            Some((n, v)) => (n.to_string(), Some(OsString::from(v))),
            None => (arg.to_string_lossy().into_owned(), None),
        };
        let takes_value = matches!(name.as_str(), "--arenas" | "--purge-delay" | "--lib");
        let value = if takes_value {
            match inline {
                Some(v) => Some(v),
                None => {
                    i += 1;
                    match args.get(i) {
                        Some(v) => Some(v.clone()),
                        None => return Err(usage(format!("{name} needs a value"))),
                    }
                }
            }
        } else {
            if inline.is_some() {
                return Err(usage(format!("{name} takes no value")));
            }
            None
        };
        match name.as_str() {
            "-h" | "--help" => out.help = true,
            "--stats" => out.env.push(("TINYMALLOC_SHOW_STATS", "1".into())),
            "--secure" => out.env.push(("TINYMALLOC_SECURE", "1".into())),
            "--verbose" => out.env.push(("TINYMALLOC_VERBOSE", "1".into())),
            "--arenas" => {
                let n = number(&name, value.as_deref(), 0, 64)?;
                out.env.push(("TINYMALLOC_ARENAS", n.to_string()));
            }
            "--purge-delay" => {
                let n = number(&name, value.as_deref(), -1, 3_600_000)?;
                out.env.push(("TINYMALLOC_PURGE_DELAY_MS", n.to_string()));
            }
            "--lib" => {
                let v = value.unwrap_or_default();
                if v.is_empty() {
                    return Err(usage("--lib needs a path".into()));
                }
                out.lib = Some(v);
            }
            _ => return Err(usage(format!("unknown option: {name}"))),
        }
        i += 1;
    }
    out.command = args[i..].to_vec();
    Ok(out)
}

/// An integer option value in `min..=max`.
fn number(name: &str, value: Option<&OsStr>, min: i64, max: i64) -> Result<i64, Failure> {
    let text = value.map(|v| v.to_string_lossy()).unwrap_or_default();
    match text.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Failure::Usage(
            format!("{name}: `{text}` is not a whole number from {min} to {max}"),
            RUN_USAGE,
        )),
    }
}

/// `tinymalloc run`.
fn run(args: &[OsString]) -> Result<ExitCode, Failure> {
    let parsed = parse_run(args)?;
    if parsed.help {
        print!("{RUN_USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let Some((program, program_args)) = parsed.command.split_first() else {
        return Err(Failure::Usage("run: no program given".into(), RUN_USAGE));
    };
    let lib = find_library(parsed.lib.as_deref())?;
    let preload = ld_preload(&lib, std::env::var_os("LD_PRELOAD").as_deref())?;

    let mut cmd = Command::new(program);
    cmd.args(program_args).env("LD_PRELOAD", preload);
    for (k, v) in &parsed.env {
        cmd.env(k, v);
    }
    let name = program.to_string_lossy();
    let mut child = cmd.spawn().map_err(|e| spawn_failure(program, &e))?;
    // Like a shell waiting for a command: a ^C or ^\ from the terminal goes
    // to the whole process group, and the program decides what it does
    // with it; SIGTERM and SIGHUP sent to this process are passed on.
    signals::while_waiting_for(child.id());
    let status = child
        .wait()
        .map_err(|e| Failure::Fatal(EXIT_FAILED, format!("waiting for {name}: {e}")))?;
    if let Some(code) = status.code() {
        return Ok(ExitCode::from(code as u8));
    }
    let sig = status.signal().unwrap_or(0);
    // Like a shell, quiet about an interrupt and a broken pipe.
    if sig != signals::SIGINT && sig != signals::SIGPIPE {
        let core = if status.core_dumped() {
            " (core dumped)"
        } else {
            ""
        };
        match signals::name(sig) {
            Some(sname) => eprintln!("tinymalloc: {name} killed by signal {sig} ({sname}){core}"),
            None => eprintln!("tinymalloc: {name} killed by signal {sig}{core}"),
        }
    }
    Ok(ExitCode::from((128 + sig.clamp(0, 127)) as u8))
}

/// The failure for a program that could not be started.
fn spawn_failure(program: &OsStr, e: &std::io::Error) -> Failure {
    let name = program.to_string_lossy();
    let path = Path::new(program);
    let has_slash = program.as_bytes().contains(&b'/');
    match e.kind() {
        ErrorKind::NotFound if has_slash && path.exists() => Failure::Fatal(
            EXIT_CANNOT_EXECUTE,
            format!("{name}: cannot execute: its interpreter was not found"),
        ),
        ErrorKind::NotFound => Failure::Fatal(EXIT_NOT_FOUND, format!("{name}: command not found")),
        _ if has_slash && path.is_dir() => {
            Failure::Fatal(EXIT_CANNOT_EXECUTE, format!("{name}: is a directory"))
        }
        ErrorKind::PermissionDenied => {
            Failure::Fatal(EXIT_CANNOT_EXECUTE, format!("{name}: permission denied"))
        }
        _ => Failure::Fatal(EXIT_CANNOT_EXECUTE, format!("{name}: cannot execute: {e}")),
    }
}

/// The directory of this executable (symbolic links resolved).
fn exe_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.parent().map(Path::to_path_buf)
}

/// Finds libtinymalloc.so: `--lib`, `$TINYMALLOC_LIB`, beside the
/// executable, `../lib/` from it (and, when the tool was built with
/// `TINYMALLOC_LIBDIR` set, that directory). Returns an absolute path.
fn find_library(explicit: Option<&OsStr>) -> Result<PathBuf, Failure> {
    if let Some(p) = explicit {
        return checked_library(Path::new(p), "--lib");
    }
    if let Some(p) = std::env::var_os("TINYMALLOC_LIB").filter(|p| !p.is_empty()) {
        return checked_library(Path::new(&p), "TINYMALLOC_LIB");
    }
    let mut candidates = Vec::new();
    if let Some(dir) = exe_dir() {
        candidates.push(dir.join(LIB_NAME));
        if let Some(prefix) = dir.parent() {
            candidates.push(prefix.join("lib").join(LIB_NAME));
        }
    }
    if let Some(dir) = option_env!("TINYMALLOC_LIBDIR") {
        candidates.push(Path::new(dir).join(LIB_NAME));
    }
    for c in &candidates {
        if c.is_file() {
            return checked_library(c, "found");
        }
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(Failure::Fatal(
        EXIT_FAILED,
        format!(
            "cannot find {LIB_NAME} (looked in: {}); build it with `cargo build --release` \
             or pass --lib PATH",
            if looked.is_empty() {
                "nowhere: the executable's location is unknown".to_string()
            } else {
                looked.join(", ")
            }
        ),
    ))
}

/// Checks that `path` (named by `source`) is a shared library; returns it
/// made absolute (the program may change directory before it starts
/// others).
fn checked_library(path: &Path, source: &str) -> Result<PathBuf, Failure> {
    let shown = path.display();
    let fail = |why: String| Failure::Fatal(EXIT_FAILED, format!("{source} {shown}: {why}"));
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => fail("no such file".into()),
        _ => fail(e.to_string()),
    })?;
    if path.is_dir() {
        return Err(fail("is a directory".into()));
    }
    if file.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
        return Err(fail("not a shared library (no ELF header)".into()));
    }
    path.canonicalize().map_err(|e| fail(e.to_string()))
}

/// The LD_PRELOAD value: `lib` first, then the entries of `existing`
/// (`lib` itself dropped from them).
fn ld_preload(lib: &Path, existing: Option<&OsStr>) -> Result<OsString, Failure> {
    let lib_bytes = lib.as_os_str().as_bytes();
    if lib_bytes.iter().any(|&b| b == b':' || b == b' ') {
        return Err(Failure::Fatal(
            EXIT_FAILED,
            format!(
                "cannot preload {}: LD_PRELOAD cannot name a path containing ':' or a space",
                lib.display()
            ),
        ));
    }
    let mut value = lib_bytes.to_vec();
    if let Some(old) = existing {
        for entry in old
            .as_bytes()
            .split(|&b| b == b':' || b == b' ')
            .filter(|e| !e.is_empty() && *e != lib_bytes)
        {
            value.push(b':');
            value.extend_from_slice(entry);
        }
    }
    Ok(OsString::from_vec(value))
}

/// `tinymalloc bench`: replaces this process with the benchmark suite.
fn bench(args: &[OsString]) -> Result<ExitCode, Failure> {
    let args = match args.first().and_then(|a| a.to_str()) {
        Some("-h" | "--help") => {
            print!("{BENCH_USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        Some("--") => &args[1..],
        _ => args,
    };
    let dir = exe_dir();
    if let Some(beside) = dir.as_ref().map(|d| d.join(BENCH_NAME)) {
        if beside.is_file() {
            let e = Command::new(&beside).args(args).exec();
            return Err(Failure::Fatal(
                EXIT_FAILED,
                format!("cannot run {}: {e}", beside.display()),
            ));
        }
    }
    if let Some(root) = dir.as_deref().and_then(source_tree) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let e = Command::new(&cargo)
            .current_dir(&root)
            .args(["run", "--release", "-p", BENCH_NAME, "--"])
            .args(args)
            .exec();
        return Err(Failure::Fatal(
            EXIT_FAILED,
            format!(
                "cannot run `{} run --release -p {BENCH_NAME}` in {}: {e}",
                cargo.to_string_lossy(),
                root.display()
            ),
        ));
    }
    let looked = dir
        .map(|d| d.join(BENCH_NAME).display().to_string())
        .unwrap_or_else(|| "nowhere: the executable's location is unknown".into());
    Err(Failure::Fatal(
        EXIT_FAILED,
        format!(
            "cannot find {BENCH_NAME} (looked in: {looked}; not inside the tinymalloc \
             source tree); build it with `cargo build --release -p {BENCH_NAME}`"
        ),
    ))
}

/// The nearest directory at or above `dir` with a `Cargo.toml` declaring a
/// `[workspace]`: the source tree the tool was built in.
fn source_tree(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .map(|s| s.lines().any(|l| l.trim() == "[workspace]"))
                .unwrap_or(false)
        })
        .map(Path::to_path_buf)
}

/// Signal handling while the program runs, with the C library's
/// `signal()` and `kill()` (no crate needed for two functions).
mod signals {
    use super::{AtomicI32, Ordering};

    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGQUIT: i32 = 3;
    pub const SIGPIPE: i32 = 13;
    pub const SIGTERM: i32 = 15;
    const SIG_IGN: usize = 1;

    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
        fn kill(pid: i32, sig: i32) -> i32;
    }

    /// The running program, for the forwarding handler.
    static CHILD: AtomicI32 = AtomicI32::new(0);

    extern "C" fn forward(sig: i32) {
        let pid = CHILD.load(Ordering::Relaxed);
        if pid > 0 {
            // SAFETY: kill() is async-signal-safe.
            unsafe { kill(pid, sig) };
        }
    }

    /// Ignores terminal interrupts (the program gets them too) and passes
    /// SIGTERM and SIGHUP on to `pid`.
    pub fn while_waiting_for(pid: u32) {
        CHILD.store(pid as i32, Ordering::Relaxed);
        let handler: extern "C" fn(i32) = forward;
        // SAFETY: installing SIG_IGN or a handler that only calls kill().
        unsafe {
            signal(SIGINT, SIG_IGN);
            signal(SIGQUIT, SIG_IGN);
            signal(SIGTERM, handler as usize);
            signal(SIGHUP, handler as usize);
        }
    }

    /// The name of signal `n` (Linux numbering of x86, ARM, RISC-V and
    /// most other architectures).
    pub fn name(n: i32) -> Option<&'static str> {
        if cfg!(not(target_os = "linux"))
            || cfg!(any(
                target_arch = "mips",
                target_arch = "mips64",
                target_arch = "sparc",
                target_arch = "sparc64"
            ))
        {
            return None;
        }
        const NAMES: [&str; 31] = [
            "SIGHUP",
            "SIGINT",
            "SIGQUIT",
            "SIGILL",
            "SIGTRAP",
            "SIGABRT",
            "SIGBUS",
            "SIGFPE",
            "SIGKILL",
            "SIGUSR1",
            "SIGSEGV",
            "SIGUSR2",
            "SIGPIPE",
            "SIGALRM",
            "SIGTERM",
            "SIGSTKFLT",
            "SIGCHLD",
            "SIGCONT",
            "SIGSTOP",
            "SIGTSTP",
            "SIGTTIN",
            "SIGTTOU",
            "SIGURG",
            "SIGXCPU",
            "SIGXFSZ",
            "SIGVTALRM",
            "SIGPROF",
            "SIGWINCH",
            "SIGIO",
            "SIGPWR",
            "SIGSYS",
        ];
        usize::try_from(n - 1)
            .ok()
            .and_then(|i| NAMES.get(i))
            .copied()
    }

    #[cfg(test)]
    #[test]
    fn names() {
        assert_eq!(name(SIGQUIT), Some("SIGQUIT"));
        assert_eq!(name(SIGTERM), Some("SIGTERM"));
        assert_eq!(name(11), Some("SIGSEGV"));
        assert_eq!(name(31), Some("SIGSYS"));
        assert_eq!(name(0), None);
        assert_eq!(name(40), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn run_options_become_variables() {
        let r = parse_run(&args(&[
            "--stats",
            "--secure",
            "--arenas",
            "3",
            "--purge-delay=-1",
            "--verbose",
            "--lib",
            "/x.so",
            "prog",
            "--stats",
        ]))
        .unwrap();
        assert_eq!(
            r.env,
            vec![
                ("TINYMALLOC_SHOW_STATS", "1".to_string()),
                ("TINYMALLOC_SECURE", "1".to_string()),
                ("TINYMALLOC_ARENAS", "3".to_string()),
                ("TINYMALLOC_PURGE_DELAY_MS", "-1".to_string()),
                ("TINYMALLOC_VERBOSE", "1".to_string()),
            ]
        );
        assert_eq!(r.lib, Some(OsString::from("/x.so")));
        assert_eq!(r.command, args(&["prog", "--stats"]));
        let r = parse_run(&args(&["--purge-delay", "-1", "--", "-weird", "x"])).unwrap();
        assert_eq!(r.command, args(&["-weird", "x"]));
    }

    #[test]
    fn bad_run_options_are_usage_errors() {
        for bad in [
            &["--arenas", "65"][..],
            &["--arenas", "-1"],
            &["--arenas", "x"],
            &["--arenas"],
            &["--purge-delay", "-2"],
            &["--stats=1"],
            &["--frobnicate"],
            &["--lib="],
        ] {
            assert!(
                matches!(parse_run(&args(bad)), Err(Failure::Usage(..))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn preload_goes_first_once() {
        let lib = Path::new("/a/libtinymalloc.so");
        assert_eq!(ld_preload(lib, None).unwrap(), "/a/libtinymalloc.so");
        assert_eq!(
            ld_preload(lib, Some(OsStr::new("/b.so /a/libtinymalloc.so:/c.so"))).unwrap(),
            "/a/libtinymalloc.so:/b.so:/c.so"
        );
        assert!(ld_preload(Path::new("/a b/lib.so"), None).is_err());
    }
}
