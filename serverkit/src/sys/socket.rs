//! Sockets: accept, recv and send without waiting, socket options, and registering a
//! descriptor with tokio for read readiness only (`crate::quiet` says why).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, ReadBuf};

/// Never block; a peer that went away is an EPIPE error, not a SIGPIPE.
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// The result of a system call that returns a count or -1.
pub(crate) fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Registers a descriptor for read readiness only.
pub(crate) fn register_readable(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same for as
    // long as the registration lives (tokio's contract).
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// A connection waiting on `listener`, non-blocking and close-on-exec.
pub(crate) fn accept(listener: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: accept4 on a listening socket we own, with null address pointers (allowed).
    let raw = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh, valid descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// One recv(2) into the unfilled part of `buf`, without waiting: the bytes read and the room
/// there was.
pub(crate) fn receive(fd: RawFd, buf: &mut ReadBuf<'_>) -> io::Result<(usize, usize)> {
    // SAFETY: recv(2) only writes into the buffer, so it may be uninitialised (hyper hands
    // over 8 KiB of it per read; zeroing it first showed up in profiles).
    let unfilled = unsafe { buf.unfilled_mut() };
    let room = unfilled.len();
    // SAFETY: `unfilled` is valid for `room` bytes of writes.
    let n =
        check(unsafe { libc::recv(fd, unfilled.as_mut_ptr().cast(), room, libc::MSG_DONTWAIT) })?;
    // SAFETY: recv(2) initialised the first `n` bytes.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok((n, room))
}

/// One send(2) of `buf`, without waiting: the bytes the kernel took.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
    check(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) })
}

/// One sendmsg(2) of up to UIO_MAXIOV of `bufs`, without waiting: the bytes the kernel took.
pub(crate) fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(libc::UIO_MAXIOV as usize);
    // SAFETY: msghdr is plain data; zeroed is a valid empty value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec on Unix (documented by std); sendmsg only reads
    // through the pointer.
    message.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    message.msg_iovlen = count;
    // SAFETY: every slice is valid for reads for the duration of the call.
    check(unsafe { libc::sendmsg(fd, &message, SEND_FLAGS) })
}

/// shutdown(SHUT_RD): no more reading on `fd`, which on a Unix socket also refuses senders
/// (`crate::handoff` builds on that).
pub(crate) fn shut_reading(fd: RawFd) {
    // SAFETY: shutdown on a socket the caller keeps open; the result is advisory.
    unsafe { libc::shutdown(fd, libc::SHUT_RD) };
}

/// Takes `fd`, passed down by a parent process, if it is a listening socket; leaves it alone
/// (not ours to close) if it is anything else.
pub(crate) fn adopt_listener(fd: RawFd) -> Result<Socket, String> {
    // SAFETY: the parent passed this descriptor to us alone; we check it is a listening
    // socket before taking it.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    if !is_listening(&socket) {
        std::mem::forget(socket); // not ours to close if it is something else
        return Err(format!("descriptor {fd} is not a listening socket"));
    }
    Ok(socket)
}

/// Whether `socket` is a socket in the listening state (SO_ACCEPTCONN).
fn is_listening(socket: &impl AsRawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt with an int-sized buffer; a non-socket gives an error.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    result == 0 && value != 0
}

/// Sets TCP_DEFER_ACCEPT to `seconds` on a TCP listener.
pub(crate) fn defer_accept(listener: &impl AsRawFd, seconds: i32) -> io::Result<()> {
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
