//! The wire format: descriptors as SCM_RIGHTS on a SOCK_SEQPACKET socket.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::quiet::check;

/// Descriptors in one message at the most (the kernel's own limit is 253).
pub const MAX_BATCH: usize = 64;

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

/// Room for the control message of a full batch: CMSG_SPACE(MAX_BATCH * sizeof(int)) on
/// Linux, a header then the data, each padded to the size of a long.
const CONTROL_SPACE: usize =
    align_to_long(size_of::<libc::cmsghdr>()) + align_to_long(MAX_BATCH * size_of::<RawFd>());

const fn align_to_long(n: usize) -> usize {
    (n + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// Control message buffer, aligned as cmsghdr requires.
#[repr(C, align(8))]
struct Control([MaybeUninit<u8>; CONTROL_SPACE]);

/// Sends `fds` (at most `MAX_BATCH`) in one message without waiting. `WouldBlock` means the
/// receiver has too much queued already; any other error means the link is gone. Either
/// way nothing was handed over, and the descriptors are still ours.
pub fn send(link: RawFd, fds: &[RawFd]) -> io::Result<()> {
    assert!(!fds.is_empty() && fds.len() <= MAX_BATCH, "1..=MAX_BATCH");
    let data = [0u8; MAX_BATCH]; // one byte per descriptor: a message cannot be empty
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: fds.len(),
    };
    let mut control = Control([MaybeUninit::uninit(); CONTROL_SPACE]);
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: msghdr is plain data; zeroed is a valid empty value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    message.msg_controllen = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    // SAFETY: the control buffer is large enough for one header and `fds` (checked above),
    // and CMSG_FIRSTHDR/CMSG_DATA point inside it.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(header), fd_bytes);
    }
    // SAFETY: every pointer in `message` is valid for the call.
    let sent =
        check(unsafe { libc::sendmsg(link, &message, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) })?;
    debug_assert_eq!(sent, fds.len(), "seqpacket sends are all or nothing");
    Ok(())
}

/// Messages read by one `receive` at the most.
const MESSAGES: usize = 4;

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
    let mut data = [[0u8; MAX_BATCH]; MESSAGES];
    let mut iovs: [libc::iovec; MESSAGES] = std::array::from_fn(|i| libc::iovec {
        iov_base: data[i].as_mut_ptr().cast(),
        iov_len: MAX_BATCH,
    });
    let mut controls: [Control; MESSAGES] =
        std::array::from_fn(|_| Control([MaybeUninit::uninit(); CONTROL_SPACE]));
    // SAFETY: mmsghdr is plain data; zeroed is a valid empty value.
    let mut messages: [libc::mmsghdr; MESSAGES] = unsafe { std::mem::zeroed() };
    for (i, message) in messages.iter_mut().enumerate() {
        message.msg_hdr.msg_iov = &mut iovs[i];
        message.msg_hdr.msg_iovlen = 1;
        message.msg_hdr.msg_control = controls[i].0.as_mut_ptr().cast();
        message.msg_hdr.msg_controllen = CONTROL_SPACE;
    }
    // SAFETY: every pointer in `messages` is valid for the call; no timeout.
    let count = unsafe {
        libc::recvmmsg(
            link,
            messages.as_mut_ptr(),
            MESSAGES as libc::c_uint,
            libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let count = check(count as isize)?;
    let start = out.len();
    let mut closed = false;
    for message in &messages[..count] {
        let before = out.len();
        // SAFETY: the kernel filled this message's control buffer with well-formed headers.
        unsafe { take_descriptors(&message.msg_hdr, out) };
        // A message is at least one byte; an empty one without descriptors is the end.
        if message.msg_len == 0 && out.len() == before {
            closed = true;
        }
    }
    Ok(if closed && out.len() == start {
        Received::Closed
    } else if count < MESSAGES && !closed {
        Received::Drained
    } else {
        Received::Some
    })
}

/// Appends the SCM_RIGHTS descriptors of a received message to `out`.
///
/// # Safety
/// `message` was filled by recvmsg/recvmmsg: its control data holds well-formed headers, and
/// every SCM_RIGHTS descriptor is new and ours.
unsafe fn take_descriptors(message: &libc::msghdr, out: &mut Vec<OwnedFd>) {
    let mut header = libc::CMSG_FIRSTHDR(message);
    while !header.is_null() {
        if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
            let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            let data = libc::CMSG_DATA(header).cast::<RawFd>();
            for i in 0..bytes / size_of::<RawFd>() {
                out.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
            }
        }
        header = libc::CMSG_NXTHDR(message, header);
    }
    if message.msg_flags & libc::MSG_CTRUNC != 0 {
        // Only a sender breaking the protocol sends more than MAX_BATCH; the kernel closed
        // the ones that did not fit. Serve the rest.
        eprintln!(
            "handoff: a message carried more than {MAX_BATCH} descriptors; extra ones were closed"
        );
    }
}

/// Stops taking connections on `link`: the sender's next send fails with EPIPE, while the
/// messages already queued can still be received (until `receive` answers `Closed`). On a
/// handoff listener: connect is refused, and links already queued can still be accepted.
pub fn stop_receiving(link: RawFd) {
    // SAFETY: shutdown on a socket we own.
    unsafe { libc::shutdown(link, libc::SHUT_RD) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn accept(listener: &OwnedFd) -> OwnedFd {
        for _ in 0..100 {
            // SAFETY: accept4 on our listener with null address pointers.
            let fd = unsafe {
                libc::accept4(
                    listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: a fresh descriptor.
                return unsafe { OwnedFd::from_raw_fd(fd) };
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
        for _ in 0..MESSAGES + 1 {
            send(sender.as_raw_fd(), &raw[..1]).unwrap();
        }
        let mut more = Vec::new();
        assert_eq!(
            receive(receiver.as_raw_fd(), &mut more).unwrap(),
            Received::Some
        );
        assert_eq!(more.len(), MESSAGES, "a full read: maybe more");
        assert_eq!(
            receive(receiver.as_raw_fd(), &mut more).unwrap(),
            Received::Drained
        );
        assert_eq!(more.len(), MESSAGES + 1);
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
