//! Handing accepted connections from one process to another: the descriptors travel over a
//! Unix `SOCK_SEQPACKET` socket as `SCM_RIGHTS`, several in one message when several are
//! ready. The balancer in `LB_MODE=handoff` sends; an API with `API_HANDOFF_SOCKET` receives
//! and serves HTTP on them as if it had accepted them itself.
//!
//! Why seqpacket: messages keep their boundaries, so each descriptor arrives with the message
//! it was sent in; the socket is connection-oriented, so either side learns at once that the
//! other went away; and a send is all or nothing (never half a batch).
//!
//! Stopping without losing a connection: the receiver shuts down its reading side, which the
//! kernel turns into EPIPE for every later send (under the same lock that queues messages, so
//! there is no window), then reads what was already queued. The sender takes EPIPE as "not
//! handed over" and gives the connection to another receiver.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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

/// Receives one message without waiting, appending its descriptors (close-on-exec, set
/// non-blocking) to `out`. `Ok(false)`: the sender is gone (or, after `stop_receiving`,
/// nothing is left), and nothing more will come.
pub fn receive(link: RawFd, out: &mut Vec<OwnedFd>) -> io::Result<bool> {
    let mut data = [0u8; MAX_BATCH];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = Control([MaybeUninit::uninit(); CONTROL_SPACE]);
    // SAFETY: as in `send`.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.0.as_mut_ptr().cast();
    message.msg_controllen = CONTROL_SPACE;
    // SAFETY: every pointer in `message` is valid for the call.
    let n = check(unsafe {
        libc::recvmsg(
            link,
            &mut message,
            libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
        )
    })?;
    let start = out.len();
    // SAFETY: the kernel filled `message.msg_control` with well-formed headers; walking them
    // with CMSG_FIRSTHDR/CMSG_NXTHDR stays inside it, and every SCM_RIGHTS descriptor is
    // new and ours.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                for i in 0..bytes / size_of::<RawFd>() {
                    out.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
    }
    if message.msg_flags & libc::MSG_CTRUNC != 0 {
        // Only a sender breaking the protocol sends more than MAX_BATCH; the kernel closed
        // the ones that did not fit. Serve the rest.
        eprintln!(
            "handoff: a message carried more than {MAX_BATCH} descriptors; extra ones were closed"
        );
    }
    for fd in &out[start..] {
        // The sender should have made them non-blocking; a blocking one would stall the
        // whole runtime, so make sure.
        set_nonblocking(fd.as_raw_fd())?;
    }
    Ok(n > 0 || out.len() > start)
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with an int argument.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Stops taking connections on `link`: the sender's next send fails with EPIPE, while the
/// messages already queued can still be received (until `receive` answers `Ok(false)`).
pub fn stop_receiving(link: RawFd) {
    // SAFETY: shutdown on a socket we own.
    unsafe { libc::shutdown(link, libc::SHUT_RD) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
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

    fn pair(label: &str) -> (OwnedFd, OwnedFd, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("serverkit-handoff-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.sock");
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
        assert!(receive(receiver.as_raw_fd(), &mut got).unwrap());
        assert_eq!(got.len(), 2, "first message, first batch");
        assert!(receive(receiver.as_raw_fd(), &mut got).unwrap());
        assert_eq!(got.len(), 3);
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
        assert!(
            !receive(receiver.as_raw_fd(), &mut Vec::new()).unwrap(),
            "sender gone"
        );
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
        assert!(receive(receiver.as_raw_fd(), &mut got).unwrap());
        assert_eq!(got.len(), 1, "the queued one is still delivered");
        assert!(
            !receive(receiver.as_raw_fd(), &mut got).unwrap(),
            "then the end"
        );
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
