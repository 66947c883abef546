//! The soak in a few lines, printed at the end of a run.

use super::{Sample, Soak, TOO_SHORT};

/// The soak in a few lines: verdict, each service's first and last values, storage growth.
pub fn text(soak: &Soak) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "soak of {} at x{} for {:.0} min: {} requests, {} full windows\n",
        soak.target,
        soak.rate,
        soak.seconds / 60.0,
        soak.requests,
        soak.windows.len()
    );
    let (first, last) = (soak.samples.first(), soak.samples.last());
    for service in soak.services() {
        let at = |s: Option<&Sample>| {
            s.and_then(|s| s.services.get(service))
                .cloned()
                .unwrap_or_default()
        };
        let (a, b) = (at(first), at(last));
        let _ = writeln!(
            out,
            "  {service:<5} private {:6.1} -> {:6.1} MB  rss {:6.1} -> {:6.1} MB  descriptors {:4} -> {:4}",
            a.anon_mb, b.anon_mb, a.rss_mb, b.rss_mb, a.descriptors, b.descriptors
        );
    }
    if let (Some(a), Some(b)) = (soak.windows.first(), soak.windows.last()) {
        let _ = writeln!(
            out,
            "  p50/p99 first window {:.2}/{:.2} ms, last {:.2}/{:.2} ms",
            a.p50_ms, a.p99_ms, b.p50_ms, b.p99_ms
        );
    }
    let _ = writeln!(
        out,
        "  storage: tables and indexes {:.0} bytes per transaction, {:.0} MB per hour at x1; WAL at most {:.0} MB",
        soak.verdict.storage_bytes_per_transaction, soak.storage_mb_per_hour_at_1x, soak.wal_max_mb
    );
    if !soak.judges_growth() {
        out.push_str(TOO_SHORT);
        out.push('\n');
    }
    if soak.verdict.passed {
        out.push_str("passed\n");
    } else {
        for problem in &soak.verdict.problems {
            let _ = writeln!(out, "FAILED: {problem}");
        }
    }
    out
}
