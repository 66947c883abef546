//! The http mode's pooled HTTP/1.1 connections to one upstream. They outlive client
//! connections, so the official test's one-request-per-connection clients cost the upstream
//! no connection set-up at all.

use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serverkit::quiet::QuietStream;

use crate::address::{Stream, UpstreamAddr};

/// Idle connections kept per upstream; more than the peak concurrency is never useful.
const MAX_IDLE: usize = 256;

/// A connection idle for longer is closed instead of reused. The APIs close connections idle
/// for API_IDLE_TIMEOUT_MS (60 s by default); reusing one at that moment would write a request
/// into a closing connection, and a POST that may have been read cannot be sent again. Like
/// nginx's upstream keepalive_timeout, kept well below the server's.
const IDLE_REUSE_MAX: Duration = Duration::from_secs(30);

pub(crate) type Sender = SendRequest<Full<Bytes>>;

/// A connection taken from the pool (or opened for the occasion).
pub(crate) struct Checkout {
    pub sender: Sender,
    /// It was idle in the pool: a request it fails to write may be retried on another.
    pub reused: bool,
}

#[derive(Default)]
pub(crate) struct Pool {
    /// With when each went idle; the most recent last.
    idle: Mutex<Vec<(Sender, Instant)>>,
}

impl Pool {
    /// An idle connection that is still open, or else a new one to `addr`.
    pub(crate) async fn checkout(
        &self,
        addr: &UpstreamAddr,
        timeout: Duration,
    ) -> Result<Checkout, ()> {
        loop {
            let Some((mut sender, since)) = self.idle.lock().unwrap().pop() else {
                break;
            };
            if since.elapsed() > IDLE_REUSE_MAX {
                continue; // dropped: closed
            }
            if sender.ready().await.is_ok() {
                return Ok(Checkout {
                    sender,
                    reused: true,
                });
            }
            // Closed while idle (the upstream restarted): try the next one.
        }
        let sender = open(addr, timeout).await?;
        Ok(Checkout {
            sender,
            reused: false,
        })
    }

    /// Gives a connection back after a complete exchange.
    pub(crate) fn checkin(&self, sender: Sender) {
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    /// Drops every idle connection: after a failure they are suspect.
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap().clear();
    }
}

/// Connects and shakes hands; the connection's own task runs until it closes.
async fn open(addr: &UpstreamAddr, timeout: Duration) -> Result<Sender, ()> {
    let fd: OwnedFd = match addr.connect_stream(timeout).await.map_err(drop)? {
        Stream::Unix(s) => s.into_std().map_err(drop)?.into(),
        Stream::Tcp(s) => s.into_std().map_err(drop)?.into(),
    };
    // Pooled connections only ever need to wake for responses: see serverkit::quiet.
    let stream = QuietStream::new(fd).map_err(drop)?;
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(drop)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
