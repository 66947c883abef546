//! A client connection served as a tokio `TcpStream` (tcp mode's relay, the balancer's own
//! 503), in a task of its own that holds the connection's permit until it is done.

use std::future::Future;

use serverkit::server::Connection;
use tokio::net::TcpStream;

pub fn spawn_on_tcp<F, Fut>(connection: Connection, serve: F)
where
    F: FnOnce(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Connection { fd, permit } = connection;
    match TcpStream::from_std(std::net::TcpStream::from(fd)) {
        Ok(client) => {
            let served = serve(client);
            tokio::spawn(async move {
                served.await;
                drop(permit);
            });
        }
        Err(e) => eprintln!("balancer: cannot register a connection: {e}"),
    }
}
