//! Serving a connection until its watch cuts it off: the one path the API's HTTP
//! connections and the balancer's TCP-served connections share.

use std::future::Future;
use std::os::fd::RawFd;

use super::watch::Watch;

/// The answer to a request whose head or body did not arrive within its deadline.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
content-length: 27\r\nconnection: close\r\n\r\n{\"erro\":\"request too slow\"}";

/// Runs `served` in a task of its own until it ends, or until `watch` says to close the
/// connection (a deadline passed, or it was shed at the cap): then a client that had started
/// a request gets a 408 on `fd`, and `served` is dropped with the descriptor it owns. `place`
/// (the connection's permit) is held until then.
pub fn spawn_until_cut<F>(fd: RawFd, watch: Watch, place: impl Send + 'static, served: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut served = std::pin::pin!(served);
        tokio::select! {
            biased;
            _ = served.as_mut() => {}
            phase = watch.closed() => {
                if phase.answers_408() {
                    // The descriptor is still open: `served` owns it until the end of this task.
                    request_timeout(fd);
                }
            }
        }
        drop(place);
    });
}

/// Tells a client whose request did not arrive in time, best effort (a full buffer or a
/// vanished peer just lose it: the connection closes either way).
fn request_timeout(fd: RawFd) {
    let _ = crate::sys::socket::send(fd, REQUEST_TIMEOUT);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_408_content_length_matches() {
        let text = std::str::from_utf8(super::REQUEST_TIMEOUT).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
