//! What every connection handler shares: configuration, upstreams and the strategy.

use crate::config::Config;
use crate::selection::Select;
use crate::upstream::Upstream;

pub struct State {
    pub config: Config,
    pub upstreams: Vec<Upstream>,
    pub selection: Box<dyn Select>,
}

impl State {
    pub fn new(config: Config) -> State {
        State {
            upstreams: config
                .upstreams
                .iter()
                .cloned()
                .map(Upstream::new)
                .collect(),
            selection: config.strategy.build(),
            config,
        }
    }

    /// `GET /stats` on the admin listener.
    pub fn stats_json(&self) -> String {
        serde_json::json!({
            "mode": self.config.mode.name(),
            "strategy": self.config.strategy.name(),
            "upstreams": self.upstreams.iter().map(Upstream::stats).collect::<Vec<_>>(),
        })
        .to_string()
    }
}
