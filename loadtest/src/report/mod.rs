//! The three outputs of a run: a Gatling-like text summary, a JSON document of the same
//! numbers (here), and a self-contained HTML page (`html`) whose charts are inline SVG
//! (`charts`: no script, no network, it opens anywhere).

mod charts;
mod html;
mod soak;
mod sweep;

pub use html::html;
pub use soak::soak_html;
pub use sweep::sweep_html;

use std::fmt::Write;

use serde_json::json;

use crate::model::{Options, Outcome};
use crate::stats::{self, Group, Score};

/// The official report's figures for one run.
pub struct Report {
    /// Latency groups: all requests first, then each name.
    pub groups: Vec<Group>,
    /// The official scoring.
    pub score: Score,
    /// KO messages, most frequent first.
    pub failures: Vec<(String, usize)>,
    /// Per second of the run.
    pub seconds: Vec<stats::Second>,
}

impl Report {
    /// The report of `outcome`.
    pub fn new(outcome: &Outcome) -> Report {
        Report {
            groups: stats::groups(&outcome.records),
            score: stats::score(&outcome.records),
            failures: stats::failures(&outcome.records),
            seconds: stats::seconds(&outcome.records),
        }
    }

    /// No KO, and every client's balance audit clean.
    pub fn passed(&self, outcome: &Outcome) -> bool {
        self.groups[0].ko == 0 && outcome.audit.iter().all(|a| a.clean())
    }
}

pub(crate) fn cpu_line(outcome: &Outcome) -> String {
    let per_request_us = outcome.cpu_ms * 1000.0 / outcome.records.len().max(1) as f64;
    format!(
        "load generator: {:.0} ms CPU ({:.1} us per request, {:.1}% of one core); at most {:.1} ms behind schedule",
        outcome.cpu_ms,
        per_request_us,
        outcome.cpu_ms / (outcome.elapsed * 10.0),
        outcome.max_lag_ms
    )
}

/// The report as text, as printed at the end of a run.
pub fn text(outcome: &Outcome, report: &Report, options: &Options) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Rinha de Backend 2024/Q1 simulation against {} (rate x{}, {}): {} requests in {:.1} s",
        options.target,
        options.rate,
        options.profile,
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
            (false, n) if a.explained() => format!(
                "explained: differs by {} cents, within the {n} transactions of unknown outcome",
                a.reported.unwrap_or_default() - a.acknowledged
            ),
            (false, n) => format!(
                "MISMATCH: outside what the {n} transactions of unknown outcome could change"
            ),
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

/// Writes `dir/NAME.json` (pretty) and `dir/NAME.html`, creating `dir`.
pub fn write(
    dir: &std::path::Path,
    name: &str,
    json: &impl serde::Serialize,
    html: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            let json = serde_json::to_string_pretty(json).expect("reports always serialize");
            std::fs::write(dir.join(format!("{name}.json")), json)
        })
        .and_then(|()| std::fs::write(dir.join(format!("{name}.html")), html))
        .map_err(|e| {
            format!(
                "cannot write {name}.json and {name}.html to {}: {e}",
                dir.display()
            )
        })
}

/// Every request of `outcome` to `dir/records.jsonl`, one JSON object a line, in the order
/// answered: `{"name", "start", "latency_ms", "ko", "outcome_unknown"}`.
pub fn write_records(dir: &std::path::Path, outcome: &Outcome) -> Result<(), String> {
    use std::io::Write;
    let path = dir.join("records.jsonl");
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for r in &outcome.records {
            let line = json!({
                "name": r.name.label(), "start": r.start, "latency_ms": r.latency_ms,
                "ko": r.ko, "outcome_unknown": r.outcome_unknown,
            });
            writeln!(out, "{line}")?;
        }
        out.flush()
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The report as JSON (`--json`), for the benchmarks.
pub fn json(outcome: &Outcome, report: &Report, options: &Options) -> serde_json::Value {
    json!({
        "target": options.target,
        "rate": options.rate,
        "profile": options.profile,
        "seed": options.seed,
        "elapsed_seconds": outcome.elapsed,
        "passed": report.passed(outcome),
        "groups": report.groups,
        "score": report.score,
        "failures": report.failures.iter().map(|(m, n)| json!({"message": m, "count": n})).collect::<Vec<_>>(),
        "audit": outcome.audit.iter().map(|a| json!({
            "client": a.client, "acknowledged": a.acknowledged, "reported": a.reported,
            "unknown": a.unknown, "unknown_credits": a.unknown_credits,
            "unknown_debits": a.unknown_debits, "clean": a.clean(), "explained": a.explained()
        })).collect::<Vec<_>>(),
        "generator": {
            "cpu_ms": outcome.cpu_ms,
            "cpu_us_per_request": outcome.cpu_ms * 1000.0 / outcome.records.len().max(1) as f64,
            "max_lag_ms": outcome.max_lag_ms,
        },
        "seconds": report.seconds,
        "connections": outcome.samples,
        "statuses": outcome.statuses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClientAudit, Name, Record, Sample};

    fn outcome() -> Outcome {
        let records = (0..400)
            .map(|i| Record {
                name: Name::ALL[i % 4],
                start: i as f64 / 100.0,
                latency_ms: 0.5 + (i % 7) as f64,
                ko: (i == 7)
                    .then(|| "débitos: status.find.in(200, 422), but actually found 500".into()),
                outcome_unknown: i == 7,
            })
            .collect();
        Outcome {
            records,
            samples: (0..4)
                .map(|t| Sample {
                    t: t as f64,
                    active: t,
                })
                .collect(),
            max_lag_ms: 1.0,
            elapsed: 4.0,
            load_seconds: 4.0,
            cpu_ms: 10.0,
            audit: vec![
                ClientAudit {
                    client: 1,
                    acknowledged: 5,
                    reported: Some(5),
                    unknown: 0,
                    unknown_credits: 0,
                    unknown_debits: 0,
                },
                ClientAudit {
                    client: 2,
                    acknowledged: 7,
                    reported: Some(6),
                    unknown: 1,
                    unknown_credits: 0,
                    unknown_debits: 1,
                },
            ],
            statuses: Default::default(),
        }
    }

    fn options() -> Options {
        Options {
            target: "http://x<y>".into(),
            rate: 1.0,
            profile: crate::schedule::Profile::Official { scale: 0.1 },
            seed: 3,
            progress: false,
            validations: true,
        }
    }

    #[test]
    fn the_html_page_has_every_chart_table_and_verdict() {
        let outcome = outcome();
        let report = Report::new(&outcome);
        let page = html(&outcome, &report, &options());
        assert!(page.starts_with("<!doctype html>") && page.ends_with("</html>\n"));
        assert_eq!(
            page.matches("<svg").count(),
            4,
            "percentiles, throughput, connections, histogram"
        );
        for legend in ["p50", "p95", "p99", "max", ">OK<", ">KO<", "active"] {
            assert!(page.contains(legend), "{legend}");
        }
        for name in ["validações", "débitos", "créditos", "extratos"] {
            assert!(page.contains(&format!("<tr><th>{name}</th>")), "{name}");
        }
        assert!(page.contains("found 500"), "the KO message");
        assert!(
            page.contains("differs") && page.contains("clean"),
            "audit verdicts"
        );
        assert!(
            page.contains(">FAILED<"),
            "a KO and a dirty audit fail the run"
        );
        assert!(
            page.contains("http://x&lt;y&gt;") && !page.contains("x<y>"),
            "escaped"
        );
        assert!(!page.contains("<script"), "no script");
    }

    #[test]
    fn text_and_json_carry_the_same_counts() {
        let outcome = outcome();
        let report = Report::new(&outcome);
        let text = text(&outcome, &report, &options());
        assert!(text.contains("débitos"));
        let json = json(&outcome, &report, &options());
        assert_eq!(json["groups"][0]["count"], 400);
        assert_eq!(json["audit"][1]["clean"], false);
    }
}
