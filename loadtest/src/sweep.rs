//! `loadtest --sweep`: the official profile at several rates in turn against the same stack,
//! up to the first rate it does not hold. It answers the question a clean run leaves open:
//! how much headroom is there.
//!
//! Every rate must start from the same state, and the validation phase (A–F) expects a fresh
//! stack (client 1 at balance 0). So the validations run only with the first rate; the later
//! rates run the load phases alone and audit each client from its balance at their start.

use serde::Serialize;

use crate::model::{Name, Options, Outcome};
use crate::report::Report;
use crate::schedule::Profile;
use crate::simulation;

/// What a rate must do to hold.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Criteria {
    /// The worst p99 of débitos, créditos and extratos may not exceed this.
    pub p99_ms: f64,
}

/// One request name's latencies at one rate.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// The request name.
    pub name: String,
    /// Requests.
    pub count: usize,
    /// Of those, failed a check.
    pub ko: usize,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// One rate of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Multiple of the official rate.
    pub rate: f64,
    /// Requests sent.
    pub requests: usize,
    /// Of those, failed a check.
    pub ko: usize,
    /// The worst p50 and p99 of the load's request names (the validations' cold requests
    /// left out).
    pub load_p50_ms: f64,
    /// The worst p99 of the load's request names.
    pub load_p99_ms: f64,
    /// Per request name.
    pub latencies: Vec<Latency>,
    /// Every balance agrees with what was acknowledged (or with some outcome of the
    /// transactions whose outcome is unknown).
    pub audit_explained: bool,
    /// The generator's own CPU time.
    pub generator_cpu_ms: f64,
    /// The generator's CPU per request.
    pub generator_cpu_us_per_request: f64,
    /// Whether the rate held (no KO, p99 within the criteria, the audit explained).
    pub held: bool,
    /// Why it did not hold, in words.
    pub verdict: String,
}

/// A sweep: rates in order until one does not hold.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// host:port swept.
    pub target: String,
    /// The load profile of every rate.
    pub profile: Profile,
    /// What a rate must do to hold.
    pub criteria: Criteria,
    /// Whether the validations ran before the first rate only, or never.
    pub validations: &'static str,
    /// The highest rate held, every rate before it held too; `None` if the first failed.
    pub held_up_to: Option<f64>,
    /// The first rate that did not hold, if the sweep got that far.
    pub broke_at: Option<f64>,
    /// Each rate run.
    pub steps: Vec<Step>,
}

impl Sweep {
    /// "held up to x5; broke at x10", in words.
    pub fn conclusion(&self) -> String {
        match (self.held_up_to, self.broke_at) {
            (Some(held), Some(broke)) => format!("held up to x{held}; broke at x{broke}"),
            (Some(held), None) => format!("held up to x{held}, the highest rate asked"),
            (None, _) => "did not hold the first rate".to_owned(),
        }
    }
}

/// Runs `rates` in order with `options` (its rate is ignored), stopping after the first
/// rate that fails. `each` sees every rate's outcome (for progress and per-rate reports).
pub async fn run(
    options: &Options,
    rates: &[f64],
    criteria: Criteria,
    mut each: impl FnMut(&Options, &Outcome, &Report, &Step),
) -> Result<Sweep, String> {
    let mut sweep = Sweep {
        target: options.target.clone(),
        profile: options.profile,
        criteria,
        validations: "first rate only; later rates audit from the balances at their start",
        held_up_to: None,
        broke_at: None,
        steps: Vec::new(),
    };
    for (i, rate) in rates.iter().enumerate() {
        let options = Options {
            rate: *rate,
            validations: i == 0,
            ..options.clone()
        };
        let outcome = simulation::run(&options).await?;
        let report = Report::new(&outcome);
        let step = step(*rate, &outcome, &report, criteria);
        each(&options, &outcome, &report, &step);
        let held = step.held;
        sweep.steps.push(step);
        if !held {
            sweep.broke_at = Some(*rate);
            break;
        }
        sweep.held_up_to = Some(*rate);
    }
    Ok(sweep)
}

fn step(rate: f64, outcome: &Outcome, report: &Report, criteria: Criteria) -> Step {
    let all = &report.groups[0];
    let latencies: Vec<Latency> = report
        .groups
        .iter()
        .skip(1)
        .map(|g| Latency {
            name: g.name.clone(),
            count: g.count,
            ko: g.ko,
            p50_ms: g.p50_ms,
            p99_ms: g.p99_ms,
            max_ms: g.max_ms,
        })
        .collect();
    let load = || {
        latencies
            .iter()
            .filter(|l| l.name != Name::Validacoes.label())
    };
    let load_p50_ms = load().map(|l| l.p50_ms).fold(0.0, f64::max);
    let load_p99_ms = load().map(|l| l.p99_ms).fold(0.0, f64::max);
    let audit_explained = outcome.audit.iter().all(|a| a.explained());
    let verdict = if all.ko > 0 {
        format!("{} KO", all.ko)
    } else if !audit_explained {
        "the balance audit found money lost or appeared".to_owned()
    } else if load_p99_ms > criteria.p99_ms {
        format!("p99 {load_p99_ms:.2} ms over {} ms", criteria.p99_ms)
    } else {
        "held".to_owned()
    };
    Step {
        rate,
        requests: all.count,
        ko: all.ko,
        load_p50_ms,
        load_p99_ms,
        latencies,
        audit_explained,
        generator_cpu_ms: outcome.cpu_ms,
        generator_cpu_us_per_request: outcome.cpu_ms * 1000.0 / all.count.max(1) as f64,
        held: verdict == "held",
        verdict,
    }
}

/// The summary table.
pub fn text(sweep: &Sweep) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "sweep of {} at {} (holds: no KO, audit explained, load p99 <= {} ms)\n",
        sweep.target, sweep.profile, sweep.criteria.p99_ms
    );
    let _ = writeln!(
        out,
        "{:>6} {:>9} {:>6} {:>9} {:>9} {:>9} {:>10}  verdict",
        "rate", "requests", "KO", "p50 ms", "p99 ms", "max ms", "gen µs/req"
    );
    for s in &sweep.steps {
        let max = s.latencies.iter().map(|l| l.max_ms).fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "{:>6} {:>9} {:>6} {:>9.2} {:>9.2} {:>9.1} {:>10.1}  {}",
            format!("x{}", s.rate),
            s.requests,
            s.ko,
            s.load_p50_ms,
            s.load_p99_ms,
            max,
            s.generator_cpu_us_per_request,
            s.verdict
        );
    }
    let _ = writeln!(out, "{}", sweep.conclusion());
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Sweep {
        let step = |rate: f64, p99: f64, ko: usize| Step {
            rate,
            requests: 1000,
            ko,
            load_p50_ms: p99 / 3.0,
            load_p99_ms: p99,
            latencies: ["débitos", "créditos", "extratos"]
                .into_iter()
                .map(|name| Latency {
                    name: name.into(),
                    count: 300,
                    ko: 0,
                    p50_ms: p99 / 3.0,
                    p99_ms: p99,
                    max_ms: p99 * 2.0,
                })
                .collect(),
            audit_explained: true,
            generator_cpu_ms: 10.0,
            generator_cpu_us_per_request: 10.0,
            held: ko == 0 && p99 <= 10.0,
            verdict: if ko == 0 && p99 <= 10.0 {
                "held".into()
            } else {
                "p99 over".into()
            },
        };
        Sweep {
            target: "http://127.0.0.1:9999".into(),
            profile: Profile::Official { scale: 0.05 },
            criteria: Criteria { p99_ms: 10.0 },
            validations: "first rate only",
            held_up_to: Some(5.0),
            broke_at: Some(10.0),
            steps: vec![step(1.0, 1.2, 0), step(5.0, 3.0, 0), step(10.0, 40.0, 0)],
        }
    }

    #[test]
    fn the_table_names_the_breaking_point() {
        let text = text(&sample());
        assert!(text.contains("held up to x5; broke at x10"), "{text}");
        assert_eq!(text.lines().count(), 6, "{text}");
    }
}
