//! The worker side: one process runs one (workload, threads, scale) and
//! prints one result line for the driver.
//!
//! ```text
//! bench-ALLOCATOR WORKLOAD THREADS SCALE [TIMEOUT_SECONDS]
//! bench-ALLOCATOR --list
//! ```
//!
//! Output (stdout, one line):
//!
//! ```text
//! result workload=larson threads=2 seconds=0.123456 ops=2001000 checksum=0x...
//! ```
//!
//! A heap corruption found by a workload panics, which aborts the process
//! (the release profile uses `panic = "abort"`): the driver sees the signal
//! and reports the cell as FAILED. With a timeout the worker arms
//! `alarm(2)`, so a hung allocator is killed by SIGALRM.

use crate::workloads::{self, Outcome};
use std::time::Instant;

/// One parsed result line.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultLine {
    /// Workload name.
    pub workload: String,
    /// Thread count.
    pub threads: usize,
    /// Wall-clock seconds of the workload itself (not process start-up).
    pub seconds: f64,
    /// The workload's outcome.
    pub outcome: Outcome,
}

impl ResultLine {
    /// The line as the worker prints it.
    pub fn format(&self) -> String {
        format!(
            "result workload={} threads={} seconds={:.6} ops={} checksum={:#018x}",
            self.workload, self.threads, self.seconds, self.outcome.ops, self.outcome.checksum
        )
    }

    /// Finds and parses the result line in a worker's stdout.
    pub fn parse(stdout: &str) -> Option<ResultLine> {
        let line = stdout.lines().find(|l| l.starts_with("result "))?;
        let mut r = ResultLine {
            workload: String::new(),
            threads: 0,
            seconds: f64::NAN,
            outcome: Outcome::default(),
        };
        for field in line.split_whitespace().skip(1) {
            let (k, v) = field.split_once('=')?;
            match k {
                "workload" => r.workload = v.to_string(),
                "threads" => r.threads = v.parse().ok()?,
                "seconds" => r.seconds = v.parse().ok()?,
                "ops" => r.outcome.ops = v.parse().ok()?,
                "checksum" => {
                    r.outcome.checksum = u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()?
                }
                _ => {}
            }
        }
        (!r.workload.is_empty() && r.threads > 0 && r.seconds.is_finite()).then_some(r)
    }
}

fn usage(prog: &str) -> ! {
    eprintln!("usage: {prog} WORKLOAD THREADS SCALE [TIMEOUT_SECONDS] | --list");
    eprintln!("workloads:");
    for w in workloads::ALL {
        eprintln!("  {:<14} {}", w.name, w.about);
    }
    std::process::exit(2)
}

/// Entry point of every `bench-*` worker binary: runs one workload at one
/// thread count and size, prints the result line, exits non-zero on error.
pub fn worker_main() {
    let args: Vec<String> = std::env::args().collect();
    let prog = args.first().map(String::as_str).unwrap_or("bench-worker");
    if args.get(1).map(String::as_str) == Some("--list") {
        for w in workloads::ALL {
            println!("{}\t{}\t{}", w.name, w.multi_threaded, w.about);
        }
        return;
    }
    if !(4..=5).contains(&args.len()) {
        usage(prog);
    }
    let Some(w) = workloads::find(&args[1]) else {
        eprintln!("{prog}: unknown workload {:?}", args[1]);
        usage(prog)
    };
    let threads: usize = match args[2].parse() {
        Ok(t) if t > 0 => t,
        _ => usage(prog),
    };
    let scale: f64 = match args[3].parse() {
        Ok(s) if s > 0.0 => s,
        _ => usage(prog),
    };
    if let Some(t) = args.get(4) {
        let Ok(secs) = t.parse::<u32>() else {
            usage(prog)
        };
        // SAFETY: alarm has no memory-safety preconditions; SIGALRM's
        // default action terminates the process, which is what we want.
        unsafe { libc::alarm(secs) };
    }
    let start = Instant::now();
    let outcome = (w.run)(threads, scale);
    let seconds = start.elapsed().as_secs_f64();
    let line = ResultLine {
        workload: w.name.to_string(),
        threads,
        seconds,
        outcome: std::hint::black_box(outcome),
    };
    println!("{}", line.format());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_round_trip() {
        let r = ResultLine {
            workload: "larson".into(),
            threads: 8,
            seconds: 0.25,
            outcome: Outcome {
                ops: 12345,
                checksum: 0xdead_beef_0000_0001,
            },
        };
        let text = format!("noise\n{}\n", r.format());
        assert_eq!(ResultLine::parse(&text), Some(r));
        assert_eq!(ResultLine::parse("result threads=x"), None);
        assert_eq!(ResultLine::parse(""), None);
    }
}
