//! What a run produces and is configured by: the request names, one record per request,
//! the connection samples, the options and the outcome with its balance audit. The runner
//! (`simulation`) fills them; `stats` and `report` read them.

use serde::Serialize;

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
    pub scale: f64,
    pub seed: u64,
    pub progress: bool,
}

/// What the API acknowledged for one client, against what it reports at the end.
#[derive(Debug, Clone, Serialize)]
pub struct ClientAudit {
    pub client: u8,
    /// The sum of credits minus debits answered 200.
    pub acknowledged: i64,
    /// `saldo.total` at the end, if it could be read as an integer.
    pub reported: Option<i64>,
    /// Transactions whose outcome is unknown (no answer, or an unexpected status).
    pub unknown: u32,
}

impl ClientAudit {
    pub fn clean(&self) -> bool {
        self.reported == Some(self.acknowledged)
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
