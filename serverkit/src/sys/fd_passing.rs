//! Descriptors in SCM_RIGHTS messages on a SOCK_SEQPACKET socket: the system calls under
//! the handoff's wire (`crate::handoff::wire` gives them their meaning).

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::socket::check;

/// Descriptors in one message at the most (the kernel's own limit is 253).
pub(crate) const MAX_FDS: usize = 64;

/// Messages read by one `receive_fds` at the most.
pub(crate) const MESSAGES: usize = 4;

/// Room for the control message of a full batch: CMSG_SPACE(MAX_FDS * sizeof(int)) on
/// Linux, a header then the data, each padded to the size of a long.
const CONTROL_SPACE: usize =
    align_to_long(size_of::<libc::cmsghdr>()) + align_to_long(MAX_FDS * size_of::<RawFd>());

const fn align_to_long(n: usize) -> usize {
    (n + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// Control message buffer, aligned as cmsghdr requires.
#[repr(C, align(8))]
struct Control([MaybeUninit<u8>; CONTROL_SPACE]);

/// Sends `fds` (1 to MAX_FDS) in one message without waiting.
pub(crate) fn send_fds(link: RawFd, fds: &[RawFd]) -> io::Result<()> {
    assert!(!fds.is_empty() && fds.len() <= MAX_FDS, "1..=MAX_FDS");
    let data = [0u8; MAX_FDS]; // one byte per descriptor: a message cannot be empty
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
    assert_eq!(sent, fds.len(), "seqpacket sends are all or nothing");
    Ok(())
}

/// Receives up to MESSAGES queued messages in one system call, without waiting, appending
/// their descriptors (close-on-exec) to `out`: how many messages, and whether one of them was
/// the end of the link. `WouldBlock` when nothing is queued.
pub(crate) fn receive_fds(link: RawFd, out: &mut Vec<OwnedFd>) -> io::Result<(usize, bool)> {
    let mut data = [[0u8; MAX_FDS]; MESSAGES];
    let mut iovs: [libc::iovec; MESSAGES] = std::array::from_fn(|i| libc::iovec {
        iov_base: data[i].as_mut_ptr().cast(),
        iov_len: MAX_FDS,
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
    Ok((count, closed))
}

/// Appends the SCM_RIGHTS descriptors of a received message to `out`.
///
/// # Safety
/// `message` was filled by recvmsg/recvmmsg: its control data holds well-formed headers, and
/// every SCM_RIGHTS descriptor is new and ours.
unsafe fn take_descriptors(message: &libc::msghdr, out: &mut Vec<OwnedFd>) {
    // SAFETY: the caller's promise that the kernel wrote these headers; CMSG_FIRSTHDR and
    // CMSG_NXTHDR walk them within msg_controllen (the blocks below say "as above").
    let mut header = unsafe { libc::CMSG_FIRSTHDR(message) };
    while !header.is_null() {
        // SAFETY: as above.
        let (level, kind, len) = unsafe {
            (
                (*header).cmsg_level,
                (*header).cmsg_type,
                (*header).cmsg_len,
            )
        };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: as above.
            let bytes = len - unsafe { libc::CMSG_LEN(0) } as usize;
            // SAFETY: as above.
            let data = unsafe { libc::CMSG_DATA(header) }.cast::<RawFd>();
            for i in 0..bytes / size_of::<RawFd>() {
                // SAFETY: `i` is inside the header's data, and each descriptor is new and ours.
                out.push(unsafe { OwnedFd::from_raw_fd(data.add(i).read_unaligned()) });
            }
        }
        // SAFETY: as above.
        header = unsafe { libc::CMSG_NXTHDR(message, header) };
    }
    if message.msg_flags & libc::MSG_CTRUNC != 0 {
        // Only a sender breaking the protocol sends more than MAX_FDS; the kernel closed
        // the ones that did not fit. Serve the rest.
        tracing::warn!(
            "handoff: a message carried more than {MAX_FDS} descriptors; extra ones were closed"
        );
    }
}
