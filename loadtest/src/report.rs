//! The three outputs of a run: a Gatling-like text summary, a JSON document of the same
//! numbers, and a self-contained HTML page whose charts are inline SVG (no script, no
//! network: it opens anywhere).

use std::fmt::Write;

use serde_json::json;

use crate::simulation::{Options, Outcome};
use crate::stats::{self, Group, Score};

pub struct Report {
    pub groups: Vec<Group>,
    pub score: Score,
    pub failures: Vec<(String, usize)>,
    pub seconds: Vec<stats::Second>,
}

impl Report {
    pub fn new(outcome: &Outcome) -> Report {
        Report {
            groups: stats::groups(&outcome.records),
            score: stats::score(&outcome.records),
            failures: stats::failures(&outcome.records),
            seconds: stats::seconds(&outcome.records),
        }
    }

    pub fn passed(&self, outcome: &Outcome) -> bool {
        self.groups[0].ko == 0 && outcome.audit.iter().all(|a| a.clean())
    }
}

fn cpu_line(outcome: &Outcome) -> String {
    let per_request_us = outcome.cpu_ms * 1000.0 / outcome.records.len().max(1) as f64;
    format!(
        "load generator: {:.0} ms CPU ({:.1} us per request, {:.1}% of one core); at most {:.1} ms behind schedule",
        outcome.cpu_ms,
        per_request_us,
        outcome.cpu_ms / (outcome.elapsed * 10.0),
        outcome.max_lag_ms
    )
}

pub fn text(outcome: &Outcome, report: &Report, options: &Options) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Rinha de Backend 2024/Q1 simulation against {} (rate x{}, scale x{}): {} requests in {:.1} s",
        options.target,
        options.rate,
        options.scale,
        outcome.records.len(),
        outcome.elapsed
    );
    let _ = writeln!(
        out,
        "\n{:<13}{:>7}{:>7}{:>6}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>8}{:>11}{:>8}",
        "ms",
        "count",
        "OK",
        "KO",
        "min",
        "p50",
        "p75",
        "p95",
        "p99",
        "max",
        "<250",
        "250-1200",
        ">=1200"
    );
    for g in &report.groups {
        let _ = writeln!(
            out,
            "{:<13}{:>7}{:>7}{:>6}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>8}{:>11}{:>8}",
            g.name,
            g.count,
            g.ok,
            g.ko,
            g.min_ms,
            g.p50_ms,
            g.p75_ms,
            g.p95_ms,
            g.p99_ms,
            g.max_ms,
            g.under_250,
            g.from_250_to_1200,
            g.over_1200
        );
    }
    if !report.failures.is_empty() {
        let _ = writeln!(out, "\nKO messages:");
        for (message, count) in report.failures.iter().take(20) {
            let _ = writeln!(out, "{count:>8}  {message}");
        }
    }
    let s = &report.score;
    let _ = writeln!(
        out,
        "\nscore: {:.2}% OK under 250 ms -> SLA fine USD {:.2}; {} inconsistencies -> fine USD {:.2}; payout USD {:.2}",
        s.percent_under_250, s.sla_fine, s.inconsistencies, s.inconsistency_fine, s.payout
    );
    let _ = writeln!(out, "audit:");
    for a in &outcome.audit {
        let verdict = match (a.clean(), a.unknown) {
            (true, _) => "clean".to_owned(),
            (false, 0) => match a.reported {
                Some(r) => format!(
                    "MISMATCH: {} cents {}",
                    (r - a.acknowledged).abs(),
                    if r > a.acknowledged {
                        "appeared (duplicated or unacknowledged)"
                    } else {
                        "lost"
                    }
                ),
                None => "MISMATCH: no readable saldo.total".to_owned(),
            },
            (false, n) => {
                format!("inconclusive: differs, with {n} transactions of unknown outcome")
            }
        };
        let reported = a.reported.map_or("?".into(), |r| r.to_string());
        let _ = writeln!(
            out,
            "  client {}: acknowledged {:>10}, reported {:>10}: {verdict}",
            a.client, a.acknowledged, reported
        );
    }
    let _ = writeln!(out, "{}", cpu_line(outcome));
    let _ = writeln!(
        out,
        "{}",
        if report.passed(outcome) {
            "PASSED: every check OK and the audit clean"
        } else {
            "FAILED"
        }
    );
    out
}

pub fn json(outcome: &Outcome, report: &Report, options: &Options) -> serde_json::Value {
    json!({
        "target": options.target,
        "rate": options.rate,
        "scale": options.scale,
        "seed": options.seed,
        "elapsed_seconds": outcome.elapsed,
        "passed": report.passed(outcome),
        "groups": report.groups,
        "score": report.score,
        "failures": report.failures.iter().map(|(m, n)| json!({"message": m, "count": n})).collect::<Vec<_>>(),
        "audit": outcome.audit.iter().map(|a| json!({
            "client": a.client, "acknowledged": a.acknowledged, "reported": a.reported,
            "unknown": a.unknown, "clean": a.clean()
        })).collect::<Vec<_>>(),
        "generator": {
            "cpu_ms": outcome.cpu_ms,
            "cpu_us_per_request": outcome.cpu_ms * 1000.0 / outcome.records.len().max(1) as f64,
            "max_lag_ms": outcome.max_lag_ms,
        },
        "seconds": report.seconds,
        "connections": outcome.samples,
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 260.0;
const PAD: f64 = 50.0;

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// A line chart; `log` draws the y axis in powers of ten (for latencies).
fn line_chart(title: &str, y_unit: &str, series: &[Series], log: bool) -> String {
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
        r##"<text x="{x}" y="{y}" class="tick" text-anchor="end">seconds</text><text x="4" y="{uy}" class="tick">{u}</text>"##,
        x = WIDTH - PAD,
        y = HEIGHT - PAD + 28.0,
        uy = PAD - 12.0,
        u = escape(y_unit)
    );
    for step in 0..=5 {
        let x = x_max * f64::from(step) / 5.0;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" class="tick" text-anchor="middle">{:.0}</text>"##,
            px(x),
            HEIGHT - PAD + 14.0,
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
fn histogram(outcome: &Outcome) -> String {
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

pub fn html(outcome: &Outcome, report: &Report, options: &Options) -> String {
    let secs = &report.seconds;
    let percentiles = line_chart(
        "Response time percentiles per second",
        "ms (log)",
        &[
            Series {
                name: "p50",
                color: "#2b8a3e",
                points: secs
                    .iter()
                    .filter(|s| s.ok + s.ko > 0)
                    .map(|s| (s.t as f64, s.p50_ms))
                    .collect(),
            },
            Series {
                name: "p95",
                color: "#1971c2",
                points: secs
                    .iter()
                    .filter(|s| s.ok + s.ko > 0)
                    .map(|s| (s.t as f64, s.p95_ms))
                    .collect(),
            },
            Series {
                name: "p99",
                color: "#e8590c",
                points: secs
                    .iter()
                    .filter(|s| s.ok + s.ko > 0)
                    .map(|s| (s.t as f64, s.p99_ms))
                    .collect(),
            },
            Series {
                name: "max",
                color: "#c92a2a",
                points: secs
                    .iter()
                    .filter(|s| s.ok + s.ko > 0)
                    .map(|s| (s.t as f64, s.max_ms))
                    .collect(),
            },
        ],
        true,
    );
    let throughput = line_chart(
        "Requests per second (by start time)",
        "req/s",
        &[
            Series {
                name: "OK",
                color: "#2b8a3e",
                points: secs.iter().map(|s| (s.t as f64, s.ok as f64)).collect(),
            },
            Series {
                name: "KO",
                color: "#c92a2a",
                points: secs.iter().map(|s| (s.t as f64, s.ko as f64)).collect(),
            },
        ],
        false,
    );
    let connections = line_chart(
        "Open connections",
        "connections",
        &[Series {
            name: "active",
            color: "#5f3dc4",
            points: outcome
                .samples
                .iter()
                .map(|s| (s.t, s.active as f64))
                .collect(),
        }],
        false,
    );
    let mut rows = String::new();
    for g in &report.groups {
        let _ = write!(
            rows,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&g.name), g.count, g.ok, if g.ko > 0 { "bad" } else { "" }, g.ko, g.min_ms, g.p50_ms, g.p75_ms, g.p95_ms, g.p99_ms, g.max_ms, g.under_250, g.from_250_to_1200, g.over_1200
        );
    }
    let failures: String = report
        .failures
        .iter()
        .take(50)
        .map(|(m, n)| format!("<tr><td>{n}</td><td>{}</td></tr>", escape(m)))
        .collect();
    let audit: String = outcome
        .audit
        .iter()
        .map(|a| {
            format!(
                "<tr><th>client {}</th><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                a.client,
                a.acknowledged,
                a.reported.map_or("?".into(), |r| r.to_string()),
                a.unknown,
                if a.clean() { "" } else { "bad" },
                if a.clean() { "clean" } else { "differs" }
            )
        })
        .collect();
    let s = &report.score;
    let verdict = if report.passed(outcome) {
        ("good", "PASSED: every check OK and the audit clean")
    } else {
        ("bad", "FAILED")
    };
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rinha 2024/Q1 load test report</title>
<style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}}
table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}
th{{text-align:left}}.bad{{color:#c92a2a;font-weight:bold}}.good{{color:#2b8a3e;font-weight:bold}}
svg{{width:100%;height:auto;margin:8px 0 16px}}.axis{{stroke:#444}}.grid{{stroke:#eee}}
.tick{{font-size:10px;fill:#555}}.title{{font-size:13px;font-weight:bold}}.bar{{fill:#1971c2}}
</style></head><body>
<h1>Rinha de Backend 2024/Q1: load test report</h1>
<p>Target <code>{target}</code>, rate x{rate}, scale x{scale}, seed {seed}: {n} requests in {elapsed:.1} s.</p>
<p class="{vc}">{vt}</p>
<h2>Score (official contract)</h2>
<table><tr><th>OK under 250 ms</th><td>{pct:.2}%</td></tr><tr><th>SLA fine</th><td>USD {sla:.2}</td></tr>
<tr><th>Inconsistencies</th><td>{inc} (USD {incf:.2})</td></tr><tr><th>Payout</th><td>USD {pay:.2}</td></tr></table>
<h2>Requests (ms)</h2>
<table><tr><th>name</th><th>count</th><th>OK</th><th>KO</th><th>min</th><th>p50</th><th>p75</th><th>p95</th><th>p99</th><th>max</th><th>&lt;250</th><th>250–1200</th><th>&ge;1200</th></tr>{rows}</table>
{percentiles}
{throughput}
{connections}
{histogram}
<h2>KO messages</h2>
<table><tr><th>count</th><th>request: first failed check</th></tr>{failures}</table>
<h2>Balance audit</h2>
<p>Per client: the credits minus debits the API acknowledged with 200, against the final <code>saldo.total</code>.</p>
<table><tr><th>client</th><th>acknowledged</th><th>reported</th><th>unknown outcome</th><th>verdict</th></tr>{audit}</table>
<p>{cpu}</p>
</body></html>
"##,
        target = escape(&options.target),
        rate = options.rate,
        scale = options.scale,
        seed = options.seed,
        n = outcome.records.len(),
        elapsed = outcome.elapsed,
        vc = verdict.0,
        vt = verdict.1,
        pct = s.percent_under_250,
        sla = s.sla_fine,
        inc = s.inconsistencies,
        incf = s.inconsistency_fine,
        pay = s.payout,
        histogram = histogram(outcome),
        cpu = escape(&cpu_line(outcome)),
    )
}
