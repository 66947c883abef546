//! Which upstream serves a request. One small type per strategy, each answering only "which
//! upstream first?"; the rest of the preference order is the rotation from there, so failover
//! is one loop over `Candidates` whatever the strategy (the shape of pingora's `selection`).

mod client_hash;
mod least_connections;
mod power_of_two;
mod random;
mod round_robin;

use crate::upstream::Upstream;

pub(crate) use client_hash::ClientHash;
pub(crate) use least_connections::LeastConnections;
pub(crate) use power_of_two::PowerOfTwo;
pub(crate) use random::Random;
pub(crate) use round_robin::RoundRobin;

pub trait Select: Send + Sync {
    /// Index of the preferred upstream. `key` is the request's client id, for the strategies
    /// that read the request (see `Strategy::needs_request`).
    fn first(&self, upstreams: &[Upstream], key: Option<&str>) -> usize;

    /// Every upstream once, most preferred first.
    fn candidates(&self, upstreams: &[Upstream], key: Option<&str>) -> Candidates {
        Candidates {
            start: self.first(upstreams, key),
            len: upstreams.len(),
            taken: 0,
        }
    }
}

/// Upstream indexes in preference order, without allocating.
pub struct Candidates {
    start: usize,
    len: usize,
    taken: usize,
}

impl Iterator for Candidates {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        (self.taken < self.len).then(|| {
            self.taken += 1;
            (self.start + self.taken - 1) % self.len
        })
    }
}

/// An LB_STRATEGY: which upstream is tried first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Each upstream in turn.
    RoundRobin,
    /// The upstream with the fewest requests or connections in flight.
    LeastConnections,
    /// Any upstream, uniformly.
    Random,
    /// The less busy of two chosen at random.
    PowerOfTwo,
    /// The same client id to the same upstream (http mode only: it reads the request).
    ClientHash,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 5] = [
        Strategy::RoundRobin,
        Strategy::LeastConnections,
        Strategy::Random,
        Strategy::PowerOfTwo,
        Strategy::ClientHash,
    ];

    /// The name LB_STRATEGY takes.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::LeastConnections => "least-connections",
            Strategy::Random => "random",
            Strategy::PowerOfTwo => "power-of-two",
            Strategy::ClientHash => "client-hash",
        }
    }

    /// The strategy of an LB_STRATEGY value.
    pub fn parse(name: &str) -> Option<Strategy> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Every name, in order: "round-robin, least-connections, ...".
    pub fn names() -> String {
        Self::names_where(|_| true)
    }

    /// The names of the strategies that pass `keep`, in order, comma-separated.
    pub fn names_where(keep: impl Fn(Strategy) -> bool) -> String {
        let names: Vec<&str> = Self::ALL
            .into_iter()
            .filter(|s| keep(*s))
            .map(Strategy::name)
            .collect();
        names.join(", ")
    }

    /// Whether the strategy reads the request, which only http mode does.
    pub fn needs_request(self) -> bool {
        self == Strategy::ClientHash
    }

    /// Whether the strategy reads how busy each upstream is.
    pub fn needs_load(self) -> bool {
        matches!(self, Strategy::LeastConnections | Strategy::PowerOfTwo)
    }

    /// The selector that runs this strategy.
    pub fn build(self) -> Box<dyn Select> {
        match self {
            Strategy::RoundRobin => Box::new(RoundRobin::default()),
            Strategy::LeastConnections => Box::new(LeastConnections::default()),
            Strategy::Random => Box::new(Random),
            Strategy::PowerOfTwo => Box::new(PowerOfTwo),
            Strategy::ClientHash => Box::new(ClientHash::default()),
        }
    }
}

/// The client id of a `/clientes/{id}/...` path.
pub(crate) fn client_key(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/clientes/")?;
    rest.split('/').next().filter(|id| !id.is_empty())
}

/// A uniform index below `n` from a per-thread xorshift generator: cheap, and good enough
/// to spread load (nothing here needs unpredictability).
fn random_below(n: usize) -> usize {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
            let here = &nanos as *const u64 as u64; // differs per thread
            (nanos ^ here.rotate_left(32)) | 1
        });
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize) % n
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::address::UpstreamAddr;

    pub(crate) fn upstreams(n: usize) -> Vec<Upstream> {
        (0..n)
            .map(|i| Upstream::new(UpstreamAddr::Unix(format!("/u{i}").into()), None))
            .collect()
    }

    #[test]
    fn candidates_cover_every_upstream_once_from_the_first() {
        let c: Vec<usize> = Candidates {
            start: 2,
            len: 4,
            taken: 0,
        }
        .collect();
        assert_eq!(c, [2, 3, 0, 1]);
        let ups = upstreams(3);
        for strategy in Strategy::ALL {
            let mut seen: Vec<usize> = strategy.build().candidates(&ups, Some("1")).collect();
            seen.sort();
            assert_eq!(seen, [0, 1, 2], "{strategy:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for strategy in Strategy::ALL {
            assert_eq!(Strategy::parse(strategy.name()), Some(strategy));
        }
        assert_eq!(Strategy::parse("roundrobin"), None);
        assert_eq!(
            Strategy::names(),
            "round-robin, least-connections, random, power-of-two, client-hash"
        );
    }

    #[test]
    fn client_key_reads_the_id() {
        assert_eq!(client_key("/clientes/3/extrato"), Some("3"));
        assert_eq!(client_key("/clientes/42/transacoes"), Some("42"));
        assert_eq!(client_key("/clientes//extrato"), None);
        assert_eq!(client_key("/other/3"), None);
    }

    #[test]
    fn random_below_stays_in_range_and_covers_it() {
        let mut hits = [0usize; 5];
        for _ in 0..5000 {
            hits[random_below(5)] += 1;
        }
        assert!(hits.iter().all(|&h| h > 800), "{hits:?}");
    }
}
