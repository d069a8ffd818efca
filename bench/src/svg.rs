//! A hand-written SVG chart of the ratios to the baseline: grouped bars per
//! (workload, threads) cell, one bar per allocator, on a log scale with the
//! 1.0 line marked; one panel for time, one for peak RSS.

use crate::report::Report;
use std::fmt::Write as _;

const BAR: f64 = 8.0;
const GAP: f64 = 10.0;
const LEFT: f64 = 70.0;
const LEGEND: f64 = 170.0;
const TOP: f64 = 40.0;
const PLOT_H: f64 = 240.0;
const LABELS_H: f64 = 100.0;
const PANEL_H: f64 = TOP + PLOT_H + LABELS_H;

/// Colour of an allocator's bars.
fn color(name: &str, i: usize) -> &'static str {
    const OTHERS: [&str; 5] = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
    match name {
        "tinymalloc" => "#d62728",
        "system" => "#1f77b4",
        "jemalloc" => "#2ca02c",
        "mimalloc" => "#ff7f0e",
        _ => OTHERS[i % OTHERS.len()],
    }
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One panel: `values[cell][series]`, drawn at vertical offset `y0`.
fn panel(
    out: &mut String,
    y0: f64,
    title: &str,
    labels: &[String],
    series: &[(usize, &str)],
    values: &[Vec<Option<f64>>],
) {
    let group = series.len() as f64 * BAR + GAP;
    let width = labels.len() as f64 * group;
    // Symmetric log2 range covering the data: at least 0.5x..2x, at most
    // 1/16x..16x (bars beyond are clipped; their tooltip has the value).
    let lim = values
        .iter()
        .flatten()
        .flatten()
        .map(|v| v.log2().abs().ceil())
        .fold(1.0f64, f64::max)
        .min(4.0);
    let mid = y0 + TOP + PLOT_H / 2.0;
    let y = |v: f64| mid - (v.log2().clamp(-lim, lim) / lim) * (PLOT_H / 2.0);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        y0 + 22.0,
        esc(title)
    );
    for k in -(lim as i32)..=(lim as i32) {
        let v = 2f64.powi(k);
        let yy = y(v);
        let (stroke, w) = if k == 0 { ("#000", 1.5) } else { ("#ddd", 1.0) };
        let _ = writeln!(
            out,
            r#"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{stroke}" stroke-width="{w}"/>"#,
            LEFT + width
        );
        let label = if v >= 1.0 {
            format!("{v}x")
        } else {
            format!("1/{}x", 1.0 / v)
        };
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{label}</text>"#,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text transform="translate(16,{mid:.1}) rotate(-90)" font-size="12" text-anchor="middle">ratio (log scale)</text>"#
    );
    let mut last_workload = "";
    for (c, label) in labels.iter().enumerate() {
        let x0 = LEFT + c as f64 * group;
        let workload = label.split(' ').next().unwrap_or("");
        if workload != last_workload && c > 0 {
            let _ = writeln!(
                out,
                r##"<line x1="{x0}" x2="{x0}" y1="{}" y2="{}" stroke="#bbb" stroke-dasharray="3,3"/>"##,
                y0 + TOP,
                y0 + TOP + PLOT_H
            );
        }
        last_workload = workload;
        for (j, (ci, name)) in series.iter().enumerate() {
            let Some(v) = values[c][j] else { continue };
            let (ya, yb) = (y(1.0), y(v));
            let _ = writeln!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{}" height="{:.1}" fill="{}"><title>{} {}: {v:.3}x</title></rect>"#,
                x0 + GAP / 2.0 + j as f64 * BAR,
                ya.min(yb),
                BAR - 1.0,
                (ya - yb).abs().max(0.5),
                color(name, *ci),
                esc(label),
                esc(name)
            );
        }
        let lx = x0 + group / 2.0;
        let ly = y0 + TOP + PLOT_H + 10.0;
        let _ = writeln!(
            out,
            r#"<text transform="translate({lx:.1},{ly:.1}) rotate(-60)" font-size="10" text-anchor="end">{}</text>"#,
            esc(label)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">workload, thread count</text>"#,
        LEFT + width / 2.0,
        y0 + PANEL_H - 6.0
    );
}

/// The whole chart for a report.
pub fn chart(report: &Report) -> String {
    let base = report.allocators.iter().position(|a| *a == report.baseline);
    let series: Vec<(usize, &str)> = report
        .allocators
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != base)
        .map(|(i, a)| (i, a.as_str()))
        .collect();
    let labels: Vec<String> = report
        .cells
        .iter()
        .map(|(w, t)| format!("{w} t={t}"))
        .collect();
    let pick = |time: bool| -> Vec<Vec<Option<f64>>> {
        (0..report.cells.len())
            .map(|c| {
                series
                    .iter()
                    .map(|(a, _)| report.ratios(c, *a).map(|(t, r)| if time { t } else { r }))
                    .collect()
            })
            .collect()
    };
    let group = series.len() as f64 * BAR + GAP;
    let width = LEFT + labels.len() as f64 * group + LEGEND;
    let height = 2.0 * PANEL_H;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let b = esc(&report.baseline);
    panel(
        &mut s,
        0.0,
        &format!("Time relative to {b} (median; lower is better)"),
        &labels,
        &series,
        &pick(true),
    );
    panel(
        &mut s,
        PANEL_H,
        &format!("Peak RSS relative to {b} (median; lower is better)"),
        &labels,
        &series,
        &pick(false),
    );
    let lx = width - LEGEND + 20.0;
    let _ = writeln!(
        s,
        r#"<text x="{lx}" y="{}" font-size="12" font-weight="bold">allocator</text>"#,
        TOP + 10.0
    );
    for (j, (ci, name)) in series.iter().enumerate() {
        let ly = TOP + 26.0 + j as f64 * 18.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{ly}" font-size="12">{}</text>"#,
            ly - 10.0,
            color(name, *ci),
            lx + 18.0,
            esc(name)
        );
    }
    let ly = TOP + 26.0 + series.len() as f64 * 18.0;
    let _ = writeln!(
        s,
        r#"<text x="{lx}" y="{ly}" font-size="12">{b} = 1.0</text><text x="{lx}" y="{}" font-size="12">(black line)</text>"#,
        ly + 16.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Measured, Run};

    #[test]
    fn chart_has_bars_legend_and_baseline() {
        let mk = |a: &str, secs: f64| Run {
            workload: "larson".into(),
            allocator: a.into(),
            threads: 2,
            rep: 1,
            result: Ok(Measured {
                seconds: secs,
                peak_rss_kib: 1000,
                page_faults: 250,
                ops: 1,
                checksum: 1,
            }),
        };
        let r = Report::new(
            vec![
                mk("tinymalloc", 0.5),
                mk("mimalloc", 1.0),
                mk("x<y>.so", 3.0),
            ],
            vec![("larson".into(), 2)],
            vec!["tinymalloc".into(), "mimalloc".into(), "x<y>.so".into()],
            "mimalloc".into(),
        );
        let svg = chart(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count(), 2 * 2 + 2); // 2 bars x 2 panels + 2 legend keys
        assert!(svg.contains("larson t=2 tinymalloc: 0.500x"));
        assert!(svg.contains("x&lt;y&gt;.so"));
        assert!(svg.contains("mimalloc = 1.0"));
        assert!(!svg.contains("NaN"));
    }
}
