//! What a run produces and is configured by: the request names, one record per request,
//! the connection samples, the options and the outcome with its balance audit. The runner
//! (`simulation`) fills them; `stats` and `report` read them.

use serde::Serialize;

use crate::schedule::Profile;

/// The request names of the official report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Name {
    Validacoes,
    Debitos,
    Creditos,
    Extratos,
}

impl Name {
    pub const ALL: [Name; 4] = [
        Name::Validacoes,
        Name::Debitos,
        Name::Creditos,
        Name::Extratos,
    ];

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
    pub name: Name,
    pub start: f64,
    pub latency_ms: f64,
    pub ko: Option<String>,
    /// A transaction that may or may not have been applied (no answer, or a status that
    /// says neither).
    pub outcome_unknown: bool,
}

/// Connections open at time `t` (seconds since the run began).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t: f64,
    pub active: usize,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub target: String,
    pub rate: f64,
    pub profile: Profile,
    pub seed: u64,
    pub progress: bool,
    /// Phases A–F (they need a fresh stack); without them the audit starts from the
    /// balances found at the start.
    pub validations: bool,
}

/// What the API acknowledged for one client, against what it reports at the end.
#[derive(Debug, Clone, Serialize)]
pub struct ClientAudit {
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
    pub unknown_debits: i64,
}

impl ClientAudit {
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

pub struct Outcome {
    pub records: Vec<Record>,
    pub samples: Vec<Sample>,
    pub max_lag_ms: f64,
    pub elapsed: f64,
    pub load_seconds: f64,
    pub cpu_ms: f64,
    pub audit: Vec<ClientAudit>,
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
