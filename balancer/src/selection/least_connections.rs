use std::sync::atomic::{AtomicUsize, Ordering};

use super::Select;
use crate::upstream::Upstream;

/// The upstream with the fewest requests in flight. Ties rotate, so an idle pool does not
/// send everything to the first upstream.
#[derive(Default)]
pub(crate) struct LeastConnections {
    next: AtomicUsize,
}

impl Select for LeastConnections {
    fn first(&self, upstreams: &[Upstream], _key: Option<&str>) -> usize {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..upstreams.len())
            .map(|i| (start + i) % upstreams.len())
            .min_by_key(|&i| upstreams[i].in_flight())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::upstreams;

    #[test]
    fn prefers_the_idle_upstream() {
        let ups = upstreams(3);
        let _busy = [ups[0].begin(), ups[0].begin(), ups[2].begin()];
        let lc = LeastConnections::default();
        assert!((0..10).all(|_| lc.first(&ups, None) == 1));
    }

    #[test]
    fn ties_rotate() {
        let ups = upstreams(2);
        let lc = LeastConnections::default();
        let picks: Vec<usize> = (0..4).map(|_| lc.first(&ups, None)).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }
}
