//! Readiness, as the official test's script waits for it: `GET /clientes/1/extrato` on the
//! balancer answers 200.

use std::time::{Duration, Instant};

/// Waits up to 40 s for the stack to answer, failing early with the name `exited` gives
/// when a service's process has gone.
pub(crate) async fn wait_ready(
    port: u16,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(name) = exited() {
            return Err(format!("{name} exited during start-up"));
        }
        if extrato_status(port).await == Some(200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("GET /clientes/1/extrato did not answer 200 within 40 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of `GET /clientes/1/extrato` on the balancer, like the official script's curl
/// (a new connection each time, two seconds at most).
async fn extrato_status(port: u16) -> Option<u16> {
    let probe = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(connection);
        let request = hyper::Request::get("/clientes/1/extrato")
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
