//! L4 mode: the strategy picks an upstream per client connection, then bytes are copied both
//! ways untouched. Cheapest per byte, but a client's keep-alive connection stays pinned to
//! one upstream and the upstream pays a connection set-up per client connection.

use std::sync::Arc;

use serverkit::deadline::{Phase, Watch, Watched};
use serverkit::server::{Connection, Drain, Handler};
use tokio::net::TcpStream;

use crate::address::Stream;
use crate::state::State;
use crate::unavailable;

/// tcp mode's handler: each client connection relayed to an upstream in a task of its own,
/// which holds the connection's permit until both sides are done.
pub(crate) struct TcpProxy(pub Arc<State>);

impl Handler for TcpProxy {
    fn serve(&self, batch: &mut Vec<Connection>, _drain: &Drain) {
        for connection in batch.drain(..) {
            let state = self.0.clone();
            crate::client::spawn_on_tcp(connection, |client, watch| relay(client, watch, state));
        }
    }
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
    for (_, upstream) in state.candidates(None) {
        let _in_flight = upstream.begin();
        match upstream
            .addr
            .connect_stream(state.config.connect_timeout)
            .await
        {
            Ok(stream) => {
                upstream.health.mark_ok();
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
            Err(_) => upstream.health.mark_failed(),
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
