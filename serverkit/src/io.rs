//! Sockets that wake their task only when there is something to read, and the other
//! per-connection economies of both servers.
//!
//! tokio registers every socket for both read and write readiness, edge-triggered. For a
//! request/response proxy or server that is one wasted wake-up per message: when the peer
//! reads what we wrote, the kernel reports "writable" again and the task is scheduled to find
//! nothing to do. Under the official test's paced load (a few hundred requests per second,
//! each on a new connection) every wake-up is a context switch, and these spurious ones cost
//! a measurable share of the CPU (see BENCHMARKS.md).
//!
//! `QuietStream` registers for reads only and writes directly. Our messages are a few hundred
//! bytes against socket buffers of hundreds of kilobytes, so a write almost never finds the
//! buffer full; when it does, it retries on a short timer instead of a readiness event.

use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// How long a write that found the socket buffer full waits before trying again.
const WRITE_RETRY: Duration = Duration::from_millis(1);

/// Registers a socket for read readiness. `S` owns its descriptor (a std socket), which
/// stays open and the same for as long as the `AsyncFd` lives: the safety contract.
fn register<S: AsRawFd>(socket: S) -> io::Result<AsyncFd<S>> {
    // SAFETY: see above; the descriptor is owned by `socket`, which the AsyncFd owns.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// A non-blocking stream socket registered for read readiness only.
pub struct QuietStream<S: AsRawFd> {
    fd: AsyncFd<S>,
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: AsRawFd> QuietStream<S> {
    /// `stream` must already be in non-blocking mode.
    pub fn new(stream: S) -> io::Result<QuietStream<S>> {
        Ok(QuietStream {
            fd: register(stream)?,
            retry: None,
        })
    }

    pub fn get_ref(&self) -> &S {
        self.fd.get_ref()
    }

    /// Turns a full-buffer `WouldBlock` into a wait on the retry timer.
    fn write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl Fn(&S) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            if let Some(sleep) = self.retry.as_mut() {
                ready!(std::future::Future::poll(sleep.as_mut(), cx));
                self.retry = None;
            }
            match write(self.fd.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.retry = Some(Box::pin(tokio::time::sleep(WRITE_RETRY)));
                }
                result => return Poll::Ready(result),
            }
        }
    }
}

impl<S: AsRawFd + Unpin> AsyncRead for QuietStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            // SAFETY: read(2) only writes into the buffer, so it may be uninitialised (hyper
            // hands over 8 KiB of it per read; zeroing it first showed up in profiles).
            let unfilled = unsafe { buf.unfilled_mut() };
            let room = unfilled.len();
            let result = guard.try_io(|fd| {
                // SAFETY: `unfilled` is valid for `room` bytes of writes.
                let n = unsafe {
                    libc::read(fd.get_ref().as_raw_fd(), unfilled.as_mut_ptr().cast(), room)
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(Ok(n)) => {
                    // A short read drained the socket: forget the readiness now rather than
                    // learn it from one more read that fails with EAGAIN (as tokio does).
                    if n > 0 && n < room {
                        guard.clear_ready();
                    }
                    // SAFETY: read(2) initialised the first `n` bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl<S: AsRawFd + Unpin> AsyncWrite for QuietStream<S>
where
    for<'a> &'a S: Write,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_with(cx, |mut s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(cx, |mut s| s.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Nothing to do: the socket is closed right after, and closing sends the FIN, so a
    /// separate shutdown(2) would only cost a system call.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// At most a fixed number of connections at once. Past it, new connections wait in the
/// kernel's accept queue instead of growing memory without bound under overload (the
/// balancer was OOM-killed at ten times the official load before this).
#[derive(Clone)]
pub struct ConnectionLimit(std::sync::Arc<tokio::sync::Semaphore>);

/// A connection's place under the limit, given back when dropped.
pub type ConnectionPermit = tokio::sync::OwnedSemaphorePermit;

impl ConnectionLimit {
    pub fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit(std::sync::Arc::new(tokio::sync::Semaphore::new(max)))
    }

    /// Waits until every permit has been given back: all connections are closed.
    pub async fn all_closed(&self, max: usize) {
        let max = u32::try_from(max).expect("connection limits fit in u32");
        drop(
            self.0
                .acquire_many(max)
                .await
                .expect("the semaphore is never closed"),
        );
    }

    /// Waits until fewer than `max` connections are open.
    pub async fn acquire(&self) -> ConnectionPermit {
        self.0
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

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

/// Sets TCP_DEFER_ACCEPT: the kernel wakes the accepting task only once the client's first
/// bytes have arrived, so accept and read are one wake-up instead of two.
pub fn defer_accept(listener: &impl AsRawFd, seconds: i32) -> io::Result<()> {
    // SAFETY: setsockopt on a socket we own, with a correctly sized int option.
    let result = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A listening socket whose accepted connections come out non-blocking, in one system call.
pub struct QuietListener<L: AsRawFd> {
    fd: AsyncFd<L>,
}

impl<L: AsRawFd> QuietListener<L> {
    /// `listener` must already be in non-blocking mode.
    pub fn new(listener: L) -> io::Result<QuietListener<L>> {
        Ok(QuietListener {
            fd: register(listener)?,
        })
    }

    pub fn get_ref(&self) -> &L {
        self.fd.get_ref()
    }

    /// The next connection, as a non-blocking socket of type `S` (`TcpStream`, `UnixStream`).
    pub async fn accept<S: FromRawFd>(&self) -> io::Result<S> {
        loop {
            let mut guard = self.fd.readable().await?;
            let accepted = guard.try_io(|fd| {
                // SAFETY: accept4 on a listening socket we own, with null address pointers
                // (allowed); a returned descriptor is new and ours alone.
                let raw = unsafe {
                    libc::accept4(
                        fd.get_ref().as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    )
                };
                if raw < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    // SAFETY: `raw` is a fresh, valid descriptor owned by nobody else.
                    Ok(unsafe { S::from_raw_fd(raw) })
                }
            });
            match accepted {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn echoes_through_accepted_streams() {
        let dir = std::env::temp_dir().join(format!("serverkit-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = QuietListener::new(listener).unwrap();
        let server = tokio::spawn(async move {
            let stream: UnixStream = listener.accept().await.unwrap();
            let mut stream = QuietStream::new(stream).unwrap();
            let mut buf = vec![0u8; 5];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(&buf).await.unwrap();
        });
        let client = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut client = QuietStream::new(client.into_std().unwrap()).unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut back = vec![0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        server.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_full_buffer_is_retried_until_the_peer_reads() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let mut writer = QuietStream::new(a).unwrap();
        let mut reader = QuietStream::new(b).unwrap();
        // Far more than a socket buffer holds: the writer must wait for the reader.
        let data: Vec<u8> = (0..4_000_000u32).map(|i| i as u8).collect();
        let expected = data.clone();
        let write = tokio::spawn(async move { writer.write_all(&data).await.unwrap() });
        let mut got = vec![0u8; expected.len()];
        reader.read_exact(&mut got).await.unwrap();
        write.await.unwrap();
        assert!(got == expected);
    }
}
