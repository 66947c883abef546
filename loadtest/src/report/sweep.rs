//! The sweep's self-contained page: p50 and p99 against the rate, the breaking point marked,
//! and the table of rates.

use std::fmt::Write;

use super::charts::{escape, line_chart, Series};
use super::html::STYLE;
use crate::sweep::Sweep;

/// A sweep as one self-contained HTML page.
pub fn sweep_html(sweep: &Sweep) -> String {
    let points = |value: fn(&crate::sweep::Step) -> f64| -> Vec<(f64, f64)> {
        sweep.steps.iter().map(|s| (s.rate, value(s))).collect()
    };
    let mut series = vec![
        Series {
            name: "p50",
            color: "#2b8a3e",
            points: points(|s| s.load_p50_ms),
        },
        Series {
            name: "p99",
            color: "#e8590c",
            points: points(|s| s.load_p99_ms),
        },
        Series {
            name: "p99 limit",
            color: "#868e96",
            points: vec![
                (0.0, sweep.criteria.p99_ms),
                (
                    sweep.steps.iter().map(|s| s.rate).fold(1.0, f64::max),
                    sweep.criteria.p99_ms,
                ),
            ],
        },
    ];
    let top = sweep
        .steps
        .iter()
        .map(|s| s.load_p99_ms)
        .fold(sweep.criteria.p99_ms, f64::max);
    let broke_label;
    if let Some(rate) = sweep.broke_at {
        broke_label = format!("broke at x{rate}");
        series.push(Series {
            name: &broke_label,
            color: "#c92a2a",
            points: vec![(rate, 0.01), (rate, top)],
        });
    }
    let chart = line_chart(
        "Latency against the rate (worst of débitos, créditos, extratos)",
        "rate (x official)",
        "ms (log)",
        &series,
        true,
    );
    // The load's request names, by name: later rates have no validation phase.
    const NAMES: [&str; 3] = ["débitos", "créditos", "extratos"];
    let mut rows = String::new();
    for s in &sweep.steps {
        let cells: Vec<String> = NAMES
            .iter()
            .map(|name| match s.latencies.iter().find(|l| l.name == *name) {
                Some(l) => format!("{:.2} / {:.2} / {:.1}", l.p50_ms, l.p99_ms, l.max_ms),
                None => "–".to_owned(),
            })
            .collect();
        let _ = write!(
            rows,
            r#"<tr><th>x{rate}</th><td>{n}</td><td>{ko}</td><td>{cells}</td><td>{gen:.1}</td><td class="{class}">{verdict}</td></tr>"#,
            rate = s.rate,
            n = s.requests,
            ko = s.ko,
            cells = cells.join("</td><td>"),
            gen = s.generator_cpu_us_per_request,
            class = if s.held { "good" } else { "bad" },
            verdict = escape(&s.verdict),
        );
    }
    let names = NAMES.join(" p50 / p99 / max ms</th><th>");
    // The table's conclusion, as a sentence.
    let conclusion = sweep.conclusion();
    let headline = format!("{}{}.", conclusion[..1].to_uppercase(), &conclusion[1..]);
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rinha 2024/Q1 load sweep</title>
<style>{STYLE}</style></head><body>
<h1>Rinha de Backend 2024/Q1: load sweep</h1>
<p>Target <code>{target}</code>, {profile}. A rate holds with no KO, a clean (or explained) balance audit and a load p99 of at most {limit} ms. Validations: {validations}.</p>
<p class="{hc}">{headline}</p>
{chart}
<table><tr><th>rate</th><th>requests</th><th>KO</th><th>{names} p50 / p99 / max ms</th><th>generator µs/req</th><th>verdict</th></tr>{rows}</table>
</body></html>
"##,
        target = escape(&sweep.target),
        profile = sweep.profile,
        limit = sweep.criteria.p99_ms,
        validations = escape(sweep.validations),
        hc = if sweep.broke_at.is_some() || sweep.held_up_to.is_none() {
            "bad"
        } else {
            "good"
        },
        names = names,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_has_the_chart_the_breaking_point_and_every_rate() {
        let page = super::sweep_html(&crate::sweep::tests::sample());
        assert!(page.starts_with("<!doctype html>") && page.ends_with("</html>\n"));
        assert_eq!(page.matches("<svg").count(), 1);
        assert!(page.contains("broke at x10") && page.contains("Held up to x5; broke at x10."));
        for rate in ["x1<", "x5<", "x10<"] {
            assert!(page.contains(&format!("<tr><th>{rate}")), "{rate}");
        }
        assert!(page.contains("débitos p50 / p99 / max ms"));
        assert!(!page.contains("<script"), "no script");
    }
}
