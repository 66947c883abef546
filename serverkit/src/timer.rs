//! Keeping tokio's timer wheel from unparking the driver once per request.

use std::time::Duration;

/// Keeps the runtime's timer wheel from ever being empty, by spawning a task that ticks
/// every `period`.
///
/// tokio unparks its driver (an eventfd write, then an extra epoll_wait) whenever a timer
/// is inserted that expires before the driver's next planned wake-up, and with no timer
/// pending every insertion qualifies. A per-request timeout then costs two system calls per
/// request; with this tick pending, a timeout longer than `period` never does.
pub fn spawn_timer_anchor(period: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
        }
    });
}
