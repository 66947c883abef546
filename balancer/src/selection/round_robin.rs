use std::sync::atomic::{AtomicUsize, Ordering};

use super::Select;
use crate::upstream::Upstream;

/// Each upstream in turn. The Rinha rules require it, so it is the default.
#[derive(Default)]
pub(crate) struct RoundRobin {
    next: AtomicUsize,
}

impl Select for RoundRobin {
    fn first(&self, upstreams: &[Upstream], _key: Option<&str>) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % upstreams.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::upstreams;

    #[test]
    fn alternates_exactly() {
        let ups = upstreams(3);
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..7).map(|_| rr.first(&ups, None)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }
}
