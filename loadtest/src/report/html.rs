//! The self-contained HTML report.

use std::fmt::Write;

use super::charts::{escape, histogram, line_chart, Series};
use super::{cpu_line, Report};
use crate::model::{Options, Outcome};
use crate::stats;

/// The style of every page the reports write (the run's and the sweep's).
pub(super) const STYLE: &str = "
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
th{text-align:left}.bad{color:#c92a2a;font-weight:bold}.good{color:#2b8a3e;font-weight:bold}
svg{width:100%;height:auto;margin:8px 0 16px}.axis{stroke:#444}.grid{stroke:#eee}
.tick{font-size:10px;fill:#555}.title{font-size:13px;font-weight:bold}.bar{fill:#1971c2}
";

/// The run as one self-contained HTML page, with charts.
pub fn html(outcome: &Outcome, report: &Report, options: &Options) -> String {
    let secs = &report.seconds;
    // One latency statistic over the seconds that had requests.
    let latency = |name, color, value: fn(&stats::Second) -> f64| Series {
        name,
        color,
        points: secs
            .iter()
            .filter(|s| s.ok + s.ko > 0)
            .map(|s| (s.t as f64, value(s)))
            .collect(),
    };
    let percentiles = line_chart(
        "Response time percentiles per second",
        "seconds",
        "ms (log)",
        &[
            latency("p50", "#2b8a3e", |s| s.p50_ms),
            latency("p95", "#1971c2", |s| s.p95_ms),
            latency("p99", "#e8590c", |s| s.p99_ms),
            latency("max", "#c92a2a", |s| s.max_ms),
        ],
        true,
    );
    let throughput = line_chart(
        "Requests per second (by start time)",
        "seconds",
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
        "seconds",
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
<style>{STYLE}</style></head><body>
<h1>Rinha de Backend 2024/Q1: load test report</h1>
<p>Target <code>{target}</code>, rate x{rate}, {profile}, seed {seed}: {n} requests in {elapsed:.1} s.</p>
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
        profile = options.profile,
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
