//! What a run produces and is configured by: the request names, one record per request,
//! the connection samples, the options and the outcome with its balance audit. The runner
//! (`simulation`) fills them; `stats` and `report` read them.

use serde::Serialize;

use crate::schedule::Profile;

/// The request names of the official report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Name {
    /// Phases A–F: the official validations.
    Validacoes,
    /// Debit requests of the load.
    Debitos,
    /// Credit requests of the load.
    Creditos,
    /// Statement requests of the load.
    Extratos,
}

impl Name {
    /// Every name, in report order.
    pub const ALL: [Name; 4] = [
        Name::Validacoes,
        Name::Debitos,
        Name::Creditos,
        Name::Extratos,
    ];

    /// The name as the official report writes it.
    pub fn label(self) -> &'static str {
        match self {
            Name::Validacoes => "validações",
            Name::Debitos => "débitos",
            Name::Creditos => "créditos",
            Name::Extratos => "extratos",
        }
    }
}

/// One request as the report sees it. `start` is seconds since the run began.
#[derive(Debug, Clone)]
pub struct Record {
    /// Which request it was.
    pub name: Name,
    /// When it was sent, in seconds since the run began.
    pub start: f64,
    /// How long its answer took.
    pub latency_ms: f64,
    /// Why it failed a check, if it did.
    pub ko: Option<String>,
    /// A transaction that may or may not have been applied (no answer, or a status that
    /// says neither).
    pub outcome_unknown: bool,
}

/// Connections open at time `t` (seconds since the run began).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the run began.
    pub t: f64,
    /// Connections open then.
    pub active: usize,
}

/// What to run, and against what.
#[derive(Debug, Clone)]
pub struct Options {
    /// host:port of the stack.
    pub target: String,
    /// Multiple of the official arrival rate.
    pub rate: f64,
    /// How the load's arrivals run over time.
    pub profile: Profile,
    /// Seed of the request bodies' random values.
    pub seed: u64,
    /// Print progress while running.
    pub progress: bool,
    /// Phases A–F (they need a fresh stack); without them the audit starts from the
    /// balances found at the start.
    pub validations: bool,
}

/// What the API acknowledged for one client, against what it reports at the end.
#[derive(Debug, Clone, Serialize)]
pub struct ClientAudit {
    /// The client id, 1 to 5.
    pub client: u8,
    /// The balance at the start (0, or what a run without validations found) plus the
    /// credits minus debits answered 200.
    pub acknowledged: i64,
    /// `saldo.total` at the end, if it could be read as an integer.
    pub reported: Option<i64>,
    /// Transactions whose outcome is unknown (no answer, or an unexpected status).
    pub unknown: u32,
    /// The credits and debits among those, in cents.
    pub unknown_credits: i64,
    /// The debits among the unknown ones, in cents.
    pub unknown_debits: i64,
}

impl ClientAudit {
    /// Whether the reported balance is exactly the acknowledged one (no unknown outcomes).
    pub fn clean(&self) -> bool {
        self.reported == Some(self.acknowledged)
    }

    /// Whether the reported balance is one that some outcome of the unknown transactions
    /// leads to: nothing acknowledged lost, nothing appeared from nowhere.
    pub fn explained(&self) -> bool {
        self.reported.is_some_and(|r| {
            (self.acknowledged - self.unknown_debits..=self.acknowledged + self.unknown_credits)
                .contains(&r)
        })
    }
}

/// Everything a run produced.
pub struct Outcome {
    /// Every request, in the order answered.
    pub records: Vec<Record>,
    /// Open connections over time.
    pub samples: Vec<Sample>,
    /// The generator's worst lag behind its schedule.
    pub max_lag_ms: f64,
    /// Seconds the whole run took.
    pub elapsed: f64,
    /// Seconds of the load phase.
    pub load_seconds: f64,
    /// The generator's own CPU time.
    pub cpu_ms: f64,
    /// Per client, what was acknowledged against what the API reports.
    pub audit: Vec<ClientAudit>,
    /// Every HTTP exchange of the run (validations, load and audit) by status answered.
    pub statuses: std::collections::BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::ClientAudit;

    fn audit(reported: i64) -> ClientAudit {
        ClientAudit {
            client: 1,
            acknowledged: 100,
            reported: Some(reported),
            unknown: 2,
            unknown_credits: 30,
            unknown_debits: 50,
        }
    }

    #[test]
    fn unknown_outcomes_explain_only_balances_they_can_reach() {
        for reported in [50, 80, 100, 130] {
            assert!(audit(reported).explained(), "{reported}");
        }
        for reported in [49, 131] {
            assert!(!audit(reported).explained(), "{reported}");
        }
        assert!(!audit(130).clean() && audit(100).clean());
    }
}
