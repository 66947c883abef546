//! Deadlines for slow and idle clients, and shedding at the connection cap.
//!
//! Without them, as many clients as the connection cap that send half a request and wait
//! hold every place for as long as they like (slowloris), and the service is unavailable.
//! Each connection has a [`Watch`]: the phase it is in and since when. One sweeper task per
//! server looks at every watch on a coarse tick and closes the connections past their
//! deadline: a head not complete within the header deadline or a body not complete within
//! the body deadline (408, then close), a connection with no request within the idle
//! deadline (closed silently, as nginx and HAProxy do).
//!
//! Nothing here sets a timer per request or per connection: the request path only stores
//! the phase and the time (read from the vDSO, no system call), so the cost per request is
//! a few atomic stores, and the sweeper wakes a few times a second whatever the load.
//!
//! At the cap, a server that must wait for a place first closes the connection that is
//! doing least: the one idle the longest, else the one whose request has been incomplete
//! the longest (`Watchlist::shed_one`). A connection whose request is being handled is
//! never shed.
//!
//! `watch`: a connection's phase; `watchlist`: the sweeper and shedding; `io`: the stream and
//! body wrappers that move a watch as bytes arrive; `cut`: serving a connection until its
//! watch says to close it.

mod cut;
mod io;
mod watch;
mod watchlist;

use std::time::Duration;

use crate::config::number;

pub use cut::spawn_until_cut;
pub use io::{RequestBody, Watched};
pub use watch::{Phase, Watch};
pub use watchlist::{Watchlist, SHED_AFTER};

/// The limits on how long a client may take. Read from `{PREFIX}_HEADER_TIMEOUT_MS`,
/// `{PREFIX}_BODY_TIMEOUT_MS` and `{PREFIX}_IDLE_TIMEOUT_MS`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deadlines {
    /// From the connection's opening (first request) or the request's first byte (later
    /// requests on a keep-alive connection) to the end of its head. tcp mode: from the
    /// opening to the client's first byte.
    pub header: Duration,
    /// From the end of the head to the end of the body.
    pub body: Duration,
    /// From the end of a response to the next request's first byte. tcp mode: with nothing
    /// to wait for (the upstream has answered), no byte either way.
    pub idle: Duration,
}

impl Deadlines {
    /// A Rinha request arrives in one packet, so 5 s for a head or a body is generous by
    /// three orders of magnitude; nginx's keepalive_timeout is 75 s, HAProxy's examples use
    /// 10 s to 60 s for an idle keep-alive connection.
    pub const DEFAULT: Deadlines = Deadlines {
        header: Duration::from_secs(5),
        body: Duration::from_secs(5),
        idle: Duration::from_secs(60),
    };

    /// PREFIX_HEADER_TIMEOUT_MS, PREFIX_BODY_TIMEOUT_MS and PREFIX_IDLE_TIMEOUT_MS through `get`, with the defaults for those unset.
    pub fn from_env(get: &impl Fn(&str) -> Option<String>, prefix: &str) -> Result<Self, String> {
        let ms = |name: &str, default: Duration| -> Result<Duration, String> {
            let default = default.as_millis() as u64;
            number(get, &format!("{prefix}_{name}"), default, 10..=3_600_000)
                .map(Duration::from_millis)
        };
        Ok(Deadlines {
            header: ms("HEADER_TIMEOUT_MS", Self::DEFAULT.header)?,
            body: ms("BODY_TIMEOUT_MS", Self::DEFAULT.body)?,
            idle: ms("IDLE_TIMEOUT_MS", Self::DEFAULT.idle)?,
        })
    }

    /// The sweeper's period: a deadline is acted on at most about a quarter late.
    pub(crate) fn tick(&self) -> Duration {
        let shortest = self.header.min(self.body).min(self.idle);
        (shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    pub(crate) fn of(&self, phase: Phase) -> Option<Duration> {
        match phase {
            Phase::Fresh | Phase::Head => Some(self.header),
            Phase::Body => Some(self.body),
            Phase::Idle => Some(self.idle),
            Phase::Busy => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lookup_in;

    #[test]
    fn deadlines_from_the_environment() {
        let get = lookup_in(&[
            ("X_HEADER_TIMEOUT_MS", "700"),
            ("X_IDLE_TIMEOUT_MS", "90000"),
        ]);
        let d = Deadlines::from_env(&get, "X").unwrap();
        assert_eq!(d.header, Duration::from_millis(700));
        assert_eq!(d.body, Deadlines::DEFAULT.body);
        assert_eq!(d.idle, Duration::from_secs(90));
        assert_eq!(d.tick(), Duration::from_millis(175));
        let bad = lookup_in(&[("X_BODY_TIMEOUT_MS", "0")]);
        assert!(Deadlines::from_env(&bad, "X")
            .unwrap_err()
            .starts_with("X_BODY_TIMEOUT_MS=0"));
    }
}
