//! A client connection served as a tokio `TcpStream` (tcp mode's relay, the balancer's own
//! 503), in a task of its own that holds the connection's permit until it is done, or until
//! its watch says to close it (a deadline passed, or it was shed at the connection cap).

use std::future::Future;
use std::os::fd::AsRawFd;

use serverkit::deadline::{spawn_until_cut, Watch};
use serverkit::server::Connection;
use tokio::net::TcpStream;

pub(crate) fn spawn_on_tcp<F, Fut>(connection: Connection, serve: F)
where
    F: FnOnce(TcpStream, Watch) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Connection { fd, permit, watch } = connection;
    match TcpStream::from_std(std::net::TcpStream::from(fd)) {
        Ok(client) => {
            let raw = client.as_raw_fd();
            let served = serve(client, watch.clone());
            spawn_until_cut(raw, watch, permit, served);
        }
        Err(e) => tracing::error!("cannot register a connection: {e}"),
    }
}
