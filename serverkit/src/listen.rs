//! Where a server takes its connections from, and binding there the same way in both
//! servers: a deep backlog (the official test opens a new connection per request),
//! TCP_NODELAY and TCP_DEFER_ACCEPT set once on the listener (accepted sockets inherit
//! them), and Unix socket files that are claimed carefully and removed on exit.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::handoff;
use crate::sys::socket;

/// Pending connections the kernel keeps for a listener. Connections beyond the connection
/// limit wait here, so it is deep.
const BACKLOG: i32 = 4096;
/// Balancers connecting to one handoff socket: one each, so a few are plenty.
const HANDOFF_BACKLOG: i32 = 64;

/// Where a server takes connections from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// HTTP over TCP.
    Tcp(SocketAddr),
    /// HTTP over a Unix stream socket at this path.
    Unix(PathBuf),
    /// Connections handed over by a balancer through the Unix socket at this path
    /// (`crate::handoff`).
    Handoff(PathBuf),
    /// A listening socket bound by a parent process and inherited as this descriptor (the
    /// balancer's supervisor keeps the socket open while a worker restarts).
    Inherited(std::os::fd::RawFd),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(addr) => write!(f, "{addr}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
            Listen::Handoff(path) => write!(f, "handoff:{}", path.display()),
            Listen::Inherited(fd) => write!(f, "inherited descriptor {fd}"),
        }
    }
}

/// An admin listener's address from variable `name`: `ip:port`, or an absolute socket path.
pub fn admin(name: &str, value: &str) -> Result<Listen, String> {
    if value.starts_with('/') {
        return Ok(Listen::Unix(value.into()));
    }
    value.parse().map(Listen::Tcp).map_err(|_| {
        format!("{name}={value} is not ip:port (e.g. 127.0.0.1:9101) nor an absolute socket path")
    })
}

/// A listening socket, non-blocking, and the socket file it owns (removed when dropped).
pub(crate) struct Bound {
    pub listener: OwnedFd,
    /// Held for as long as the listener serves: dropping it removes the socket file.
    pub file: Option<SocketFile>,
}

/// Binds `listen` and returns the listening socket alone: for a parent process that passes
/// it on (`Listen::Inherited`). TCP only: a Unix socket file belongs to the process serving it.
pub fn bind_tcp(addr: SocketAddr) -> Result<OwnedFd, String> {
    bind(&Listen::Tcp(addr)).map(|bound| bound.listener)
}

pub(crate) fn bind(listen: &Listen) -> Result<Bound, String> {
    let fail = |e: std::io::Error| format!("cannot listen on {listen}: {e}");
    match listen {
        Listen::Tcp(addr) => {
            let socket =
                Socket::new(Domain::for_address(*addr), Type::STREAM, None).map_err(fail)?;
            socket.set_reuse_address(true).map_err(fail)?;
            socket.set_nodelay(true).map_err(fail)?;
            socket.bind(&(*addr).into()).map_err(fail)?;
            socket.listen(BACKLOG).map_err(fail)?;
            socket.set_nonblocking(true).map_err(fail)?;
            // TCP_DEFER_ACCEPT: the kernel wakes the accepting task only once the client's
            // first bytes have arrived, so accept and read are one wake-up instead of two.
            socket::defer_accept(&socket, 1).map_err(fail)?;
            Ok(Bound {
                listener: socket.into(),
                file: None,
            })
        }
        Listen::Unix(path) => {
            let file = SocketFile::claim(path, Type::STREAM)?;
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
            socket
                .bind(&SockAddr::unix(path).map_err(fail)?)
                .map_err(fail)?;
            socket.listen(BACKLOG).map_err(fail)?;
            socket.set_nonblocking(true).map_err(fail)?;
            file.open_to_everyone()?;
            Ok(Bound {
                listener: socket.into(),
                file: Some(file),
            })
        }
        Listen::Inherited(fd) => {
            let socket = socket::adopt_listener(*fd)?;
            socket.set_nonblocking(true).map_err(fail)?;
            Ok(Bound {
                listener: socket.into(),
                file: None,
            })
        }
        Listen::Handoff(path) => {
            let file = SocketFile::claim(path, Type::from(libc::SOCK_SEQPACKET))?;
            let listener = handoff::listen(path, HANDOFF_BACKLOG).map_err(fail)?;
            file.open_to_everyone()?;
            Ok(Bound {
                listener,
                file: Some(file),
            })
        }
    }
}

/// A socket file's path; removed when dropped.
pub(crate) struct SocketFile(PathBuf);

impl SocketFile {
    /// Removes a stale socket left by a crashed run, but refuses to steal one that a live
    /// process still answers on, and never removes anything that is not a socket.
    fn claim(path: &Path, kind: Type) -> Result<SocketFile, String> {
        use std::os::unix::fs::FileTypeExt;
        if path.file_name().is_none() {
            return Err(format!("{} is not a file path", path.display()));
        }
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(format!(
                    "{} exists and is not a socket; remove it or pick another path",
                    path.display()
                ))
            }
            Ok(_) if answers(path, kind) => {
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

    /// The peer (the balancer, or the API behind it) runs as another user in another
    /// container.
    fn open_to_everyone(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("cannot set permissions on {}: {e}", self.0.display()))
    }
}

/// Whether a process accepts connections of `kind` at `path` (a connection of another kind
/// would be refused even by a live listener).
fn answers(path: &Path, kind: Type) -> bool {
    let Ok(socket) = Socket::new(Domain::UNIX, kind, None) else {
        return false;
    };
    SockAddr::unix(path).is_ok_and(|addr| socket.connect(&addr).is_ok())
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
