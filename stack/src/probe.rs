//! Readiness: every service's admin listener answers `GET /readyz` with 200 (an API: its
//! PostgreSQL takes writes; the balancer: an API accepts connections). The traffic port is
//! not probed, so the APIs' request counters count the user's requests alone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Waits up to 40 s for every `(service, admin address)` to be ready, failing early with
/// the name `exited` gives when a service's process has gone.
pub(crate) async fn wait_ready(
    admins: &[(String, SocketAddr)],
    mut exited: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut waiting: Vec<&(String, SocketAddr)> = admins.iter().collect();
    while !waiting.is_empty() {
        if let Some(name) = exited() {
            return Err(format!("{name} exited during start-up"));
        }
        let mut still = Vec::new();
        for admin in waiting {
            if readyz_status(admin.1).await != Some(200) {
                still.push(admin);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let names: Vec<&str> = waiting.iter().map(|(name, _)| name.as_str()).collect();
            return Err(format!(
                "not ready within 40 s (GET /readyz): {}",
                names.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The status of `GET /readyz` at `addr` (two seconds at most).
pub(crate) async fn readyz_status(addr: SocketAddr) -> Option<u16> {
    let probe = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(connection);
        let request = hyper::Request::get("/readyz")
            .header(hyper::header::HOST, "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        Some(sender.send_request(request).await.ok()?.status().as_u16())
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
}
