//! Whether an upstream is worth trying: passive health, from the outcome of real traffic. A
//! failure marks it down for a backoff that doubles while the failures continue, so a dead
//! instance costs almost nothing and a restarted one is back within a second; a success
//! marks it up at once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serverkit::backoff::Backoff;

/// How long a failed upstream is skipped: doubles per consecutive failure, up to a second.
pub const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));

/// One upstream's health.
#[derive(Default)]
pub struct Health {
    /// Every failure so far, for the statistics.
    failures: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Milliseconds on `clock()` before which the upstream is skipped; 0 when up.
    down_until: AtomicU64,
}

/// Milliseconds since the first call, plus one (so 0 can mean "never").
fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Health {
    /// Whether the upstream is inside the backoff of a failure.
    pub fn is_down(&self) -> bool {
        let until = self.down_until.load(Relaxed);
        until != 0 && clock() < until
    }

    /// A failure: counted, and the upstream skipped for the backoff of its streak.
    pub fn mark_failed(&self) {
        self.failures.fetch_add(1, Relaxed);
        let streak = self
            .consecutive_failures
            .fetch_add(1, Relaxed)
            .saturating_add(1);
        let backoff = BACKOFF.after(streak);
        self.down_until
            .store(clock() + backoff.as_millis() as u64, Relaxed);
    }

    /// A success: up again, the streak forgotten.
    pub fn mark_ok(&self) {
        if self.down_until.load(Relaxed) != 0 {
            self.down_until.store(0, Relaxed);
            self.consecutive_failures.store(0, Relaxed);
        }
    }

    /// Every failure so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_marks_down_for_the_backoff_and_a_success_marks_up() {
        let health = Health::default();
        assert!(!health.is_down());
        health.mark_failed();
        assert!(health.is_down(), "within 100 ms of the failure");
        health.mark_ok();
        assert!(!health.is_down());
        assert_eq!(health.failures(), 1);
    }
}
