//! What the balancer counts for its operator (`/metrics` on LB_ADMIN): per upstream, the
//! connections or requests it was chosen for, its failures, what is in flight and whether
//! it is up (read from `Upstream` at each scrape), and the answers the balancer gives
//! itself when no upstream can (its own 4xx and 5xx, counted as they are sent).

use std::fmt;

use hyper::StatusCode;
use serverkit::metrics::{Counter, Families, StatusLabel};

use crate::state::State;
use crate::upstream::Upstream;

/// The statuses the balancer answers with itself.
const OWN_STATUSES: StatusLabel = StatusLabel(&["400", "413", "502", "503", "504"]);
static OWN_ANSWERS: [Counter; OWN_STATUSES.len()] = [const { Counter::new() }; OWN_STATUSES.len()];

/// An answer the balancer gave itself.
pub(crate) fn answered(status: StatusCode) {
    OWN_ANSWERS[OWN_STATUSES.index(status)].inc();
}

/// The balancer's families, for `serverkit::metrics::registry`.
pub(crate) fn families(state: &State, out: &mut Families<'_>) -> fmt::Result {
    let names: Vec<String> = state.upstreams.iter().map(|u| u.addr.to_string()).collect();
    let mode = state.config.mode.name();
    out.counter(
        "upstream_chosen",
        &format!(
            "Times each upstream was chosen: {} in {mode} mode.",
            if mode == "http" {
                "requests"
            } else {
                "connections"
            }
        ),
        per_upstream(state, &names, Upstream::chosen),
    )?;
    out.counter(
        "upstream_failures",
        "Failed attempts on each upstream (each marks it down for a backoff).",
        per_upstream(state, &names, |u| u.health.failures()),
    )?;
    out.gauge(
        "upstream_in_flight",
        "Requests or connections in flight on each upstream (in handoff mode, the connections it reports open).",
        per_upstream(state, &names, |u| u.in_flight() as i64),
    )?;
    out.gauge(
        "upstream_up",
        "1 when the upstream is tried, 0 while it is down after a failure.",
        per_upstream(state, &names, |u| i64::from(!u.health.is_down())),
    )?;
    out.counter(
        "balancer_answers",
        "Answers the balancer gave itself, by status (no upstream could take the request).",
        OWN_STATUSES
            .values()
            .zip(&OWN_ANSWERS)
            .map(|(status, n)| ([("status", status)], n.get())),
    )
}

/// One sample per upstream, labelled with its address (`names`, in the same order).
fn per_upstream<'n, T>(
    state: &State,
    names: &'n [String],
    value: impl Fn(&Upstream) -> T,
) -> Vec<([(&'static str, &'n str); 1], T)> {
    names
        .iter()
        .zip(&state.upstreams)
        .map(|(name, upstream)| ([("upstream", name.as_str())], value(upstream)))
        .collect()
}
