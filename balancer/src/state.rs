//! What every connection handler shares: configuration, upstreams and the strategy, and the
//! failover walk every mode takes through them.

use serverkit::handoff::Link;

use crate::address::UpstreamAddr;
use crate::config::{Config, Mode};
use crate::selection::Select;
use crate::upstream::Upstream;

/// The balancer's shared state, built once at start-up.
pub(crate) struct State {
    /// The configuration it was built from.
    pub config: Config,
    /// In LB_UPSTREAMS order; selection answers with indexes into it.
    pub upstreams: Vec<Upstream>,
    /// LB_STRATEGY.
    pub selection: Box<dyn Select>,
}

impl State {
    /// The upstreams of `config`, with a handoff link each in handoff mode.
    pub(crate) fn new(config: Config) -> State {
        let upstreams = config
            .upstreams
            .iter()
            .map(|addr| {
                let link = match (config.mode, addr) {
                    (Mode::Handoff, UpstreamAddr::Unix(path)) => {
                        Some(Link::new(path, config.strategy.needs_load()))
                    }
                    (Mode::Handoff, UpstreamAddr::Tcp(_)) => {
                        unreachable!("config refuses TCP upstreams in handoff mode")
                    }
                    _ => None,
                };
                Upstream::new(addr.clone(), link)
            })
            .collect();
        State {
            upstreams,
            selection: config.strategy.build(),
            config,
        }
    }

    /// The failover walk, the same in every mode: the upstreams in the strategy's order of
    /// preference (`key`: the request's client id, for client-hash), skipping those down.
    /// Lazy: health is read as the walk reaches each one.
    pub(crate) fn candidates(&self, key: Option<&str>) -> impl Iterator<Item = (usize, &Upstream)> {
        self.selection
            .candidates(&self.upstreams, key)
            .map(|i| (i, &self.upstreams[i]))
            .filter(|(_, upstream)| !upstream.health.is_down())
    }

    /// `GET /stats` on the admin listener.
    pub(crate) fn stats_json(&self) -> String {
        serde_json::json!({
            "mode": self.config.mode.name(),
            "strategy": self.config.strategy.name(),
            "upstreams": self.upstreams.iter().map(Upstream::stats).collect::<Vec<_>>(),
        })
        .to_string()
    }
}
