use super::{RoundRobin, Select};
use crate::upstream::Upstream;

/// The client id picks the upstream, so one client's requests go to one instance while it
/// is up (its row lock then never bounces between instances). Requests without a client id
/// go round robin.
#[derive(Default)]
pub(crate) struct ClientHash {
    fallback: RoundRobin,
}

impl Select for ClientHash {
    fn first(&self, upstreams: &[Upstream], key: Option<&str>) -> usize {
        match key {
            // FNV-1a: stable across runs and processes, unlike std's randomly seeded hasher.
            Some(key) => {
                let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
                (hash % upstreams.len() as u64) as usize
            }
            None => self.fallback.first(upstreams, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::upstreams;

    #[test]
    fn stable_per_client_and_spread_over_clients() {
        let ups = upstreams(2);
        let ch = ClientHash::default();
        let picks: Vec<usize> = (1..=5)
            .map(|id| ch.first(&ups, Some(&id.to_string())))
            .collect();
        for _ in 0..10 {
            let again: Vec<usize> = (1..=5)
                .map(|id| ch.first(&ups, Some(&id.to_string())))
                .collect();
            assert_eq!(again, picks);
        }
        let ups = upstreams(3);
        let mut hits = [0usize; 3];
        for id in 0..3000 {
            hits[ch.first(&ups, Some(&id.to_string()))] += 1;
        }
        assert!(hits.iter().all(|&h| h > 800), "{hits:?}");
    }

    #[test]
    fn without_a_key_goes_round_robin() {
        let ups = upstreams(2);
        let ch = ClientHash::default();
        let picks: Vec<usize> = (0..4).map(|_| ch.first(&ups, None)).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }
}
