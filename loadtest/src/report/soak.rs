//! The soak's self-contained page: latency, memory, descriptors and storage over the run,
//! a table of each service's first, last and highest values, and the verdict.

use std::fmt::Write;

use super::charts::{escape, line_chart, Series};
use super::html::STYLE;
use crate::soak::{Sample, Soak, Usage};

/// One colour per line, in order (services, then relations).
const COLORS: [&str; 8] = [
    "#1971c2", "#2b8a3e", "#e8590c", "#862e9c", "#c92a2a", "#0c8599", "#5c940d", "#868e96",
];

/// A soak as one self-contained HTML page.
pub fn soak_html(soak: &Soak) -> String {
    let minutes = |t: f64| t / 60.0;
    let services = soak.services();
    // One line per service of one usage figure.
    let per_service = |title: &str, unit: &str, value: fn(&Usage) -> f64| {
        let series: Vec<Series> = services
            .iter()
            .zip(COLORS.iter().cycle())
            .map(|(service, color)| Series {
                name: service,
                color,
                points: soak
                    .samples
                    .iter()
                    .filter_map(|s| Some((minutes(s.t), value(s.services.get(*service)?))))
                    .collect(),
            })
            .collect();
        line_chart(title, "minutes", unit, &series, false)
    };
    let window = |name, color, value: fn(&crate::soak::Window) -> f64| Series {
        name,
        color,
        points: soak
            .windows
            .iter()
            .map(|w| (minutes(w.t), value(w)))
            .collect(),
    };
    let latency = line_chart(
        "Response time per 10 s window",
        "minutes",
        "ms (log)",
        &[
            window("p50", "#2b8a3e", |w| w.p50_ms),
            window("p99", "#e8590c", |w| w.p99_ms),
        ],
        true,
    );
    let requests = line_chart(
        "Requests per 10 s window",
        "minutes",
        "requests",
        &[
            window("sent", "#1971c2", |w| w.requests as f64),
            window("KO", "#c92a2a", |w| w.ko as f64),
        ],
        false,
    );
    let anon = per_service("Private memory (RssAnon) per service", "MB", |u| u.anon_mb);
    let rss = per_service("Resident memory (RSS) per service", "MB", |u| u.rss_mb);
    let descriptors = per_service("Open descriptors per service", "descriptors", |u| {
        u.descriptors as f64
    });
    let relations: Vec<&String> = soak
        .samples
        .last()
        .map(|s| s.storage.keys().collect())
        .unwrap_or_default();
    let storage_series: Vec<Series> = relations
        .iter()
        .zip(COLORS.iter().cycle())
        .map(|(relation, color)| Series {
            name: relation,
            color,
            points: soak
                .samples
                .iter()
                .filter_map(|s| Some((minutes(s.t), *s.storage.get(*relation)? as f64 / 1e6)))
                .collect(),
        })
        .collect();
    let storage = line_chart(
        "PostgreSQL storage (tables, indexes, WAL)",
        "minutes",
        "MB",
        &storage_series,
        false,
    );

    let mut rows = String::new();
    let (first, last) = (soak.samples.first(), soak.samples.last());
    for service in &services {
        let at = |s: Option<&Sample>| s.and_then(|s| s.services.get(*service)).cloned();
        let highest = |value: fn(&Usage) -> f64| {
            soak.samples
                .iter()
                .filter_map(|s| s.services.get(*service).map(value))
                .fold(0.0, f64::max)
        };
        let (a, b) = (at(first).unwrap_or_default(), at(last).unwrap_or_default());
        let _ = write!(
            rows,
            "<tr><th>{}</th><td>{:.1} / {:.1} / {:.1}</td><td>{:.1} / {:.1} / {:.1}</td><td>{} / {} / {}</td></tr>",
            escape(service),
            a.anon_mb,
            b.anon_mb,
            highest(|u| u.anon_mb),
            a.rss_mb,
            b.rss_mb,
            highest(|u| u.rss_mb),
            a.descriptors,
            b.descriptors,
            highest(|u| u.descriptors as f64),
        );
    }
    let verdict = if soak.verdict.passed {
        r#"<p class="good">Passed: nothing keeps growing, the p99 held, no KO, the audit is clean.</p>"#.to_owned()
    } else {
        let problems: Vec<String> = soak
            .verdict
            .problems
            .iter()
            .map(|p| format!("<li>{}</li>", escape(p)))
            .collect();
        format!(
            r#"<p class="bad">Failed:</p><ul class="bad">{}</ul>"#,
            problems.concat()
        )
    };
    let verdict = if soak.judges_growth() {
        verdict
    } else {
        format!("{verdict}<p>{}</p>", crate::soak::TOO_SHORT)
    };
    let groups: String = soak
        .groups
        .iter()
        .map(|g| {
            format!(
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td></tr>",
                escape(&g.name),
                g.count,
                g.ko,
                g.p50_ms,
                g.p99_ms,
                g.max_ms
            )
        })
        .collect();
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rinha 2024/Q1 soak</title>
<style>{STYLE}</style></head><body>
<h1>Rinha de Backend 2024/Q1: soak</h1>
<p>Target <code>{target}</code>: the official peak mix at x{rate} held for {minutes:.0} minutes, {requests} requests, sampled every 10 s.</p>
{verdict}
<p>Tables and indexes grew {per_tx:.0} bytes per transaction: {per_hour:.0} MB per hour at the official peak (x1), {per_day:.1} GB a day. The WAL, recycled at checkpoints, reached {wal:.0} MB at most.</p>
{latency}{requests_chart}{anon}{rss}{descriptors}{storage}
<table><tr><th>service</th><th>private MB first / last / highest</th><th>RSS MB first / last / highest</th><th>descriptors first / last / highest</th></tr>{rows}</table>
<table><tr><th>requests</th><th>count</th><th>KO</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>{groups}</table>
</body></html>
"##,
        target = escape(&soak.target),
        rate = soak.rate,
        minutes = soak.seconds / 60.0,
        requests = soak.requests,
        per_tx = soak.verdict.storage_bytes_per_transaction,
        per_hour = soak.storage_mb_per_hour_at_1x,
        per_day = soak.storage_mb_per_hour_at_1x * 24.0 / 1000.0,
        requests_chart = requests,
        wal = soak.wal_max_mb,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_has_every_chart_the_verdict_and_every_service() {
        let soak = crate::soak::tests::passed();
        assert!(soak.verdict.passed, "{:?}", soak.verdict.problems);
        let page = super::soak_html(&soak);
        assert!(page.starts_with("<!doctype html>") && page.ends_with("</html>\n"));
        assert_eq!(page.matches("<svg").count(), 6);
        assert!(page.contains("<code>http://x&lt;y&gt;</code>"));
        assert!(page.contains(r#"<p class="good">Passed"#));
        assert!(page.contains("<tr><th>api1</th>"));
        assert!(!page.contains("<script"), "no script");
    }
}
