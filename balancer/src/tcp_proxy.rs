//! L4 mode: the strategy picks an upstream per client connection, then bytes are copied both
//! ways untouched. Cheapest per byte, but a client's keep-alive connection stays pinned to
//! one upstream and the upstream pays a connection set-up per client connection.

use std::sync::Arc;

use serverkit::server::Connection;
use tokio::net::TcpStream;

use crate::address::Stream;
use crate::state::State;
use crate::unavailable;

/// Copies bytes between the client and an upstream in a task of its own, holding the
/// connection's permit until both sides are done.
pub fn spawn(connection: Connection, state: Arc<State>) {
    crate::client::spawn_on_tcp(connection, |client| relay(client, state));
}

async fn relay(mut client: TcpStream, state: Arc<State>) {
    for index in state.selection.candidates(&state.upstreams, None) {
        let upstream = &state.upstreams[index];
        if upstream.is_down() {
            continue;
        }
        match upstream
            .addr
            .connect_stream(state.config.connect_timeout)
            .await
        {
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
    unavailable::refuse(client).await;
}
