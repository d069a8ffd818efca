//! The driver's command line.

use crate::workloads;
use std::path::PathBuf;

/// The allocators built into the suite, one worker binary each.
pub const ALLOCATORS: &[&str] = &["tinymalloc", "system", "jemalloc", "mimalloc"];
/// Allocators run only when named: `tinymalloc-secure` is the tinymalloc
/// worker started with `TINYMALLOC_SECURE=1` (every other worker is started
/// without that variable).
pub const EXTRA_ALLOCATORS: &[&str] = &["tinymalloc-secure"];
/// Default thread counts for multi-threaded workloads (8 oversubscribes a
/// 2-core machine on purpose).
pub const THREADS: &[usize] = &[1, 2, 8];
/// Workload size of `--quick` runs.
pub const QUICK_SCALE: f64 = 1.0;
/// Workload size of full runs.
pub const FULL_SCALE: f64 = 4.0;

/// Usage text.
pub const USAGE: &str = "\
usage: tinymalloc-bench [OPTIONS]
       cargo run --release -p tinymalloc-bench -- [OPTIONS]

Runs allocator workloads, each (workload, threads, allocator) in a fresh
worker process, and prints per-workload tables of time and peak RSS with
ratios to mimalloc, then geometric means. Writes results.csv, medians.csv
and chart.svg under target/bench/<timestamp>/ and prints `results: PATH`
as the last line.

Options:
  --quick                 reduced sizes (whole suite in a few minutes)
  --workloads A,B,...     workloads to run (default: all; see --list)
  --allocators A,B,...    of tinymalloc,system,jemalloc,mimalloc (default: all)
                          and tinymalloc-secure (tinymalloc with
                          TINYMALLOC_SECURE=1; only when named)
  --threads N,M,...       thread counts for multi-threaded workloads
                          (default: 1,2,8; single-threaded workloads run
                          only when 1 is listed)
  --reps N                repetitions per cell, median reported (default: 3)
  --confirm N             then rerun each cell with a paired verdict (slower
                          or faster than the baseline in so many rounds that
                          chance is unlikely) for N rounds more, the
                          baseline and the flagged allocators only, and say
                          whether each verdict stands (default: 0, off;
                          results in confirm.csv)
  --preload PATH.so       also run every workload against this malloc
                          library (LD_PRELOAD into the system-malloc worker),
                          labelled with its file name; repeatable
  --baseline NAME         allocator the ratios are relative to
                          (default: mimalloc, else the first one run)
  --scale X               workload size factor (default: 1 quick, 4 full)
  --timeout SECONDS       kill a run after this long (default: 60 quick,
                          600 full)
  --no-build              do not run `cargo build --release -p
                          tinymalloc-bench --bins` first to (re)build the
                          worker binaries
  --out DIR               write results here instead of target/bench/<time>
  --list                  list the workloads and exit
  -h, --help              this text
";

/// Parsed options.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// `--quick`.
    pub quick: bool,
    /// Workload names, validated, in suite order.
    pub workloads: Vec<&'static str>,
    /// Built-in allocators to run, validated.
    pub allocators: Vec<String>,
    /// Thread counts for multi-threaded workloads.
    pub threads: Vec<usize>,
    /// Repetitions per cell.
    pub reps: usize,
    /// Rounds rerun for each cell with a paired verdict (0: none).
    pub confirm: usize,
    /// Malloc libraries to preload.
    pub preload: Vec<PathBuf>,
    /// Baseline allocator label for ratios, if given.
    pub baseline: Option<String>,
    /// Workload size factor.
    pub scale: f64,
    /// Per-run timeout in seconds.
    pub timeout: u32,
    /// Skip building the workers.
    pub no_build: bool,
    /// Output directory.
    pub out: Option<PathBuf>,
    /// `--list`.
    pub list: bool,
    /// `--help`.
    pub help: bool,
}

fn list<T>(
    opt: &str,
    v: &str,
    mut item: impl FnMut(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let items: Vec<T> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(&mut item)
        .collect::<Result<_, _>>()?;
    if items.is_empty() {
        return Err(format!("{opt} needs at least one value"));
    }
    Ok(items)
}

/// Parses the arguments (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        workloads: workloads::ALL.iter().map(|w| w.name).collect(),
        allocators: ALLOCATORS.iter().map(|s| s.to_string()).collect(),
        threads: THREADS.to_vec(),
        reps: 3,
        confirm: 0,
        preload: Vec::new(),
        baseline: None,
        scale: f64::NAN,
        timeout: 0,
        no_build: false,
        out: None,
        list: false,
        help: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let takes_value = matches!(
            name.as_str(),
            "--workloads"
                | "--allocators"
                | "--threads"
                | "--reps"
                | "--confirm"
                | "--preload"
                | "--baseline"
                | "--scale"
                | "--timeout"
                | "--out"
        );
        let value = if takes_value {
            match inline {
                Some(v) => v,
                None => args.next().ok_or_else(|| format!("{name} needs a value"))?,
            }
        } else if inline.is_some() {
            return Err(format!("{name} takes no value"));
        } else {
            String::new()
        };
        match name.as_str() {
            "--quick" => o.quick = true,
            "--no-build" => o.no_build = true,
            "--list" => o.list = true,
            "-h" | "--help" => o.help = true,
            "--workloads" => {
                let mut names = list(&name, &value, |s| {
                    workloads::find(s)
                        .map(|w| w.name)
                        .ok_or_else(|| format!("unknown workload {s:?} (see --list)"))
                })?;
                names.dedup();
                // Keep suite order, whatever order they were given in.
                o.workloads = workloads::ALL
                    .iter()
                    .map(|w| w.name)
                    .filter(|n| names.contains(n))
                    .collect();
            }
            "--allocators" => {
                let names = list(&name, &value, |s| {
                    if ALLOCATORS.contains(&s) || EXTRA_ALLOCATORS.contains(&s) {
                        Ok(s.to_string())
                    } else {
                        Err(format!(
                            "unknown allocator {s:?} (one of {}; use --preload for others)",
                            ALLOCATORS.join(",")
                        ))
                    }
                })?;
                o.allocators = Vec::new();
                for n in names {
                    if !o.allocators.contains(&n) {
                        o.allocators.push(n);
                    }
                }
            }
            "--threads" => {
                o.threads = list(&name, &value, |s| match s.parse::<usize>() {
                    Ok(t) if (1..=1024).contains(&t) => Ok(t),
                    _ => Err(format!("bad thread count {s:?}")),
                })?;
                o.threads.sort_unstable();
                o.threads.dedup();
            }
            "--reps" => {
                o.reps = match value.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("bad --reps {value:?}")),
                }
            }
            "--confirm" => {
                o.confirm = value
                    .parse()
                    .map_err(|_| format!("bad --confirm {value:?}"))?
            }
            "--scale" => {
                o.scale = match value.parse::<f64>() {
                    Ok(x) if x > 0.0 && x.is_finite() => x,
                    _ => return Err(format!("bad --scale {value:?}")),
                }
            }
            "--timeout" => {
                o.timeout = match value.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("bad --timeout {value:?}")),
                }
            }
            "--preload" => o.preload.push(PathBuf::from(value)),
            "--baseline" => o.baseline = Some(value),
            "--out" => o.out = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    if o.scale.is_nan() {
        o.scale = if o.quick { QUICK_SCALE } else { FULL_SCALE };
    }
    if o.timeout == 0 {
        o.timeout = if o.quick { 60 } else { 600 };
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        let o = p(&[]).unwrap();
        assert!(!o.quick && !o.no_build);
        assert_eq!(o.workloads.len(), workloads::ALL.len());
        assert_eq!(o.allocators, ALLOCATORS);
        assert_eq!(o.threads, vec![1, 2, 8]);
        assert_eq!((o.reps, o.scale, o.timeout), (3, FULL_SCALE, 600));
        assert_eq!(o.confirm, 0);
        let q = p(&["--quick"]).unwrap();
        assert_eq!((q.reps, q.scale, q.timeout), (3, QUICK_SCALE, 60));
    }

    #[test]
    fn options() {
        let o = p(&[
            "--quick",
            "--workloads",
            "xmalloc,larson",
            "--allocators=mimalloc,tinymalloc",
            "--threads",
            "8,2",
            "--reps=5",
            "--confirm",
            "41",
            "--preload",
            "/usr/lib/libtcmalloc.so",
            "--no-build",
            "--out",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(o.workloads, vec!["larson", "xmalloc"]);
        assert_eq!(o.allocators, vec!["mimalloc", "tinymalloc"]);
        assert_eq!(o.threads, vec![2, 8]);
        assert_eq!((o.reps, o.confirm), (5, 41));
        assert_eq!(o.preload, vec![PathBuf::from("/usr/lib/libtcmalloc.so")]);
        assert!(o.no_build && o.quick);
        assert_eq!(o.out, Some(PathBuf::from("/tmp/x")));
    }

    #[test]
    fn errors() {
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["--workloads", "nope"]).is_err());
        assert!(p(&["--allocators", "tcmalloc"]).is_err());
        let o = p(&["--allocators", "tinymalloc,tinymalloc-secure"]).unwrap();
        assert_eq!(o.allocators, vec!["tinymalloc", "tinymalloc-secure"]);
        assert!(p(&["--threads", "0"]).is_err());
        assert!(p(&["--reps", "0"]).is_err());
        assert!(p(&["--reps"]).is_err());
        assert!(p(&["--confirm", "-1"]).is_err());
        assert!(p(&["--quick=yes"]).is_err());
        assert!(p(&["extra"]).is_err());
    }
}
