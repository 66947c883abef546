//! What a peer on a handoff link can send: any sequence of messages, each with any payload
//! (empty too) and any number of descriptors (past MAX_BATCH too). receive never panics,
//! hands over at most what was sent, and all of it when the peer kept to the protocol (no
//! message over MAX_BATCH descriptors, and none empty: an empty message reads as the end).
#![no_main]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use libfuzzer_sys::fuzz_target;
use serverkit::handoff::wire::{receive, Received};
use serverkit::handoff::MAX_BATCH;

/// A message the peer sends: payload length and descriptor count.
fn messages(input: &[u8]) -> Vec<(usize, usize)> {
    input
        .chunks(2)
        .take(8)
        .map(|pair| {
            (
                usize::from(pair[0]) % 80,
                usize::from(*pair.get(1).unwrap_or(&0)) % 70,
            )
        })
        .collect()
}

fn send_raw(link: RawFd, payload: usize, fds: &[RawFd]) -> bool {
    let data = [7u8; 80];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: payload,
    };
    let mut control = vec![0u8; unsafe { libc::CMSG_SPACE((fds.len() * 4) as u32) } as usize];
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    if !fds.is_empty() {
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = control.len();
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&message);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(header),
                fds.len() * 4,
            );
        }
    }
    unsafe { libc::sendmsg(link, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) >= 0 }
}

fuzz_target!(|input: &[u8]| {
    let mut pair = [0; 2];
    assert_eq!(
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, pair.as_mut_ptr()) },
        0
    );
    let (peer, link) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let (mut sent, mut broke_protocol) = (0, false);
    for (payload, count) in messages(input) {
        let fds = vec![devnull.as_raw_fd(); count];
        if send_raw(peer.as_raw_fd(), payload, &fds) {
            sent += count;
            broke_protocol |= count > MAX_BATCH || (payload == 0 && count == 0);
        }
    }
    drop(peer);
    let mut got = Vec::new();
    loop {
        match receive(link.as_raw_fd(), &mut got) {
            Ok(Received::Closed) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the peer is gone: Closed, not WouldBlock")
            }
            Err(e) => panic!("receive failed: {e}"),
        }
    }
    assert!(got.len() <= sent);
    if !broke_protocol {
        assert_eq!(got.len(), sent, "every descriptor sent arrives");
    }
});
