//! The accept, serve and drain loop that the API and the balancer share. What varies is
//! where connections come from (`Listen`: TCP, a Unix socket, or handed over by a balancer)
//! and what is done with them (`Handler`).
//!
//! Every connection holds a permit of the `ConnectionLimit` until it is closed, whatever
//! serves it, so one rule bounds both servers and draining is one wait: for the sources to
//! stop, then for every permit to come back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::deadline::{Deadlines, Watchlist};
use crate::handoff;
use crate::limit::ConnectionLimit;
use crate::listen::{bind, Bound, Listen};
use crate::metrics::{self, Received};
use crate::quiet::QuietListener;
use crate::source::Source;

pub use crate::source::{Connection, Drain, Handler};

/// A server bound to its sources and not yet running (`bind`, then `run`).
pub struct Server {
    sources: Vec<(Listen, Bound)>,
    limit: ConnectionLimit,
    drain_deadline: Duration,
    deadlines: Deadlines,
    /// Whether its connections count in `metrics::SERVER` (not the admin listener's).
    metered: bool,
}

impl Server {
    /// Binds every address in `listens`. With a handoff socket among them, the number of
    /// open connections is published beside it (`handoff::count`) for the balancer.
    pub fn bind(
        listens: &[Listen],
        max_connections: usize,
        drain_deadline: Duration,
        deadlines: Deadlines,
    ) -> Result<Server, String> {
        let mut limit = ConnectionLimit::new(max_connections);
        let mut sources = Vec::new();
        for listen in listens {
            let bound = bind(listen)?;
            if let Listen::Handoff(path) = listen {
                limit = limit.publish(handoff::count::publish_beside(path)?);
            }
            sources.push((listen.clone(), bound));
        }
        Ok(Server {
            sources,
            limit,
            drain_deadline,
            deadlines,
            metered: true,
        })
    }

    /// Its connections are not counted in the process's metrics (the admin listener's).
    pub fn unmetered(mut self) -> Server {
        self.metered = false;
        self
    }

    /// "unix:/run/api1.sock, handoff:/run/api1.handoff"
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.sources.iter().map(|(l, _)| l.to_string()).collect();
        names.join(", ")
    }

    /// Serves until `shutdown` resolves, then stops taking connections (socket files are
    /// removed, handoff senders are refused) and lets open ones finish within the drain
    /// deadline.
    pub async fn run<H: Handler>(
        self,
        service: &str,
        handler: Arc<H>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), String> {
        let (stop, drain) = watch::channel(false);
        let drain = Drain::new(drain);
        // Every source task holds a sender; all dropped means all sources have stopped.
        let (running, mut stopped) = mpsc::channel::<()>(1);
        let watchlist = Watchlist::start(self.deadlines);
        for (listen, bound) in self.sources {
            let listener = QuietListener::new(bound.listener)
                .map_err(|e| format!("cannot register {listen}: {e}"))?;
            let received = match listen {
                Listen::Tcp(_) | Listen::Inherited(_) => Received::Tcp,
                Listen::Unix(_) => Received::Unix,
                Listen::Handoff(_) => Received::Handoff,
            };
            let source = Source {
                service: service.to_owned(),
                received: self
                    .metered
                    .then(|| &metrics::SERVER.connections[received as usize]),
                limit: self.limit.clone(),
                watchlist: watchlist.clone(),
                handler: handler.clone(),
                drain: drain.clone(),
                _running: running.clone(),
            };
            match listen {
                Listen::Handoff(_) => tokio::spawn(handoff::receive::accept_senders(
                    source, listener, bound.file,
                )),
                _ => tokio::spawn(source.accept(listener, bound.file)),
            };
        }
        drop(running);
        shutdown.await;

        // Draining starts before anything is said of it: a client handed over meanwhile
        // must meet a server that already drains (formatting a log line takes a while).
        let _ = stop.send(true);
        tracing::info!(
            "{service}: shutting down, draining {} connection(s) for up to {}s",
            self.limit.open(),
            self.drain_deadline.as_secs_f32()
        );
        let drained = async {
            let _ = stopped.recv().await;
            self.limit.all_closed().await;
        };
        if tokio::time::timeout(self.drain_deadline, drained)
            .await
            .is_err()
        {
            tracing::warn!("{service}: drain deadline passed, closing remaining connections");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::deadline::{Phase, SHED_AFTER};

    /// Hands every connection it is given to the test.
    struct ToTest(mpsc::UnboundedSender<Connection>);

    impl Handler for ToTest {
        fn serve(&self, batch: &mut Vec<Connection>, _drain: &Drain) {
            for connection in batch.drain(..) {
                let _ = self.0.send(connection);
            }
        }
    }

    fn socket_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("serverkit-{}-{name}.sock", std::process::id()))
    }

    /// A server on `listen` with room for `max` connections, running until the returned
    /// sender fires; the connections it receives, and its task.
    fn start(
        listen: Listen,
        max: usize,
    ) -> (
        mpsc::UnboundedReceiver<Connection>,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), String>>,
    ) {
        let server =
            Server::bind(&[listen], max, Duration::from_secs(5), Deadlines::DEFAULT).expect("bind");
        let (to_test, connections) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(server.run("test", Arc::new(ToTest(to_test)), async {
            let _ = stopped.await;
        }));
        (connections, stop, run)
    }

    #[tokio::test]
    async fn a_unix_socket_is_served_and_shutdown_waits_for_open_connections() {
        let path = socket_path("drain");
        let (mut connections, stop, run) = start(Listen::Unix(path.clone()), 8);
        let mut client = UnixStream::connect(&path).expect("connect");
        let connection = connections.recv().await.expect("a connection");
        // The handler's descriptor is the client's peer.
        let mut served = UnixStream::from(connection.fd.try_clone().unwrap());
        client.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        served.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");

        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!run.is_finished(), "an open connection holds the drain");
        assert!(
            UnixStream::connect(&path).is_err(),
            "no new connections while draining"
        );
        drop((connection, served));
        let finished = tokio::time::timeout(Duration::from_secs(2), run).await;
        assert!(finished.expect("drained").expect("task").is_ok());
        assert!(!path.exists(), "the socket file is removed");
    }

    #[tokio::test]
    async fn at_the_limit_the_idle_connection_makes_room_for_a_new_one() {
        let path = socket_path("shed");
        let (mut connections, stop, run) = start(Listen::Unix(path.clone()), 1);
        let _first = UnixStream::connect(&path).expect("connect");
        let idle = connections.recv().await.expect("the first connection");
        idle.watch.enter(Phase::Idle);
        let (fd, permit, watch) = (idle.fd, idle.permit, idle.watch);
        // Served as the HTTP path serves: until its watch says to close.
        let shed = tokio::spawn(async move {
            let phase = watch.closed().await;
            drop((fd, permit));
            phase
        });
        tokio::time::sleep(SHED_AFTER + Duration::from_millis(50)).await;

        let _second = UnixStream::connect(&path).expect("connect");
        let phase = tokio::time::timeout(Duration::from_secs(2), shed).await;
        assert_eq!(phase.expect("shed in time").unwrap(), Phase::Idle);
        let second = tokio::time::timeout(Duration::from_secs(2), connections.recv()).await;
        let second = second
            .expect("admitted in time")
            .expect("the second connection");
        drop(second);
        stop.send(()).unwrap();
        run.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn connections_handed_over_reach_the_handler() {
        let path = socket_path("handoff");
        let (mut connections, stop, run) = start(Listen::Handoff(path.clone()), 8);
        let link = handoff::connect(&path).expect("link");
        let (mut client, given) = UnixStream::pair().unwrap();
        let (mut client2, given2) = UnixStream::pair().unwrap();
        handoff::send(link.as_raw_fd(), &[given.as_raw_fd(), given2.as_raw_fd()]).expect("send");
        drop((given, given2)); // the server holds its own copies now
        for (client, word) in [(&mut client, b"one!"), (&mut client2, b"two!")] {
            let connection = connections.recv().await.expect("a handed-over connection");
            let mut served = UnixStream::from(connection.fd);
            client.write_all(word).unwrap();
            let mut got = [0u8; 4];
            served.read_exact(&mut got).unwrap();
            assert_eq!(&got, word, "in the order they were sent");
        }
        drop(link);
        stop.send(()).unwrap();
        run.await.unwrap().unwrap();
    }
}
