use super::{random_below, Select};
use crate::upstream::Upstream;

/// Two upstreams at random; the one with fewer requests in flight wins. Nearly as good as
/// least-connections at spreading load, without every request looking at every upstream.
pub(crate) struct PowerOfTwo;

impl Select for PowerOfTwo {
    fn first(&self, upstreams: &[Upstream], _key: Option<&str>) -> usize {
        let n = upstreams.len();
        if n == 1 {
            return 0;
        }
        let a = random_below(n);
        let b = (a + 1 + random_below(n - 1)) % n; // distinct from a
        if upstreams[b].in_flight() < upstreams[a].in_flight() {
            b
        } else {
            a
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::upstreams;

    #[test]
    fn prefers_the_idle_upstream() {
        let ups = upstreams(2);
        let _busy = ups[0].begin();
        assert!((0..100).all(|_| PowerOfTwo.first(&ups, None) == 1));
    }

    #[test]
    fn spreads_when_idle() {
        let ups = upstreams(3);
        let mut hits = [0usize; 3];
        for _ in 0..3000 {
            hits[PowerOfTwo.first(&ups, None)] += 1;
        }
        assert!(hits.iter().all(|&h| h > 700), "{hits:?}");
    }
}
