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

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::number;

/// A connection is shed only after it has been this long in its phase: a request that has
/// just arrived is not yet slow, it is only not read yet.
pub const SHED_AFTER: Duration = Duration::from_millis(200);

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
    fn tick(&self) -> Duration {
        let shortest = self.header.min(self.body).min(self.idle);
        (shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    fn of(&self, phase: Phase) -> Option<Duration> {
        match phase {
            Phase::Fresh | Phase::Head => Some(self.header),
            Phase::Body => Some(self.body),
            Phase::Idle => Some(self.idle),
            Phase::Busy => None,
        }
    }
}

/// Where a connection is. Stored in the top byte of `Entry::state`, the time it began in
/// the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Open, nothing read yet.
    Fresh = 0,
    /// Between requests (http), or waiting on the client after the upstream answered (tcp).
    Idle,
    /// Part of a request's head read.
    Head,
    /// Head read, body not complete.
    Body,
    /// A request is being handled (or, in tcp mode, the upstream has yet to answer).
    Busy,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Fresh,
            1 => Phase::Idle,
            2 => Phase::Head,
            3 => Phase::Body,
            _ => Phase::Busy,
        }
    }

    /// Whether a client that is cut off in this phase gets a 408: it has started a request.
    pub fn answers_408(self) -> bool {
        matches!(self, Phase::Head | Phase::Body)
    }
}

const PHASE_SHIFT: u32 = 56;
const SINCE_MASK: u64 = (1 << PHASE_SHIFT) - 1;

/// Milliseconds since the watchlist started. Reading it is a clock_gettime(2) that the
/// vDSO answers without entering the kernel.
struct Clock {
    start: Instant,
}

impl Clock {
    fn read(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

struct Entry {
    state: AtomicU64,
    clock: Arc<Clock>,
    /// 0, or 1 + the phase the connection was in when it was told to close.
    cut: AtomicU8,
    /// Wakes the connection's task when the sweeper or the shedder closes it.
    close: Notify,
}

impl Entry {
    fn load(&self) -> (Phase, u64) {
        let state = self.state.load(Relaxed);
        (
            Phase::from_u8((state >> PHASE_SHIFT) as u8),
            state & SINCE_MASK,
        )
    }

    fn cut_in(&self) -> Option<Phase> {
        match self.cut.load(Relaxed) {
            0 => None,
            n => Some(Phase::from_u8(n - 1)),
        }
    }

    /// Tells the connection to close, remembering the phase it was in.
    fn cut(&self, phase: Phase) {
        self.cut.store(phase as u8 + 1, Relaxed);
        self.close.notify_one();
    }

    fn store(&self, phase: Phase, since: u64) {
        self.state
            .store(((phase as u64) << PHASE_SHIFT) | since, Relaxed);
    }
}

/// One connection's phase, for its server's sweeper. The connection is on the list until
/// its last clone is dropped.
#[derive(Clone)]
pub struct Watch(Arc<Entry>);

impl Watch {
    pub fn phase(&self) -> Phase {
        self.0.load().0
    }

    /// Enters `phase` now.
    pub fn enter(&self, phase: Phase) {
        self.0.store(phase, self.0.clock.read());
    }

    /// Bytes arrived from the client: a head begins, if none had. The first request's
    /// deadline runs from the opening of the connection, a later one's from its first byte.
    pub fn client_sent(&self) {
        match self.0.load() {
            (Phase::Fresh, since) => self.0.store(Phase::Head, since),
            (Phase::Idle, _) => self.enter(Phase::Head),
            _ => {}
        }
    }

    /// Resolves when the connection must close, with the phase it was cut off in.
    pub async fn closed(&self) -> Phase {
        loop {
            let notified = self.0.close.notified();
            if let Some(phase) = self.0.cut_in() {
                return phase;
            }
            notified.await;
        }
    }
}

/// The watches of one server's connections, and its sweeper.
pub struct Watchlist {
    deadlines: Deadlines,
    clock: Arc<Clock>,
    entries: Mutex<Vec<Arc<Entry>>>,
}

impl Watchlist {
    /// A watchlist whose sweeper runs as a task of the current runtime until the list is
    /// dropped.
    pub fn start(deadlines: Deadlines) -> Arc<Watchlist> {
        let list = Arc::new(Watchlist {
            deadlines,
            clock: Arc::new(Clock {
                start: Instant::now(),
            }),
            entries: Mutex::new(Vec::new()),
        });
        tokio::spawn(sweep(Arc::downgrade(&list), deadlines.tick()));
        list
    }

    /// A watch for a connection that has just opened.
    pub fn watch(&self) -> Watch {
        let entry = Arc::new(Entry {
            state: AtomicU64::new(self.clock.read()),
            clock: self.clock.clone(),
            cut: AtomicU8::new(0),
            close: Notify::new(),
        });
        self.entries
            .lock()
            .expect("watchlist lock")
            .push(entry.clone());
        Watch(entry)
    }

    /// Closes the connection doing least, if one has been at it for SHED_AFTER: the longest
    /// idle, else the longest incomplete request. Returns whether it closed one.
    pub fn shed_one(&self) -> bool {
        let now = self.clock.read();
        let old_enough = SHED_AFTER.as_millis() as u64;
        let entries = self.entries.lock().expect("watchlist lock");
        let victim = entries
            .iter()
            .filter(|entry| entry.cut_in().is_none() && Arc::strong_count(entry) > 1)
            .filter_map(|entry| {
                let (phase, since) = entry.load();
                let rank = match phase {
                    Phase::Idle => 0,
                    Phase::Fresh | Phase::Head | Phase::Body => 1,
                    Phase::Busy => return None,
                };
                (now.saturating_sub(since) >= old_enough).then_some(((rank, since), phase, entry))
            })
            .min_by_key(|(order, _, _)| *order);
        match victim {
            Some((_, phase, entry)) => {
                entry.cut(phase);
                true
            }
            None => false,
        }
    }

    /// Closes every connection past its phase's deadline; forgets closed ones.
    fn sweep_once(&self) {
        let now = self.clock.read();
        self.entries
            .lock()
            .expect("watchlist lock")
            .retain(|entry| {
                if Arc::strong_count(entry) == 1 {
                    return false; // the connection is gone
                }
                let (phase, since) = entry.load();
                if let (None, Some(limit)) = (entry.cut_in(), self.deadlines.of(phase)) {
                    if now.saturating_sub(since) >= limit.as_millis() as u64 {
                        entry.cut(phase);
                    }
                }
                true
            });
    }
}

async fn sweep(list: Weak<Watchlist>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match list.upgrade() {
            Some(list) => list.sweep_once(),
            None => return,
        }
    }
}

/// A stream that tells its watch what arrives (`on_read` gets the bytes just read), for the
/// deadlines that depend on what the client has sent.
pub struct Watched<S> {
    inner: S,
    watch: Watch,
    on_read: fn(&Watch, &[u8]),
}

impl<S> Watched<S> {
    pub fn new(inner: S, watch: Watch, on_read: fn(&Watch, &[u8])) -> Watched<S> {
        Watched {
            inner,
            watch,
            on_read,
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            (self.on_read)(&self.watch, &buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request's body that moves its watch from `Body` to `Busy` once it is read whole.
pub struct RequestBody {
    inner: Incoming,
    watch: Watch,
}

impl RequestBody {
    /// Enters `Body`, or `Busy` at once when there is no body to wait for.
    pub fn new(inner: Incoming, watch: Watch) -> RequestBody {
        watch.enter(if inner.is_end_stream() {
            Phase::Busy
        } else {
            Phase::Body
        });
        RequestBody { inner, watch }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() || self.inner.is_end_stream() {
            self.watch.enter(Phase::Busy);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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

    #[tokio::test(start_paused = true)]
    async fn each_phase_meets_its_deadline() {
        let list = Watchlist::start(Deadlines {
            header: Duration::from_millis(100),
            body: Duration::from_millis(200),
            idle: Duration::from_millis(400),
        });
        let fresh = list.watch();
        let head = list.watch();
        head.client_sent();
        let body = list.watch();
        body.enter(Phase::Body);
        let idle = list.watch();
        idle.enter(Phase::Idle);
        let busy = list.watch();
        busy.enter(Phase::Busy);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(fresh.closed().await, Phase::Fresh);
        assert_eq!(head.closed().await, Phase::Head);
        assert!(body.0.cut_in().is_none());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(body.closed().await, Phase::Body);
        assert!(idle.0.cut_in().is_none());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(idle.closed().await, Phase::Idle);
        assert!(
            busy.0.cut_in().is_none(),
            "a request being handled has no deadline here"
        );
        drop((fresh, head, body, idle, busy));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            list.entries.lock().unwrap().is_empty(),
            "closed watches are forgotten"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shedding_takes_the_longest_idle_then_the_longest_incomplete() {
        let list = Watchlist::start(Deadlines::DEFAULT);
        let busy = list.watch();
        busy.enter(Phase::Busy);
        let slow = list.watch();
        slow.client_sent();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let idle = list.watch();
        idle.enter(Phase::Idle);
        let young = list.watch();
        tokio::time::sleep(Duration::from_millis(150)).await;
        // slow: 250 ms in its head; idle: 150 ms, too young to shed yet.
        assert!(list.shed_one());
        assert_eq!(slow.closed().await, Phase::Head);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(list.shed_one());
        assert_eq!(
            idle.closed().await,
            Phase::Idle,
            "idle first, once old enough"
        );
        assert!(list.shed_one());
        assert_eq!(young.closed().await, Phase::Fresh);
        assert!(!list.shed_one(), "a busy connection is never shed");
        assert!(busy.0.cut_in().is_none());
    }
}
