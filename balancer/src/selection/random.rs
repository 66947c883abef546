use super::{random_below, Select};
use crate::upstream::Upstream;

/// Any upstream, uniformly at random.
pub(crate) struct Random;

impl Select for Random {
    fn first(&self, upstreams: &[Upstream], _key: Option<&str>) -> usize {
        random_below(upstreams.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::upstreams;

    #[test]
    fn roughly_uniform() {
        let ups = upstreams(4);
        let mut hits = [0usize; 4];
        for _ in 0..8000 {
            hits[Random.first(&ups, None)] += 1;
        }
        // Expected 2000 each; 1700 is over 7 standard deviations away.
        assert!(hits.iter().all(|&h| (1700..2300).contains(&h)), "{hits:?}");
    }
}
