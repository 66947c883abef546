//! Where an upstream listens, and connecting to it.

use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            UpstreamAddr::Tcp(addr) => f.write_str(addr),
        }
    }
}

/// A connected byte stream to an upstream.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl UpstreamAddr {
    /// A new stream connection, within `timeout` (which matters for TCP upstreams on other
    /// hosts; a Unix connect answers at once).
    pub async fn connect_stream(&self, timeout: Duration) -> std::io::Result<Stream> {
        let connect = async {
            match self {
                UpstreamAddr::Unix(path) => UnixStream::connect(path).await.map(Stream::Unix),
                UpstreamAddr::Tcp(addr) => {
                    let stream = TcpStream::connect(addr.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Ok(Stream::Tcp(stream))
                }
            }
        };
        tokio::time::timeout(timeout, connect)
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })
    }
}
