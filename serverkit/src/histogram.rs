//! Latency histograms cheap enough to take on every request: fixed buckets, one relaxed
//! atomic add per observation, no lock, no allocation. They say where a request's time goes
//! (BENCHMARKS.md, "Where a request's time goes"); the bucket bounds are cumulative-ready
//! (`le` in Prometheus's sense), so an exporter can publish them as they are.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds; one more bucket takes everything above.
/// Dense below 2 ms, where a durable request's median lives, sparse in the tail.
pub const BOUNDS_US: [u64; 20] = [
    25, 50, 100, 150, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000,
    20_000, 50_000, 100_000, 1_000_000,
];

/// A count per bucket, with the sum and the largest value seen.
pub struct Histogram {
    name: &'static str,
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Histogram {
    /// An empty histogram named `name` (a static: it costs nothing until observed).
    pub const fn new(name: &'static str) -> Histogram {
        Histogram {
            name,
            buckets: [const { AtomicU64::new(0) }; BOUNDS_US.len() + 1],
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Counts one observation of `elapsed`: relaxed atomic adds, no lock, no allocation.
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    /// A copy of the counts, for reading and reporting.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            name: self.name,
            buckets: self.buckets.each_ref().map(|b| b.load(Relaxed)),
            sum_us: self.sum_us.load(Relaxed),
            max_us: self.max_us.load(Relaxed),
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The histogram's name.
    pub name: &'static str,
    /// Observations per bucket: one per bound of `BOUNDS_US`, then the overflow.
    pub buckets: [u64; BOUNDS_US.len() + 1],
    /// The sum of every observation, in microseconds.
    pub sum_us: u64,
    /// The largest observation, in microseconds.
    pub max_us: u64,
}

impl Snapshot {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound of the bucket holding quantile `q` (0 < q <= 1), in microseconds: the
    /// true quantile is at most this. The last bucket answers with the maximum seen.
    pub fn quantile_bound_us(&self, q: f64) -> u64 {
        assert!(q > 0.0 && q <= 1.0, "a quantile is in (0, 1]");
        let rank = (q * self.count() as f64).ceil() as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank && n > 0 {
                return BOUNDS_US
                    .get(i)
                    .copied()
                    .unwrap_or(self.max_us)
                    .min(self.max_us);
            }
        }
        self.max_us
    }
}

/// One line: `name n=N mean=Xus p50<=Aus p90<=Bus p99<=Cus p99.9<=Dus max=Eus buckets=a,b,...`
/// (the bucket counts in BOUNDS_US's order, the last one above every bound).
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.count();
        write!(f, "{} n={n}", self.name)?;
        if let Some(mean) = self.sum_us.checked_div(n) {
            write!(f, " mean={mean}us")?;
            for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
                write!(f, " {label}<={}us", self.quantile_bound_us(q))?;
            }
            write!(f, " max={}us", self.max_us)?;
        }
        let buckets: Vec<String> = self.buckets.iter().map(u64::to_string).collect();
        write!(f, " buckets={}", buckets.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_bucket_of_their_upper_bound() {
        let h = Histogram::new("t");
        for us in [0, 25, 26, 1_000, 1_001, 2_000_000] {
            h.observe(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 2, "0 and 25 are at most 25");
        assert_eq!(s.buckets[1], 1, "26 is in (25, 50]");
        assert_eq!(s.buckets[9], 1, "1000 is in (750, 1000]");
        assert_eq!(s.buckets[10], 1, "1001 is in (1000, 1500]");
        assert_eq!(s.buckets[BOUNDS_US.len()], 1, "above every bound");
        assert_eq!(s.count(), 6);
        assert_eq!(s.max_us, 2_000_000);
    }

    #[test]
    fn quantiles_are_bucket_bounds_capped_by_the_maximum() {
        let h = Histogram::new("t");
        for _ in 0..98 {
            h.observe(Duration::from_micros(180));
        }
        h.observe(Duration::from_micros(4_000));
        h.observe(Duration::from_micros(3_000_000));
        let s = h.snapshot();
        assert_eq!(s.quantile_bound_us(0.5), 200);
        assert_eq!(s.quantile_bound_us(0.98), 200);
        assert_eq!(s.quantile_bound_us(0.99), 5_000);
        assert_eq!(
            s.quantile_bound_us(1.0),
            3_000_000,
            "the top bucket answers the max"
        );
        let line = s.to_string();
        assert!(line.starts_with("t n=100 mean="), "{line}");
        assert!(
            line.contains(" p50<=200us ") && line.contains(" max=3000000us "),
            "{line}"
        );
    }

    #[test]
    fn an_empty_histogram_says_so() {
        let s = Histogram::new("idle").snapshot();
        assert_eq!(s.count(), 0);
        assert!(s.to_string().starts_with("idle n=0 buckets=0,"));
    }
}
