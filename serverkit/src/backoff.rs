//! Exponential backoff, for every "try again a little later" of the workspace: the API's
//! first connect to PostgreSQL, its pool's reconnects, the balancer's skipping of a failed
//! upstream. Doubling keeps a dead peer cheap; the cap brings a restarted one back soon.

use std::time::Duration;

/// A delay that doubles with each consecutive failure, from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub first: Duration,
    /// The delay never grows past this.
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `first` to `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait after `failures` consecutive failures (1: the first): `first`, doubling, at
    /// most `max`.
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// The waits after the first, second, ... failure.
    pub fn waits(self) -> impl Iterator<Item = Duration> {
        (1..).map(move |failures| self.after(failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_first_to_max() {
        let ms = Duration::from_millis;
        let backoff = Backoff::new(ms(50), ms(250));
        let waits: Vec<Duration> = backoff.waits().take(5).collect();
        assert_eq!(waits, [ms(50), ms(100), ms(200), ms(250), ms(250)]);
        assert_eq!(backoff.after(0), ms(50));
        assert_eq!(backoff.after(u32::MAX), ms(250));
    }
}
