//! Results: medians, ratios to the baseline, paired verdicts, text tables
//! and CSV.

use crate::stats::{geomean, median, sign_test};
use crate::workloads;
use std::fmt::Write as _;

/// What one successful run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    /// Seconds the workload took inside the worker.
    pub seconds: f64,
    /// Peak resident set of the worker process (KiB, from wait4).
    pub peak_rss_kib: u64,
    /// Page faults of the worker process (minor and major, from wait4):
    /// first touches of fresh memory, refaults after purges, and the
    /// program's own start. A transparent huge page counts once.
    pub page_faults: u64,
    /// Allocations performed.
    pub ops: u64,
    /// The workload's checksum.
    pub checksum: u64,
}

/// One worker process.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Workload name.
    pub workload: String,
    /// Allocator label.
    pub allocator: String,
    /// Thread count.
    pub threads: usize,
    /// Repetition index, from 1.
    pub rep: usize,
    /// The measurement, or why the run failed.
    pub result: Result<Measured, String>,
}

/// The median of one (workload, threads, allocator) cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Stat {
    /// Every repetition succeeded.
    Ok {
        /// Median seconds.
        seconds: f64,
        /// Median peak RSS in KiB.
        rss_kib: f64,
        /// Median page faults.
        faults: f64,
        /// Allocations per run.
        ops: u64,
    },
    /// At least one repetition failed; the first reason.
    Failed(String),
    /// Not run.
    Missing,
}

/// The significance level of the paired verdicts (one-sided sign test).
pub const ALPHA: f64 = 0.05;

/// The fewest repetitions with which a cell can pass the sign test at
/// [`ALPHA`]: 5 of 5 one way is p = 1/32.
pub const MIN_PAIRED_REPS: usize = 5;

/// How an allocator fared against the baseline repetition by repetition
/// in one cell. The driver runs every allocator once per round, so the
/// two runs of a repetition were close in time: noise that drifts over
/// seconds or minutes (other tenants of a shared machine) hits both, and
/// the count of rounds won or lost says whether a difference between the
/// medians stands out of that noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paired {
    /// Repetitions where the allocator took less time than the baseline.
    pub faster: usize,
    /// Repetitions where it took more (ties count as neither).
    pub slower: usize,
}

/// What [`Paired`] says at [`ALPHA`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Slower in so many repetitions that chance would explain it less
    /// than one time in twenty.
    Slower,
    /// Faster, likewise.
    Faster,
    /// Neither: within the machine's noise.
    Noise,
}

impl Paired {
    /// The verdict of the one-sided sign test each way.
    pub fn verdict(&self) -> Verdict {
        let n = self.faster + self.slower;
        if sign_test(n, self.slower) < ALPHA {
            Verdict::Slower
        } else if sign_test(n, self.faster) < ALPHA {
            Verdict::Faster
        } else {
            Verdict::Noise
        }
    }
}

/// All results of a suite run.
pub struct Report {
    /// Every run, in the order they ran.
    pub runs: Vec<Run>,
    /// (workload, threads) cells, in report order.
    pub cells: Vec<(String, usize)>,
    /// Allocator labels, in column order.
    pub allocators: Vec<String>,
    /// The allocator ratios are relative to.
    pub baseline: String,
    /// `stats[cell][allocator]`.
    pub stats: Vec<Vec<Stat>>,
    /// Rounds rerun after the others for the cells with a paired verdict
    /// (`--confirm`): the baseline and the flagged allocators only, with
    /// their own repetition numbers. Medians and ratios leave them out.
    pub confirm: Vec<Run>,
}

impl Report {
    /// Computes the medians.
    pub fn new(
        runs: Vec<Run>,
        cells: Vec<(String, usize)>,
        allocators: Vec<String>,
        baseline: String,
    ) -> Report {
        let stats = cells
            .iter()
            .map(|(w, t)| {
                allocators
                    .iter()
                    .map(|a| {
                        let mine: Vec<&Run> = cell_runs(&runs, w, *t, a).collect();
                        if mine.is_empty() {
                            return Stat::Missing;
                        }
                        if let Some(Err(e)) = mine.iter().map(|r| &r.result).find(|r| r.is_err()) {
                            return Stat::Failed(e.clone());
                        }
                        let ok: Vec<Measured> =
                            mine.iter().filter_map(|r| r.result.clone().ok()).collect();
                        let secs: Vec<f64> = ok.iter().map(|m| m.seconds).collect();
                        let rss: Vec<f64> = ok.iter().map(|m| m.peak_rss_kib as f64).collect();
                        let faults: Vec<f64> = ok.iter().map(|m| m.page_faults as f64).collect();
                        Stat::Ok {
                            seconds: median(&secs),
                            rss_kib: median(&rss),
                            faults: median(&faults),
                            ops: ok[0].ops,
                        }
                    })
                    .collect()
            })
            .collect();
        Report {
            runs,
            cells,
            allocators,
            baseline,
            stats,
            confirm: Vec::new(),
        }
    }

    /// The width of the allocator column: the longest label, at least 9.
    fn label_width(&self) -> usize {
        self.allocators
            .iter()
            .map(|a| a.len())
            .max()
            .unwrap_or(9)
            .max(9)
    }

    fn base_index(&self) -> Option<usize> {
        self.allocators.iter().position(|a| *a == self.baseline)
    }

    /// (time ratio, RSS ratio) of allocator `a` to the baseline in `cell`.
    pub fn ratios(&self, cell: usize, a: usize) -> Option<(f64, f64)> {
        let b = self.base_index()?;
        match (&self.stats[cell][a], &self.stats[cell][b]) {
            (
                Stat::Ok {
                    seconds, rss_kib, ..
                },
                Stat::Ok {
                    seconds: bs,
                    rss_kib: br,
                    ..
                },
            ) if *bs > 0.0 && *br > 0.0 => Some((seconds / bs, rss_kib / br)),
            _ => None,
        }
    }

    /// Allocator `a` against the baseline in `cell`, repetition by
    /// repetition (those where both succeeded); None for the baseline
    /// itself or when either never succeeded.
    pub fn paired(&self, cell: usize, a: usize) -> Option<Paired> {
        self.paired_in(&self.runs, cell, a)
    }

    /// [`Report::paired`] over the rerun rounds alone (`--confirm`).
    pub fn rerun(&self, cell: usize, a: usize) -> Option<Paired> {
        self.paired_in(&self.confirm, cell, a)
    }

    /// The cells where some allocator has a paired verdict (slower or
    /// faster), each with those allocators: what `--confirm` reruns.
    pub fn flagged(&self) -> Vec<(usize, Vec<usize>)> {
        (0..self.cells.len())
            .filter_map(|c| {
                let a: Vec<usize> = (0..self.allocators.len())
                    .filter(|&a| {
                        self.paired(c, a)
                            .is_some_and(|p| p.verdict() != Verdict::Noise)
                    })
                    .collect();
                (!a.is_empty()).then_some((c, a))
            })
            .collect()
    }

    fn paired_in(&self, runs: &[Run], cell: usize, a: usize) -> Option<Paired> {
        let b = self.base_index()?;
        if a == b {
            return None;
        }
        let (w, t) = &self.cells[cell];
        // The baseline's time in each repetition where it succeeded.
        let base: Vec<(usize, f64)> = cell_runs(runs, w, *t, &self.baseline)
            .filter_map(|r| r.result.as_ref().ok().map(|m| (r.rep, m.seconds)))
            .collect();
        let mut p = Paired {
            faster: 0,
            slower: 0,
        };
        for r in cell_runs(runs, w, *t, &self.allocators[a]) {
            let Ok(m) = &r.result else { continue };
            let Some(&(_, b)) = base.iter().find(|(rep, _)| *rep == r.rep) else {
                continue;
            };
            if m.seconds < b {
                p.faster += 1;
            } else if m.seconds > b {
                p.slower += 1;
            }
        }
        (p.faster + p.slower > 0).then_some(p)
    }

    /// Paired verdicts per allocator: counts of cells slower, faster and
    /// within noise, and the cells found slower with their counts.
    pub fn verdicts(&self) -> String {
        let mut s = String::new();
        let reps = self.runs.iter().map(|r| r.rep).max().unwrap_or(0);
        let _ = writeln!(
            s,
            "\npaired by repetition: a cell is slower (faster) than {}'s when the allocator \
             lost (won) in so many of the rounds that a one-sided sign test gives p < {ALPHA}",
            self.baseline
        );
        if reps < MIN_PAIRED_REPS {
            let _ = writeln!(
                s,
                "  (with {reps} repetitions no cell can pass: use --reps {MIN_PAIRED_REPS} or more)"
            );
        } else {
            // Each cell is a test of its own: at this level, chance alone
            // flags about one cell in twenty each way.
            let _ = writeln!(
                s,
                "  (chance alone flags about {:.1} of {} cells each way: rerun before trusting one)",
                ALPHA * self.cells.len() as f64,
                self.cells.len()
            );
        }
        let rerun = !self.confirm.is_empty();
        if rerun {
            let _ = writeln!(
                s,
                "  (each flagged cell was then rerun for rounds of its own, --confirm: \
                 \"stood\" counts the slower/faster verdicts those rounds gave again)"
            );
        }
        let width = self.label_width();
        let _ = writeln!(
            s,
            "  {:<width$}  {:>6}  {:>6}  {:>6}  {}slower cells (rounds lost of those decided{})",
            "allocator",
            "slower",
            "faster",
            "noise",
            if rerun { "stood  " } else { "" },
            if rerun { "; in the rerun" } else { "" }
        );
        for (a, name) in self.allocators.iter().enumerate() {
            let (mut slower, mut faster, mut noise) = (Vec::new(), 0, 0);
            let (mut slower_stood, mut faster_stood) = (0, 0);
            for (c, (w, t)) in self.cells.iter().enumerate() {
                let Some(p) = self.paired(c, a) else { continue };
                let again = self.rerun(c, a);
                let stood = again.is_some_and(|q| q.verdict() == p.verdict());
                match p.verdict() {
                    Verdict::Slower => {
                        slower_stood += usize::from(stood);
                        let tail = match again {
                            Some(q) => format!(
                                "; {} of {}, {}",
                                q.slower,
                                q.faster + q.slower,
                                if stood { "stands" } else { "not again" }
                            ),
                            None => String::new(),
                        };
                        slower.push(format!(
                            "{w} t={t} ({} of {}{tail})",
                            p.slower,
                            p.faster + p.slower
                        ))
                    }
                    Verdict::Faster => {
                        faster += 1;
                        faster_stood += usize::from(stood);
                    }
                    Verdict::Noise => noise += 1,
                }
            }
            if slower.len() + faster + noise == 0 {
                continue;
            }
            let stood = if rerun {
                format!("{:>5}  ", format!("{slower_stood}/{faster_stood}"))
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "  {name:<width$}  {:>6}  {faster:>6}  {noise:>6}  {stood}{}",
                slower.len(),
                if slower.is_empty() {
                    "-".to_string()
                } else {
                    slower.join(", ")
                }
            );
        }
        s
    }

    /// Geometric means of (time ratio, RSS ratio) of allocator `a` over the
    /// cells where it and the baseline both succeeded, and that count.
    pub fn geomeans(&self, a: usize) -> (f64, f64, usize) {
        let (t, r): (Vec<f64>, Vec<f64>) = (0..self.cells.len())
            .filter_map(|c| self.ratios(c, a))
            .unzip();
        (geomean(&t), geomean(&r), t.len())
    }

    /// Failed cells, as "workload t=N allocator: reason".
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (c, (w, t)) in self.cells.iter().enumerate() {
            for (a, name) in self.allocators.iter().enumerate() {
                if let Stat::Failed(e) = &self.stats[c][a] {
                    out.push(format!("{w} t={t} {name}: {e}"));
                }
            }
        }
        out
    }

    /// Cells whose successful runs (the reruns too) disagree on (ops,
    /// checksum): all allocators must do exactly the same work.
    pub fn checksum_mismatches(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (w, t) in &self.cells {
            let mut seen: Vec<(u64, u64, Vec<String>)> = Vec::new();
            for r in self
                .runs
                .iter()
                .chain(&self.confirm)
                .filter(|r| &r.workload == w && r.threads == *t)
            {
                if let Ok(m) = &r.result {
                    match seen.iter_mut().find(|s| (s.0, s.1) == (m.ops, m.checksum)) {
                        Some(s) if !s.2.contains(&r.allocator) => s.2.push(r.allocator.clone()),
                        Some(_) => {}
                        None => seen.push((m.ops, m.checksum, vec![r.allocator.clone()])),
                    }
                }
            }
            if seen.len() > 1 {
                let parts: Vec<String> = seen
                    .iter()
                    .map(|(o, c, a)| format!("ops={o} checksum={c:#x} from {}", a.join("/")))
                    .collect();
                out.push(format!("{w} t={t}: {}", parts.join("; ")));
            }
        }
        out
    }

    /// One table per workload: rows per (threads, allocator).
    pub fn tables(&self) -> String {
        let mut s = format!(
            "per workload: median of the repetitions; ratio = value / {}'s (lower is better)\n",
            self.baseline
        );
        let width = self.label_width();
        let mut last = "";
        for (c, (w, t)) in self.cells.iter().enumerate() {
            if w != last {
                last = w;
                let about = workloads::find(w).map(|x| x.about).unwrap_or("");
                let _ = writeln!(s, "\n{w}: {about}");
                let _ = writeln!(
                    s,
                    "  threads  {:<width$}  {:>9}  {:>7}  {:>9}  {:>9}  {:>7}  {:>7}",
                    "allocator", "time (s)", "ratio", "allocs/s", "peak MiB", "ratio", "faults",
                );
            }
            for (a, name) in self.allocators.iter().enumerate() {
                let _ = write!(s, "  {t:>7}  {name:<width$}  ");
                match &self.stats[c][a] {
                    Stat::Ok {
                        seconds,
                        rss_kib,
                        faults,
                        ops,
                    } => {
                        let (tr, rr) = self
                            .ratios(c, a)
                            .map(|(x, y)| (format!("{x:.2}x"), format!("{y:.2}x")))
                            .unwrap_or_else(|| ("-".into(), "-".into()));
                        let _ = writeln!(
                            s,
                            "{seconds:>9.4}  {tr:>7}  {:>9}  {:>9.1}  {rr:>7}  {:>7}",
                            rate(*ops as f64 / seconds),
                            rss_kib / 1024.0,
                            count(*faults),
                        );
                    }
                    Stat::Failed(e) => {
                        let _ = writeln!(s, "FAILED: {e}");
                    }
                    Stat::Missing => {
                        let _ = writeln!(s, "-");
                    }
                }
            }
        }
        s
    }

    /// Geometric means of the ratios per allocator.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let width = self.label_width();
        let _ = writeln!(
            s,
            "\nsummary: geometric means of ratios to {} over all cells (lower is better)",
            self.baseline
        );
        let _ = writeln!(
            s,
            "  {:<width$}  {:>8}  {:>8}  {:>5}  {:>6}",
            "allocator", "time", "peak RSS", "cells", "failed"
        );
        for (a, name) in self.allocators.iter().enumerate() {
            let (t, r, n) = self.geomeans(a);
            let failed = (0..self.cells.len())
                .filter(|&c| matches!(self.stats[c][a], Stat::Failed(_)))
                .count();
            let f = |x: f64| {
                if x.is_nan() {
                    "-".to_string()
                } else {
                    format!("{x:.3}x")
                }
            };
            let _ = writeln!(
                s,
                "  {name:<width$}  {:>8}  {:>8}  {n:>5}  {failed:>6}",
                f(t),
                f(r)
            );
        }
        s
    }

    /// Every run: `workload,allocator,threads,rep,seconds,peak_rss_kib,ops,checksum,status,page_faults`
    /// (the page faults last, as in [`Report::medians_csv`]).
    pub fn runs_csv(&self) -> String {
        runs_csv(&self.runs)
    }

    /// The rerun rounds (`--confirm`), as [`Report::runs_csv`].
    pub fn confirm_csv(&self) -> String {
        runs_csv(&self.confirm)
    }

    /// Medians and ratios: `workload,allocator,threads,seconds,peak_rss_kib,time_ratio,rss_ratio,status,page_faults`
    /// (the page faults last, so that readers of the columns before them
    /// read older files too).
    pub fn medians_csv(&self) -> String {
        let mut s = String::from(
            "workload,allocator,threads,seconds,peak_rss_kib,time_ratio,rss_ratio,status,page_faults\n",
        );
        for (c, (w, t)) in self.cells.iter().enumerate() {
            for (a, name) in self.allocators.iter().enumerate() {
                let (tr, rr) = self
                    .ratios(c, a)
                    .map(|(x, y)| (format!("{x:.4}"), format!("{y:.4}")))
                    .unwrap_or_default();
                let _ = match &self.stats[c][a] {
                    Stat::Ok {
                        seconds,
                        rss_kib,
                        faults,
                        ..
                    } => writeln!(
                        s,
                        "{},{},{t},{seconds:.6},{rss_kib:.0},{tr},{rr},ok,{faults:.0}",
                        csv(w),
                        csv(name)
                    ),
                    Stat::Failed(e) => writeln!(
                        s,
                        "{},{},{t},,,,,{},",
                        csv(w),
                        csv(name),
                        csv(&format!("FAILED: {e}"))
                    ),
                    Stat::Missing => Ok(()),
                };
            }
        }
        s
    }
}

/// [`Report::runs_csv`] of `runs`.
fn runs_csv(runs: &[Run]) -> String {
    let mut s = String::from(
        "workload,allocator,threads,rep,seconds,peak_rss_kib,ops,checksum,status,page_faults\n",
    );
    for r in runs {
        let _ = write!(
            s,
            "{},{},{},{},",
            csv(&r.workload),
            csv(&r.allocator),
            r.threads,
            r.rep
        );
        let _ = match &r.result {
            Ok(m) => writeln!(
                s,
                "{:.6},{},{},{:#x},ok,{}",
                m.seconds, m.peak_rss_kib, m.ops, m.checksum, m.page_faults
            ),
            Err(e) => writeln!(s, ",,,,{},", csv(&format!("FAILED: {e}"))),
        };
    }
    s
}

/// The runs of allocator `a` in the cell of workload `w` at `t` threads.
fn cell_runs<'a>(
    runs: &'a [Run],
    w: &'a str,
    t: usize,
    a: &'a str,
) -> impl Iterator<Item = &'a Run> + 'a {
    runs.iter()
        .filter(move |r| r.workload == w && r.threads == t && r.allocator == a)
}

/// A rate with an SI suffix: `12.3M`, `950k`, `81.0`.
fn rate(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

/// A count: whole below a thousand, else as [`rate`] (`616`, `4.8k`).
fn count(x: f64) -> String {
    if x.is_finite() && x < 1e3 {
        format!("{x:.0}")
    } else {
        rate(x)
    }
}

/// Quotes a CSV field when needed.
pub fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!(
            "\"{}\"",
            field.replace('"', "\"\"").replace(['\n', '\r'], " ")
        )
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(alloc: &str, threads: usize, rep: usize, secs: f64, rss: u64) -> Run {
        let faults = rss / 4 + rep as u64;
        Run {
            workload: "larson".into(),
            allocator: alloc.into(),
            threads,
            rep,
            result: Ok(Measured {
                seconds: secs,
                peak_rss_kib: rss,
                page_faults: faults,
                ops: 100,
                checksum: 7,
            }),
        }
    }

    fn sample() -> Report {
        let mut runs = vec![
            run("tinymalloc", 1, 1, 1.0, 1000),
            run("tinymalloc", 1, 2, 3.0, 1000),
            run("tinymalloc", 1, 3, 2.0, 1000),
            run("mimalloc", 1, 1, 4.0, 2000),
            run("mimalloc", 1, 2, 4.0, 2000),
            run("mimalloc", 1, 3, 4.0, 2000),
            run("mimalloc", 2, 1, 1.0, 500),
        ];
        runs.push(Run {
            result: Err("killed by signal 6 (SIGABRT)".into()),
            ..run("tinymalloc", 2, 1, 0.0, 0)
        });
        Report::new(
            runs,
            vec![("larson".into(), 1), ("larson".into(), 2)],
            vec!["tinymalloc".into(), "mimalloc".into()],
            "mimalloc".into(),
        )
    }

    #[test]
    fn medians_ratios_geomeans() {
        let r = sample();
        assert_eq!(r.ratios(0, 0), Some((0.5, 0.5)));
        assert_eq!(r.ratios(0, 1), Some((1.0, 1.0)));
        assert_eq!(r.ratios(1, 0), None);
        let (t, m, n) = r.geomeans(0);
        assert_eq!((t, m, n), (0.5, 0.5, 1));
        assert_eq!(r.failures().len(), 1);
        assert!(r.checksum_mismatches().is_empty());
        let text = r.tables() + &r.summary();
        assert!(text.contains("FAILED: killed by signal 6"));
        assert!(text.contains("0.500x"));
    }

    #[test]
    fn csv_output() {
        let r = sample();
        let runs = r.runs_csv();
        let mut lines = runs.lines();
        assert!(lines
            .next()
            .unwrap()
            .starts_with("workload,allocator,threads,rep,seconds,peak_rss_kib"));
        assert_eq!(
            lines.next().unwrap(),
            "larson,tinymalloc,1,1,1.000000,1000,100,0x7,ok,251"
        );
        assert_eq!(runs.lines().count(), 9);
        let med = r.medians_csv();
        // Median faults of 251, 252, 253 (each run's own, not the
        // repetition of the median time).
        assert!(med.contains("larson,tinymalloc,1,2.000000,1000,0.5000,0.5000,ok,252\n"));
        assert!(med.contains("larson,tinymalloc,2,,,,,FAILED: killed by signal 6 (SIGABRT),\n"));
        assert!(runs.contains("larson,tinymalloc,2,1,,,,,FAILED: killed by signal 6 (SIGABRT),\n"));
        assert_eq!(
            runs.lines().next().unwrap().split(',').count(),
            runs.lines().nth(1).unwrap().split(',').count()
        );
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(
            (rate(81.0), rate(950e3), rate(12.34e6)),
            ("81.0".into(), "950.0k".into(), "12.34M".into())
        );
        assert_eq!((count(616.0), count(4812.0)), ("616".into(), "4.8k".into()));
        assert!(r.tables().contains("  faults"));
        assert_eq!(csv("say \"x\""), "\"say \"\"x\"\"\"");
    }

    /// Cell t=1: tinymalloc wins 5 of 5 rounds (p = 1/32); t=2: it loses 4
    /// of 5 (p = 6/32: noise); t=4: it loses 6 of 6, by 1%.
    fn three_cells() -> Report {
        let mut runs = Vec::new();
        for rep in 1..=6 {
            if rep <= 5 {
                runs.push(run("tinymalloc", 1, rep, 1.0, 1000));
                runs.push(run("mimalloc", 1, rep, 1.5, 1000));
                runs.push(run(
                    "tinymalloc",
                    2,
                    rep,
                    if rep == 3 { 1.0 } else { 2.0 },
                    1000,
                ));
                runs.push(run("mimalloc", 2, rep, 1.5, 1000));
            }
            runs.push(run("tinymalloc", 4, rep, 1.01, 1000));
            runs.push(run("mimalloc", 4, rep, 1.0, 1000));
        }
        Report::new(
            runs,
            vec![
                ("larson".into(), 1),
                ("larson".into(), 2),
                ("larson".into(), 4),
            ],
            vec!["tinymalloc".into(), "mimalloc".into()],
            "mimalloc".into(),
        )
    }

    #[test]
    fn paired_verdicts_need_enough_rounds_one_way() {
        let r = three_cells();
        let p = |c| r.paired(c, 0).unwrap();
        assert_eq!(
            p(0),
            Paired {
                faster: 5,
                slower: 0
            }
        );
        assert_eq!(p(0).verdict(), Verdict::Faster);
        assert_eq!(
            p(1),
            Paired {
                faster: 1,
                slower: 4
            }
        );
        assert_eq!(p(1).verdict(), Verdict::Noise);
        assert_eq!(p(2).verdict(), Verdict::Slower);
        assert_eq!(
            r.paired(0, 1),
            None,
            "the baseline is not paired with itself"
        );
        let text = r.verdicts();
        assert!(text.contains("larson t=4 (6 of 6)"), "{text}");
        assert!(!text.contains("larson t=2 ("), "{text}");
        assert!(!text.contains("no cell can pass"), "{text}");
        assert!(text.contains("about 0.2 of 3 cells"), "{text}");
        // Three repetitions can never pass.
        assert!(sample().verdicts().contains("no cell can pass"));
        assert_eq!(
            sample().paired(0, 0),
            Some(Paired {
                faster: 3,
                slower: 0
            })
        );
        assert_eq!(sample().paired(0, 0).unwrap().verdict(), Verdict::Noise);
    }

    #[test]
    fn reruns_say_whether_a_verdict_stands() {
        let mut r = three_cells();
        // The faster cell (t=1) and the slower one (t=4), tinymalloc only.
        assert_eq!(r.flagged(), vec![(0, vec![0]), (2, vec![0])]);
        assert!(!r.verdicts().contains("stood"));
        // Rerun: t=4 slower again in 5 of 5 (stands); t=1 faster in 2 of 5
        // only (chance, then).
        for rep in 1..=5 {
            r.confirm.push(run("mimalloc", 4, rep, 1.0, 1000));
            r.confirm.push(run("tinymalloc", 4, rep, 1.2, 1000));
            r.confirm.push(run("mimalloc", 1, rep, 1.0, 1000));
            r.confirm.push(run(
                "tinymalloc",
                1,
                rep,
                if rep <= 2 { 0.9 } else { 1.1 },
                1000,
            ));
        }
        assert_eq!(
            r.rerun(0, 0),
            Some(Paired {
                faster: 2,
                slower: 3
            })
        );
        assert_eq!(r.rerun(2, 0).unwrap().verdict(), Verdict::Slower);
        assert_eq!(r.rerun(1, 0), None, "t=2 was not rerun");
        let text = r.verdicts();
        assert!(
            text.contains("larson t=4 (6 of 6; 5 of 5, stands)"),
            "{text}"
        );
        // One slower verdict of one stood, no faster one of one.
        assert!(text.contains("  1/0  larson t=4"), "{text}");
        // The medians are the main rounds' alone.
        assert_eq!(r.ratios(2, 0), Some((1.01, 1.0)));
        assert_eq!(r.confirm_csv().lines().count(), 21);
        assert!(r.checksum_mismatches().is_empty());
        if let Ok(m) = &mut r.confirm[0].result {
            m.checksum = 9;
        }
        assert_eq!(r.checksum_mismatches().len(), 1, "reruns do the same work");
    }

    #[test]
    fn mismatch_detected() {
        let mut r = sample();
        if let Ok(m) = &mut r.runs[3].result {
            m.checksum = 8;
        }
        let r = Report::new(r.runs, r.cells, r.allocators, r.baseline);
        assert_eq!(r.checksum_mismatches().len(), 1);
    }
}
