//! L4 mode: the strategy picks an upstream per client connection, then bytes are copied both
//! ways untouched. Cheapest per byte, but a client's keep-alive connection stays pinned to
//! one upstream and the upstream pays a connection set-up per client connection.

use std::sync::Arc;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::state::State;
use crate::upstream::Stream;

/// Sent when no upstream accepts a connection. Every upstream here speaks HTTP, so a plain
/// 503 tells the client more than a reset would.
const UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
content-length: 32\r\nconnection: close\r\n\r\n{\"erro\":\"no upstream available\"}";

pub async fn handle(mut client: TcpStream, state: Arc<State>) {
    for index in state.selection.candidates(&state.upstreams, None) {
        let upstream = &state.upstreams[index];
        if upstream.is_down() {
            continue;
        }
        match upstream.connect(state.config.connect_timeout).await {
            Ok(stream) => {
                upstream.mark_ok();
                let _in_flight = upstream.begin();
                // Either side closing or failing ends the connection; nothing to report.
                let _ = match stream {
                    Stream::Unix(mut s) => tokio::io::copy_bidirectional(&mut client, &mut s).await,
                    Stream::Tcp(mut s) => tokio::io::copy_bidirectional(&mut client, &mut s).await,
                };
                return;
            }
            Err(_) => upstream.mark_failed(),
        }
    }
    refuse(client).await;
}

/// Answers 503 and closes politely: the request is read first and the client's side
/// drained after, because closing a socket with unread bytes sends a reset that can
/// destroy the answer before the client reads it.
async fn refuse(mut client: TcpStream) {
    let mut buffer = [0u8; 4096];
    let patience = Duration::from_millis(500);
    let _ = tokio::time::timeout(patience, client.read(&mut buffer)).await;
    if client.write_all(UNAVAILABLE).await.is_ok() && client.shutdown().await.is_ok() {
        let _ = tokio::time::timeout(patience, async {
            while matches!(client.read(&mut buffer).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unavailable_content_length_matches() {
        let text = std::str::from_utf8(super::UNAVAILABLE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
