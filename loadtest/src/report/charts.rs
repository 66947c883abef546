//! Inline SVG charts: line charts of series over time, and the latency histogram.

use std::fmt::Write;

use crate::model::Outcome;

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 260.0;
const PAD: f64 = 50.0;

/// One line of a chart: (x, y) points in one colour, named in the legend.
pub(super) struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// A line chart; `log` draws the y axis in powers of ten (for latencies).
pub(super) fn line_chart(
    title: &str,
    x_unit: &str,
    y_unit: &str,
    series: &[Series],
    log: bool,
) -> String {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_of = |v: f64| if log { v.max(0.01).log10() } else { v };
    let (y_min, y_max) = if log {
        let top = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(1.0, f64::max);
        (-2.0, top.log10().ceil().max(0.0))
    } else {
        (
            0.0,
            series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(1.0, f64::max)
                * 1.1,
        )
    };
    let px = |x: f64| PAD + x / x_max * (WIDTH - 2.0 * PAD);
    let py = |y: f64| {
        HEIGHT - PAD + (y_of(y) - y_min) / (y_max - y_min).max(1e-9) * -(HEIGHT - 2.0 * PAD)
    };
    let mut svg = format!(
        r##"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}"><text x="{PAD}" y="20" class="title">{t}</text>"##,
        t = escape(title)
    );
    // Axes and y ticks.
    let _ = write!(
        svg,
        r##"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" class="axis"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" class="axis"/>"##,
        b = HEIGHT - PAD,
        r = WIDTH - PAD
    );
    let ticks: Vec<f64> = if log {
        (y_min as i32..=y_max as i32)
            .map(|e| 10f64.powi(e))
            .collect()
    } else {
        (0..=4).map(|i| y_max * f64::from(i) / 4.0).collect()
    };
    for tick in ticks {
        let y = py(tick);
        let _ = write!(
            svg,
            r##"<line x1="{PAD}" y1="{y:.1}" x2="{r}" y2="{y:.1}" class="grid"/><text x="{l}" y="{y:.1}" class="tick" text-anchor="end">{tick}</text>"##,
            r = WIDTH - PAD,
            l = PAD - 4.0,
            tick = format_tick(tick)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{x}" y="{y}" class="tick" text-anchor="end">{xu}</text><text x="4" y="{uy}" class="tick">{u}</text>"##,
        x = WIDTH - PAD,
        y = HEIGHT - PAD + 28.0,
        uy = PAD - 12.0,
        xu = escape(x_unit),
        u = escape(y_unit)
    );
    for step in 0..=5 {
        let x = x_max * f64::from(step) / 5.0;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" class="tick" text-anchor="middle">{:.*}</text>"##,
            px(x),
            HEIGHT - PAD + 14.0,
            usize::from(x_max < 10.0), // a small axis (rates) needs its tenths
            x
        );
    }
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{p}"/>"##,
            c = s.color,
            p = points.join(" ")
        );
        let lx = PAD + 10.0 + i as f64 * 130.0;
        let _ = write!(
            svg,
            r##"<rect x="{lx}" y="{ly}" width="12" height="4" fill="{c}"/><text x="{tx}" y="{ty}" class="tick">{n}</text>"##,
            ly = HEIGHT - 14.0,
            c = s.color,
            tx = lx + 16.0,
            ty = HEIGHT - 9.0,
            n = escape(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn format_tick(value: f64) -> String {
    if value >= 1.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// Latency histogram over log-spaced buckets.
pub(super) fn histogram(outcome: &Outcome) -> String {
    const EDGES: [f64; 14] = [
        0.2,
        0.5,
        1.0,
        2.0,
        5.0,
        10.0,
        20.0,
        50.0,
        100.0,
        250.0,
        500.0,
        1200.0,
        5000.0,
        f64::INFINITY,
    ];
    let mut counts = [0usize; 14];
    for record in &outcome.records {
        counts[EDGES.iter().position(|e| record.latency_ms < *e).unwrap()] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1) as f64;
    let bar = (WIDTH - 2.0 * PAD) / EDGES.len() as f64;
    let mut svg = format!(
        r##"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="latency distribution"><text x="{PAD}" y="20" class="title">Latency distribution (all requests)</text>"##
    );
    for (i, count) in counts.iter().enumerate() {
        let h = *count as f64 / top.max(1.0) * (HEIGHT - 2.0 * PAD);
        let x = PAD + i as f64 * bar;
        let label = if i == 0 {
            "<0.2".to_owned()
        } else if EDGES[i].is_infinite() {
            format!(">={}", EDGES[i - 1])
        } else {
            format!("<{}", EDGES[i])
        };
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" class="bar"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{count}</text><text x="{:.1}" y="{}" class="tick" text-anchor="middle">{label}</text>"##,
            x + 2.0,
            HEIGHT - PAD - h,
            bar - 4.0,
            x + bar / 2.0,
            HEIGHT - PAD - h - 3.0,
            x + bar / 2.0,
            HEIGHT - PAD + 14.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" class="tick" text-anchor="end">ms</text></svg>"##,
        WIDTH - PAD,
        HEIGHT - PAD + 28.0
    );
    svg
}
