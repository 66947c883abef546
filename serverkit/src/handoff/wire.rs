//! The wire format: descriptors as SCM_RIGHTS on a SOCK_SEQPACKET socket.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::sys::{fd_passing, socket};

/// Descriptors in one message at the most (the kernel's own limit is 253).
pub const MAX_BATCH: usize = fd_passing::MAX_FDS;

/// How much a sender may have queued at one receiver before sends fail with `WouldBlock`:
/// a message is about 1 KiB of kernel memory, so some 60 connections. A receiver at its
/// connection limit stops reading, and this is how the sender finds out.
const SEND_BUFFER: usize = 64 * 1024;

fn seqpacket() -> io::Result<Socket> {
    // socket2 sets close-on-exec.
    let socket = Socket::new(Domain::UNIX, Type::from(libc::SOCK_SEQPACKET), None)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A listening handoff socket at `path` (which must not exist), non-blocking.
pub fn listen(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let socket = seqpacket()?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// A connection to the handoff socket at `path`, non-blocking. Connecting to a Unix socket
/// never waits: it succeeds, or fails at once (nobody listening, backlog full).
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let socket = seqpacket()?;
    socket.set_send_buffer_size(SEND_BUFFER)?;
    socket.connect(&SockAddr::unix(path)?)?;
    Ok(socket.into())
}

/// Sends `fds` (at most `MAX_BATCH`) in one message without waiting. `WouldBlock` means the
/// receiver has too much queued already; any other error means the link is gone. Either
/// way nothing was handed over, and the descriptors are still ours.
pub fn send(link: RawFd, fds: &[RawFd]) -> io::Result<()> {
    // send_fds asserts 1..=MAX_BATCH: its control buffer is sized for MAX_BATCH.
    fd_passing::send_fds(link, fds)
}

/// What one `receive` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Messages (their descriptors appended); more may be queued.
    Some,
    /// Messages, and the queue was empty after them: a later message is a new readiness
    /// event, so the caller may forget the readiness without one more read (EAGAIN).
    Drained,
    /// The sender is gone (or, after `stop_receiving`, nothing is left): nothing more comes.
    Closed,
}

/// Receives what is queued, up to MESSAGES messages in one system call, without waiting;
/// appends their descriptors (close-on-exec) to `out`. `WouldBlock` when nothing is queued.
/// The descriptors may be in blocking mode: `QuietStream` never relies on a descriptor's
/// own flag.
pub fn receive(link: RawFd, out: &mut Vec<OwnedFd>) -> io::Result<Received> {
    let start = out.len();
    let (count, closed) = fd_passing::receive_fds(link, out)?;
    Ok(if closed && out.len() == start {
        Received::Closed
    } else if count < fd_passing::MESSAGES && !closed {
        Received::Drained
    } else {
        Received::Some
    })
}

/// Stops taking connections on `link`: the sender's next send fails with EPIPE, while the
/// messages already queued can still be received (until `receive` answers `Closed`). On a
/// handoff listener: connect is refused, and links already queued can still be accepted.
pub fn stop_receiving(link: RawFd) {
    socket::shut_reading(link);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn accept(listener: &OwnedFd) -> OwnedFd {
        for _ in 0..100 {
            if let Ok(fd) = crate::sys::socket::accept(listener) {
                return fd;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("no connection");
    }

    /// A fresh directory for one test's socket, and the socket's path in it.
    fn socket_dir(label: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("serverkit-handoff-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.sock");
        (dir, path)
    }

    fn pair(label: &str) -> (OwnedFd, OwnedFd, std::path::PathBuf) {
        let (dir, path) = socket_dir(label);
        let listener = listen(&path, 8).unwrap();
        let sender = connect(&path).unwrap();
        let receiver = accept(&listener);
        (sender, receiver, dir)
    }

    #[test]
    fn descriptors_arrive_in_batches_and_work() {
        let (sender, receiver, dir) = pair("batch");
        let streams: Vec<(UnixStream, UnixStream)> =
            (0..3).map(|_| UnixStream::pair().unwrap()).collect();
        let raw: Vec<RawFd> = streams.iter().map(|(a, _)| a.as_raw_fd()).collect();
        send(sender.as_raw_fd(), &raw[..2]).unwrap();
        send(sender.as_raw_fd(), &raw[2..]).unwrap();
        let mut got = Vec::new();
        // Both messages in one call, and it says the queue is empty after them.
        assert_eq!(
            receive(receiver.as_raw_fd(), &mut got).unwrap(),
            Received::Drained
        );
        assert_eq!(got.len(), 3);
        for _ in 0..fd_passing::MESSAGES + 1 {
            send(sender.as_raw_fd(), &raw[..1]).unwrap();
        }
        let mut more = Vec::new();
        assert_eq!(
            receive(receiver.as_raw_fd(), &mut more).unwrap(),
            Received::Some
        );
        assert_eq!(more.len(), fd_passing::MESSAGES, "a full read: maybe more");
        assert_eq!(
            receive(receiver.as_raw_fd(), &mut more).unwrap(),
            Received::Drained
        );
        assert_eq!(more.len(), fd_passing::MESSAGES + 1);
        // The received descriptors are the same connections: write through one, read at the peer.
        for (i, fd) in got.into_iter().enumerate() {
            let mut stream = UnixStream::from(fd);
            stream.write_all(&[i as u8]).unwrap();
            let mut byte = [9u8];
            let mut peer = &streams[i].1;
            peer.read_exact(&mut byte).unwrap();
            assert_eq!(byte[0], i as u8);
        }
        let err = receive(receiver.as_raw_fd(), &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "nothing queued");
        drop(sender);
        let end = receive(receiver.as_raw_fd(), &mut Vec::new()).unwrap();
        assert_eq!(end, Received::Closed, "sender gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stopping_refuses_new_sends_but_keeps_the_queued_ones() {
        let (sender, receiver, dir) = pair("stop");
        let (a, _peer) = UnixStream::pair().unwrap();
        send(sender.as_raw_fd(), &[a.as_raw_fd()]).unwrap();
        stop_receiving(receiver.as_raw_fd());
        let err = send(sender.as_raw_fd(), &[a.as_raw_fd()]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE), "{err}");
        let mut got = Vec::new();
        let queued = receive(receiver.as_raw_fd(), &mut got).unwrap();
        assert_ne!(queued, Received::Closed);
        assert_eq!(got.len(), 1, "the queued one is still delivered");
        let end = receive(receiver.as_raw_fd(), &mut got).unwrap();
        assert_eq!(end, Received::Closed, "then the end");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stopped_listener_refuses_new_links_but_hands_out_the_queued_ones() {
        let (dir, path) = socket_dir("lstop");
        let listener = listen(&path, 8).unwrap();
        // Connected and already carrying a connection, but not accepted yet.
        let early = connect(&path).unwrap();
        let (a, _peer) = UnixStream::pair().unwrap();
        send(early.as_raw_fd(), &[a.as_raw_fd()]).unwrap();
        stop_receiving(listener.as_raw_fd());
        let err = connect(&path).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED), "{err}");
        let link = accept(&listener);
        let mut got = Vec::new();
        assert_ne!(
            receive(link.as_raw_fd(), &mut got).unwrap(),
            Received::Closed
        );
        assert_eq!(got.len(), 1, "the queued connection is delivered");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_receiver_that_does_not_read_pushes_back() {
        let (sender, _receiver, dir) = pair("full");
        let (a, _peer) = UnixStream::pair().unwrap();
        let mut sent = 0;
        let err = loop {
            match send(sender.as_raw_fd(), &[a.as_raw_fd()]) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 10_000, "never pushed back");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(sent >= 8, "room for a few: {sent}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
