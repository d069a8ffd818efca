//! The driver (`tinymalloc-bench`): builds the worker binaries, runs every
//! (workload, threads, allocator, repetition) in a fresh worker process,
//! measures each one's peak RSS with `wait4`, and reports.
//!
//! Workers are found beside the driver's own executable. Because `cargo run`
//! builds only the driver, the driver first runs
//! `$CARGO build -p tinymalloc-bench --bins` with the driver's own profile
//! (`--release` when it lives in `target/release`), which is a no-op when
//! the workers are up to date; `--no-build` skips that.

use crate::cli::{self, Options};
use crate::report::{Measured, Report, Run};
use crate::svg;
use crate::worker::ResultLine;
use crate::workloads;
use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs, io, thread};

/// One column of the report: a worker binary, maybe with a preloaded
/// malloc.
#[derive(Clone, Debug)]
struct Contender {
    label: String,
    exe: PathBuf,
    preload: Option<PathBuf>,
    /// Started with `TINYMALLOC_SECURE=1` (else without the variable).
    secure: bool,
}

/// Runs the driver with the process's arguments; returns the exit code
/// (0 all good, 1 a run failed or disagreed, 2 bad usage or setup).
pub fn main() -> i32 {
    let opts = match cli::parse(env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tinymalloc-bench: {e}\n\n{}", cli::USAGE);
            return 2;
        }
    };
    if opts.help {
        print!("{}", cli::USAGE);
        return 0;
    }
    if opts.list {
        for w in workloads::ALL {
            let kind = if w.multi_threaded {
                "threads"
            } else {
                "single"
            };
            println!("{:<14} {kind:<8} {}", w.name, w.about);
        }
        return 0;
    }
    match run_suite(&opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tinymalloc-bench: {e}");
            2
        }
    }
}

fn run_suite(opts: &Options) -> Result<i32, String> {
    let exe = env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let exe_dir = exe
        .parent()
        .ok_or("executable has no directory")?
        .to_path_buf();
    if !opts.no_build {
        build_workers(&exe_dir)?;
    }
    let contenders = contenders(opts, &exe_dir)?;
    let labels: Vec<String> = contenders.iter().map(|c| c.label.clone()).collect();
    let baseline = match &opts.baseline {
        Some(b) if labels.contains(b) => b.clone(),
        Some(b) => {
            return Err(format!(
                "--baseline {b:?} is not among {}",
                labels.join(",")
            ))
        }
        None if labels.iter().any(|l| l == "mimalloc") => "mimalloc".to_string(),
        None => labels[0].clone(),
    };
    let cells: Vec<(String, usize)> = opts
        .workloads
        .iter()
        .filter_map(|n| workloads::find(n))
        .flat_map(|w| {
            let threads: Vec<usize> = if w.multi_threaded {
                opts.threads.clone()
            } else {
                opts.threads.iter().copied().filter(|&t| t == 1).collect()
            };
            threads.into_iter().map(move |t| (w.name.to_string(), t))
        })
        .collect();
    if cells.is_empty() {
        return Err(
            "nothing to run: single-threaded workloads only run when --threads lists 1".into(),
        );
    }
    let target = exe_dir.parent().unwrap_or(&exe_dir);
    let out_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| target.join("bench").join(timestamp(SystemTime::now())));
    fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;

    let start = Instant::now();
    let total = opts.reps * cells.len() * contenders.len();
    println!(
        "tinymalloc-bench: {} cells x {} allocators x {} reps = {total} runs, scale {}{}",
        cells.len(),
        contenders.len(),
        opts.reps,
        opts.scale,
        if opts.quick { " (quick)" } else { "" }
    );
    let _ = io::stdout().flush();
    let all: Vec<&Contender> = contenders.iter().collect();
    let groups: Vec<(&(String, usize), Vec<&Contender>)> =
        cells.iter().map(|c| (c, all.clone())).collect();
    let runs = run_rounds(&groups, opts.reps, opts, "");

    let mut report = Report::new(runs, cells, labels, baseline);
    if opts.confirm > 0 {
        report.confirm = confirm(&report, &contenders, opts);
    }
    print!("{}", report.tables());
    print!("{}", report.summary());
    print!("{}", report.verdicts());
    let failures = report.failures();
    let mismatches = report.checksum_mismatches();
    for f in &failures {
        println!("FAILED: {f}");
    }
    let rerun_failures: Vec<&Run> = report
        .confirm
        .iter()
        .filter(|r| r.result.is_err())
        .collect();
    for r in &rerun_failures {
        if let Err(e) = &r.result {
            println!(
                "FAILED (rerun): {} t={} {} round {}: {e}",
                r.workload, r.threads, r.allocator, r.rep
            );
        }
    }
    for m in &mismatches {
        println!("CHECKSUM MISMATCH (allocators did different work): {m}");
    }
    let csv_path = out_dir.join("results.csv");
    let write = |name: &str, text: String| {
        let p = out_dir.join(name);
        fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write("results.csv", report.runs_csv())?;
    write("medians.csv", report.medians_csv())?;
    write("chart.svg", svg::chart(&report))?;
    if !report.confirm.is_empty() {
        write("confirm.csv", report.confirm_csv())?;
    }
    println!(
        "\ntook {}; medians: {}; chart: {}",
        clock(start.elapsed()),
        out_dir.join("medians.csv").display(),
        out_dir.join("chart.svg").display()
    );
    println!("results: {}", csv_path.display());
    Ok(
        if failures.is_empty() && rerun_failures.is_empty() && mismatches.is_empty() {
            0
        } else {
            1
        },
    )
}

/// Reruns each cell with a paired verdict for `opts.confirm` rounds: the
/// baseline and the allocators flagged there, interleaved as in the main
/// rounds. A verdict that chance made (about one cell in twenty each way)
/// is unlikely to come again in rounds of its own.
fn confirm(report: &Report, contenders: &[Contender], opts: &Options) -> Vec<Run> {
    let flagged = report.flagged();
    if flagged.is_empty() {
        println!("--confirm: no cell has a paired verdict to rerun");
        return Vec::new();
    }
    let by_label = |l: &str| contenders.iter().find(|c| c.label == l);
    let groups: Vec<(&(String, usize), Vec<&Contender>)> = flagged
        .iter()
        .map(|(c, allocs)| {
            let mut group: Vec<&Contender> = by_label(&report.baseline).into_iter().collect();
            group.extend(
                allocs
                    .iter()
                    .filter_map(|&a| by_label(&report.allocators[a])),
            );
            (&report.cells[*c], group)
        })
        .collect();
    let total = opts.confirm * groups.iter().map(|(_, g)| g.len()).sum::<usize>();
    println!(
        "\n--confirm: rerunning {} cells with a paired verdict for {} rounds ({total} runs)",
        groups.len(),
        opts.confirm
    );
    let _ = io::stdout().flush();
    run_rounds(&groups, opts.confirm, opts, "rerun ")
}

/// Runs `reps` rounds over `groups` (a cell and the contenders run in it),
/// each round every cell once and its contenders interleaved (A B C D,
/// then B C D A, ...) so that machine noise hits all of them alike.
fn run_rounds(
    groups: &[(&(String, usize), Vec<&Contender>)],
    reps: usize,
    opts: &Options,
    what: &str,
) -> Vec<Run> {
    let total = reps * groups.iter().map(|(_, g)| g.len()).sum::<usize>();
    let mut progress = Progress::new(total);
    let mut runs = Vec::with_capacity(total);
    for rep in 1..=reps {
        for ((w, t), group) in groups {
            for k in 0..group.len() {
                let c = group[(k + rep - 1) % group.len()];
                progress.show(&format!("{what}{w} t={t} {} (rep {rep}/{reps})", c.label));
                let result = run_one(c, w, *t, opts.scale, opts.timeout);
                if let Err(e) = &result {
                    progress.note(&format!(
                        "FAILED {what}{w} t={t} {} rep {rep}: {e}",
                        c.label
                    ));
                }
                runs.push(Run {
                    workload: w.clone(),
                    allocator: c.label.clone(),
                    threads: *t,
                    rep,
                    result,
                });
                progress.done += 1;
            }
        }
    }
    progress.finish();
    runs
}

/// Builds (or checks up to date) every binary of this package with the
/// driver's own profile.
fn build_workers(exe_dir: &Path) -> Result<(), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let profile: Vec<String> = match exe_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => vec![],
        Some("release") | None => vec!["--release".into()],
        Some(p) => vec!["--profile".into(), p.into()],
    };
    eprintln!(
        "tinymalloc-bench: building workers: cargo build {} -p tinymalloc-bench --bins",
        profile.join(" ")
    );
    let status = Command::new(&cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(&profile)
        .args(["-p", "tinymalloc-bench", "--bins"])
        .status()
        .map_err(|e| {
            format!(
                "cannot run {}: {e} (use --no-build)",
                cargo.to_string_lossy()
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("building the workers failed ({status})"))
    }
}

fn contenders(opts: &Options, exe_dir: &Path) -> Result<Vec<Contender>, String> {
    let worker = |alloc: &str| -> Result<PathBuf, String> {
        let p = exe_dir.join(format!("bench-{alloc}"));
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "worker {} not found: build it with `cargo build --release -p tinymalloc-bench --bins`",
                p.display()
            ))
        }
    };
    let mut out = Vec::new();
    for a in &opts.allocators {
        let secure = a == "tinymalloc-secure";
        out.push(Contender {
            label: a.clone(),
            exe: worker(if secure { "tinymalloc" } else { a })?,
            preload: None,
            secure,
        });
    }
    for lib in &opts.preload {
        // Labelled with the name as given (a versioned symlink target
        // would be less readable), preloaded by absolute path.
        let name = lib
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| lib.display().to_string());
        let mut label = name.clone();
        let mut n = 2;
        while out.iter().any(|c| c.label == label) {
            label = format!("{name}#{n}");
            n += 1;
        }
        let lib = fs::canonicalize(lib).map_err(|e| format!("--preload {}: {e}", lib.display()))?;
        out.push(Contender {
            label,
            exe: worker("system")?,
            preload: Some(lib),
            secure: false,
        });
    }
    Ok(out)
}

/// Runs one worker process; its peak RSS and page faults come from `wait4`.
fn run_one(
    c: &Contender,
    workload: &str,
    threads: usize,
    scale: f64,
    timeout: u32,
) -> Result<Measured, String> {
    let mut cmd = Command::new(&c.exe);
    cmd.arg(workload)
        .arg(threads.to_string())
        .arg(scale.to_string())
        .arg(timeout.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(lib) = &c.preload {
        cmd.env("LD_PRELOAD", lib);
    }
    if c.secure {
        cmd.env("TINYMALLOC_SECURE", "1");
    } else {
        cmd.env_remove("TINYMALLOC_SECURE");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", c.exe.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let mut out = Vec::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut out);
    // Reaped here rather than by `child.wait()`, to get its rusage.
    let waited = wait4(pid);
    let stderr = err_reader.join().unwrap_or_default();
    let (status, maxrss_kib, faults) = waited.map_err(|e| format!("wait4: {e}"))?;
    let why = |what: String| match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => format!("{what}: {}", l.trim().chars().take(200).collect::<String>()),
        None => what,
    };
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        return Err(why(format!(
            "killed by signal {sig} ({})",
            signal_name(sig, timeout)
        )));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(why(format!("exit status {}", libc::WEXITSTATUS(status))));
    }
    let out = String::from_utf8_lossy(&out);
    let r = ResultLine::parse(&out).ok_or_else(|| why("no result line".to_string()))?;
    if r.workload != workload || r.threads != threads {
        return Err(format!("result line is for another run: {out:?}"));
    }
    Ok(Measured {
        seconds: r.seconds,
        peak_rss_kib: maxrss_kib,
        page_faults: faults,
        ops: r.outcome.ops,
        checksum: r.outcome.checksum,
    })
}

/// Waits for child `pid`; returns its wait status, peak RSS (KiB) and
/// page faults (minor and major).
fn wait4(pid: libc::pid_t) -> io::Result<(libc::c_int, u64, u64)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers refer to live, writable locals; `pid` is
        // our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            // Linux reports ru_maxrss in KiB.
            let faults = usage.ru_minflt.max(0) as u64 + usage.ru_majflt.max(0) as u64;
            return Ok((status, usage.ru_maxrss.max(0) as u64, faults));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn signal_name(sig: libc::c_int, timeout: u32) -> String {
    match sig {
        libc::SIGABRT => "SIGABRT: abort, e.g. a failed check".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGKILL => "SIGKILL, e.g. out of memory".into(),
        libc::SIGALRM => format!("SIGALRM: timed out after {timeout} s"),
        libc::SIGTERM => "SIGTERM".into(),
        _ => "signal".into(),
    }
}

/// A one-line progress bar on stderr: redrawn in place on a terminal,
/// printed every 5% otherwise.
struct Progress {
    total: usize,
    done: usize,
    start: Instant,
    tty: bool,
    last_step: usize,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            start: Instant::now(),
            tty: io::stderr().is_terminal(),
            last_step: usize::MAX,
        }
    }

    fn line(&self, what: &str) -> String {
        const WIDTH: usize = 30;
        let filled = self.done * WIDTH / self.total.max(1);
        let elapsed = self.start.elapsed();
        let left = if self.done > 0 {
            let per = elapsed.as_secs_f64() / self.done as f64;
            format!(
                ", ~{} left",
                clock(Duration::from_secs_f64(
                    per * (self.total - self.done) as f64
                ))
            )
        } else {
            String::new()
        };
        format!(
            "[{}{}] {}/{} {what}  {}{left}",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            self.done,
            self.total,
            clock(elapsed),
        )
    }

    fn show(&mut self, what: &str) {
        let mut err = io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{}\x1b[K", self.line(what));
        } else {
            let step = self.done * 20 / self.total.max(1);
            if step != self.last_step {
                self.last_step = step;
                let _ = writeln!(err, "{}", self.line(what));
            }
        }
        let _ = err.flush();
    }

    /// Prints a message on its own line, above the bar.
    fn note(&self, msg: &str) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        eprintln!("{msg}");
    }

    fn finish(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        eprintln!(
            "[{}] {}/{} runs in {}",
            "#".repeat(30),
            self.done,
            self.total,
            clock(self.start.elapsed())
        );
    }
}

/// `m:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// `YYYYMMDD-HHMMSS` (UTC).
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101-000000");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56 UTC
        assert_eq!(timestamp(t), "20240229-123456");
        assert_eq!(clock(Duration::from_secs(125)), "2:05");
    }
}
