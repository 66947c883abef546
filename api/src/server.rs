//! Start-up, the accept loop and graceful shutdown.
//!
//! The API listens on a Unix socket (the balancer sits in another container and shares the
//! socket's directory) or on TCP. On SIGTERM or SIGINT it stops accepting, lets in-flight
//! requests finish, closes the database pool and returns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use tokio::io::{AsyncRead, AsyncWrite};

use serverkit::io::{ConnectionLimit, ConnectionPermit, QuietListener, QuietStream};

use crate::config::{Config, Listen};
use crate::db::Database;
use crate::handlers::handle;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

pub async fn run(config: Config) -> Result<(), String> {
    let db = Database::connect(&config).await?;
    let listener = Listener::bind(&config.listen)?;
    // Database and drain timeouts are longer than this tick, so they never unpark (serverkit::io).
    serverkit::io::spawn_timer_anchor(Duration::from_millis(500));
    eprintln!(
        "api: listening on {} (pool {}, workers {}, tx {:?})",
        listener.describe(),
        config.pool_size,
        config.workers,
        config.tx_shape
    );

    let graceful = GracefulShutdown::new();
    let limit = ConnectionLimit::new(config.max_connections);
    let mut shutdown = std::pin::pin!(serverkit::lifecycle::shutdown_signal());
    loop {
        tokio::select! {
            (accepted, permit) = async {
                let permit = limit.acquire().await;
                (listener.accept().await, permit)
            } => match accepted {
                Ok(Stream::Unix(stream)) => serve(stream, &db, &graceful, permit),
                Ok(Stream::Tcp(stream)) => {
                    let _ = stream.get_ref().set_nodelay(true);
                    serve(stream, &db, &graceful, permit)
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    eprintln!("api: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }

    eprintln!(
        "api: shutting down, draining {} connection(s)",
        graceful.count()
    );
    drop(listener); // removes the socket file: no new connections can arrive
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("api: drain deadline passed, closing remaining connections");
    }
    db.close().await;
    Ok(())
}

fn serve<IO>(io: IO, db: &Database, graceful: &GracefulShutdown, permit: ConnectionPermit)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let db = db.clone();
    serverkit::http::spawn_connection(io, graceful, permit, move |request| {
        handle(request, db.clone())
    });
}

// Quiet sockets: a connection's task wakes only when there is a request to read (serverkit::io).
enum Listener {
    Unix(QuietListener<UnixListener>, SocketFile),
    Tcp(QuietListener<TcpListener>),
}

enum Stream {
    Unix(QuietStream<std::os::unix::net::UnixStream>),
    Tcp(QuietStream<std::net::TcpStream>),
}

impl Listener {
    fn bind(listen: &Listen) -> Result<Listener, String> {
        match listen {
            Listen::Tcp(addr) => TcpListener::bind(addr)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    QuietListener::new(l)
                })
                .map(Listener::Tcp)
                .map_err(|e| format!("cannot listen on {addr}: {e}")),
            Listen::Unix(path) => {
                let file = SocketFile::claim(path)?;
                let listener = UnixListener::bind(path)
                    .and_then(|l| {
                        l.set_nonblocking(true)?;
                        QuietListener::new(l)
                    })
                    .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
                // The balancer runs as another user in another container.
                set_mode(path, 0o666)?;
                Ok(Listener::Unix(listener, file))
            }
        }
    }

    async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Unix(l, _) => Ok(Stream::Unix(QuietStream::new(l.accept().await?)?)),
            Listener::Tcp(l) => Ok(Stream::Tcp(QuietStream::new(l.accept().await?)?)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Listener::Unix(_, file) => format!("unix:{}", file.0.display()),
            Listener::Tcp(l) => l
                .get_ref()
                .local_addr()
                .map_or("tcp".into(), |a| a.to_string()),
        }
    }
}

/// The socket file's path; removed when the listener goes away.
struct SocketFile(PathBuf);

impl SocketFile {
    /// Removes a stale socket left by a crashed run, but refuses to steal one that a live
    /// process still answers on, and never removes anything that is not a socket.
    fn claim(path: &Path) -> Result<SocketFile, String> {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(format!(
                    "{} exists and is not a socket; remove it or pick another API_SOCKET",
                    path.display()
                ))
            }
            Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => {
                return Err(format!(
                    "another process is listening on {}",
                    path.display()
                ))
            }
            Ok(_) => std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?,
        }
        Ok(SocketFile(path.to_owned()))
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set permissions on {}: {e}", path.display()))
}
