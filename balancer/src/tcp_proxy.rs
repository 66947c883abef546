//! L4 mode: the strategy picks an upstream per client connection, then bytes are copied both
//! ways untouched. Cheapest per byte, but a client's keep-alive connection stays pinned to
//! one upstream and the upstream pays a connection set-up per client connection.

use std::sync::Arc;

use serverkit::deadline::{Phase, Watch, Watched};
use serverkit::server::Connection;
use tokio::net::TcpStream;

use crate::address::Stream;
use crate::state::State;
use crate::unavailable;

/// Copies bytes between the client and an upstream in a task of its own, holding the
/// connection's permit until both sides are done.
pub fn spawn(connection: Connection, state: Arc<State>) {
    crate::client::spawn_on_tcp(connection, |client, watch| relay(client, watch, state));
}

/// The relay keeps the client's watch informed without parsing HTTP: a read that holds the
/// blank line ending a head means a request is with the upstream (Busy: the upstream bounds
/// it); other bytes from the client are a head in progress (the header deadline, and shed
/// first at the cap); bytes from the upstream mean it answered, and the client is idle until
/// it sends again. A head whose blank line is split across two reads stays "in progress"
/// until the answer: it could only be shed after SHED_AFTER at the cap, and Rinha's heads
/// arrive in one packet.
async fn relay(client: TcpStream, watch: Watch, state: Arc<State>) {
    let mut client = Watched::new(client, watch.clone(), client_sent);
    for index in state.selection.candidates(&state.upstreams, None) {
        let upstream = &state.upstreams[index];
        if upstream.is_down() {
            continue;
        }
        let _in_flight = upstream.begin();
        match upstream
            .addr
            .connect_stream(state.config.connect_timeout)
            .await
        {
            Ok(stream) => {
                upstream.mark_ok();
                // Either side closing or failing ends the connection; nothing to report.
                let answered = |w: &Watch, _: &[u8]| w.enter(Phase::Idle);
                let _ = match stream {
                    Stream::Unix(s) => {
                        let mut s = Watched::new(s, watch.clone(), answered);
                        tokio::io::copy_bidirectional(&mut client, &mut s).await
                    }
                    Stream::Tcp(s) => {
                        let mut s = Watched::new(s, watch.clone(), answered);
                        tokio::io::copy_bidirectional(&mut client, &mut s).await
                    }
                };
                return;
            }
            Err(_) => upstream.mark_failed(),
        }
    }
    watch.enter(Phase::Busy); // refuse is bounded on its own
    unavailable::refuse(client.into_inner()).await;
}

fn client_sent(watch: &Watch, bytes: &[u8]) {
    if bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        watch.enter(Phase::Busy);
    } else {
        watch.client_sent();
    }
}
