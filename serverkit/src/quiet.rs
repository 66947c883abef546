//! Sockets that wake their task only when there is something to read.
//!
//! tokio registers every socket for both read and write readiness, edge-triggered. For a
//! request/response proxy or server that is one wasted wake-up per message: when the peer
//! reads what we wrote, the kernel reports "writable" again and the task is scheduled to find
//! nothing to do. Under the official test's paced load (a few hundred requests per second,
//! each on a new connection) every wake-up is a context switch, and these spurious ones cost
//! a measurable share of the CPU (see bench/JOURNAL.md, 2026-11-28).
//!
//! `QuietStream` registers for reads only and writes directly. Our messages are a few hundred
//! bytes against socket buffers of hundreds of kilobytes, so a write almost never finds the
//! buffer full; when it does, it retries on a short timer instead of a readiness event.
//!
//! Both types hold a plain descriptor, whatever its family: a TCP connection, a Unix one, or
//! one another process handed over (`crate::handoff`) are served the same way. Reads and
//! writes pass MSG_DONTWAIT, so they never block whatever the descriptor's own O_NONBLOCK
//! says: a handed-over socket needs no fcntl(2) first.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use crate::sys::socket;

/// How long a write that found the socket buffer full waits before trying again.
const WRITE_RETRY: Duration = Duration::from_millis(1);

/// A non-blocking stream socket registered for read readiness only.
pub struct QuietStream {
    fd: AsyncFd<OwnedFd>,
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
    /// No read has been tried yet. The first read does not wait for readiness: a connection
    /// accepted with TCP_DEFER_ACCEPT or handed over has its request in the socket already,
    /// and waiting would cost a turn of the event loop (an epoll_wait) per connection.
    /// epoll's initial event for the data is dropped by the kernel once the data is read.
    first_read: bool,
}

impl QuietStream {
    /// `fd` must be a connected stream socket.
    pub fn new(fd: impl Into<OwnedFd>) -> io::Result<QuietStream> {
        Ok(QuietStream {
            fd: socket::register_readable(fd.into())?,
            retry: None,
            first_read: true,
        })
    }

    /// The socket's descriptor, for system calls of its own.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }

    /// Turns a full-buffer `WouldBlock` into a wait on the retry timer.
    fn write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl Fn(RawFd) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Some(sleep) = self.retry.as_mut() {
                ready!(std::future::Future::poll(sleep.as_mut(), cx));
                self.retry = None;
            }
            match write(self.raw_fd()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.retry = Some(Box::pin(tokio::time::sleep(WRITE_RETRY)));
                }
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncRead for QuietStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if std::mem::take(&mut self.first_read) {
            match socket::receive(self.raw_fd(), buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Short or not, the readiness tokio learns later is the kernel's to correct.
                result => return Poll::Ready(result.map(drop)),
            }
        }
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            match guard.try_io(|fd| socket::receive(fd.get_ref().as_raw_fd(), buf)) {
                Ok(Ok((n, room))) => {
                    // A short read drained the socket: forget the readiness now rather than
                    // learn it from one more read that fails with EAGAIN (as tokio does).
                    if n > 0 && n < room {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for QuietStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_with(cx, |fd| socket::send(fd, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(cx, |fd| socket::send_vectored(fd, bufs))
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

/// A listening socket (TCP, Unix stream or Unix seqpacket) whose accepted connections come
/// out non-blocking, in one system call each.
pub struct QuietListener {
    fd: AsyncFd<OwnedFd>,
}

impl QuietListener {
    /// `listener` must already be listening, in non-blocking mode.
    pub fn new(listener: impl Into<OwnedFd>) -> io::Result<QuietListener> {
        Ok(QuietListener {
            fd: socket::register_readable(listener.into())?,
        })
    }

    /// The listener's descriptor, for system calls of its own.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }

    /// Resolves once a connection is waiting (without taking it).
    pub async fn ready(&self) -> io::Result<()> {
        self.fd.readable().await.map(drop)
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<OwnedFd> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| socket::accept(fd.get_ref())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// A connection already waiting, without waiting for one. `None` also forgets the
    /// readiness, so the next `accept` sleeps until a new connection arrives.
    pub fn try_accept(&self) -> io::Result<Option<OwnedFd>> {
        none_if_would_block(self.fd.try_io(Interest::READABLE, socket::accept))
    }

    /// A connection waiting in the backlog now, asking the kernel. `try_accept` trusts
    /// tokio's record of readiness and does not call accept(2) while that record is empty,
    /// which it is for a connection that arrived since the reactor last looked: fine in a
    /// loop that awaits readiness, wrong for emptying the backlog before the listener closes
    /// (a handoff link connected then would be closed with the descriptors it carries).
    pub fn accept_queued(&self) -> io::Result<Option<OwnedFd>> {
        none_if_would_block(socket::accept(self.fd.get_ref()))
    }
}

/// An accept's result with "nothing waiting" as `None`.
fn none_if_would_block(accepted: io::Result<OwnedFd>) -> io::Result<Option<OwnedFd>> {
    match accepted {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A listener on a Unix socket `s.sock` in a directory of the test's own (removed by the
    /// test): the directory, the socket's path, the listener.
    fn unix_listener(label: &str) -> (std::path::PathBuf, std::path::PathBuf, QuietListener) {
        let dir = std::env::temp_dir().join(format!("serverkit-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        (dir, path, QuietListener::new(listener).unwrap())
    }

    #[tokio::test]
    async fn echoes_through_accepted_streams() {
        let (dir, path, listener) = unix_listener("quiet");
        assert!(
            listener.try_accept().unwrap().is_none(),
            "nothing waiting yet"
        );
        let server = tokio::spawn(async move {
            let mut stream = QuietStream::new(listener.accept().await.unwrap()).unwrap();
            let mut buf = vec![0u8; 5];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(&buf).await.unwrap();
        });
        let client = UnixStream::connect(&path).unwrap();
        client.set_nonblocking(true).unwrap();
        let mut client = QuietStream::new(client).unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut back = vec![0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        server.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What lost a handed-over connection now and then while an API drained: a link that
    /// connected since the reactor last looked is invisible to `try_accept`.
    #[tokio::test]
    async fn accept_queued_finds_what_try_accept_has_not_been_told_of() {
        let (dir, path, listener) = unix_listener("queued");
        let _client = UnixStream::connect(&path).unwrap();
        // No await since the connect: the reactor has not seen it.
        assert!(
            listener.try_accept().unwrap().is_none(),
            "tokio's record is empty"
        );
        assert!(
            listener.accept_queued().unwrap().is_some(),
            "the kernel has it"
        );
        assert!(listener.accept_queued().unwrap().is_none(), "and only it");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_descriptor_in_blocking_mode_never_blocks_the_runtime() {
        // As a handed-over socket may arrive: O_NONBLOCK not set.
        let (a, b) = UnixStream::pair().unwrap();
        let mut stream = QuietStream::new(a).unwrap();
        let mut buf = [0u8; 4];
        let waited = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await;
        assert!(
            waited.is_err(),
            "nothing to read: it waits, without blocking the thread"
        );
        std::io::Write::write_all(&mut &b, b"ping").unwrap();
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        stream.write_all(b"pong").await.unwrap();
        let mut back = [0u8; 4];
        std::io::Read::read_exact(&mut &b, &mut back).unwrap();
        assert_eq!(&back, b"pong");
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
