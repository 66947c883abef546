//! The balancer's own 503, for the modes that never parse HTTP (tcp, handoff): when no
//! upstream takes a connection, a plain answer tells the client more than a reset would.

use std::time::Duration;

use serverkit::deadline::Phase;
use serverkit::server::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
content-length: 32\r\nconnection: close\r\n\r\n{\"erro\":\"no upstream available\"}";

/// How long a refused client gets to send its request, and then to read the answer.
const PATIENCE: Duration = Duration::from_millis(500);

/// Answers 503 and closes politely: the request is read first and the client's side
/// drained after, because closing a socket with unread bytes sends a reset that can
/// destroy the answer before the client reads it.
pub(crate) async fn refuse(mut client: TcpStream) {
    crate::metrics::answered(hyper::StatusCode::SERVICE_UNAVAILABLE);
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(PATIENCE, client.read(&mut buffer)).await;
    if client.write_all(UNAVAILABLE).await.is_ok() && client.shutdown().await.is_ok() {
        let _ = tokio::time::timeout(PATIENCE, async {
            while matches!(client.read(&mut buffer).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

/// `refuse` in a task of its own, holding the connection's permit until it is done. It is
/// bounded by its own PATIENCE, so no client deadline applies and it is never shed.
pub(crate) fn spawn_refuse(connection: Connection) {
    connection.watch.enter(Phase::Busy);
    crate::client::spawn_on_tcp(connection, |client, _| refuse(client));
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
