//! A small HTTP/1.1 client for tests: one new connection per request, like the official
//! load test, over a Unix socket or TCP.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where a server listens.
#[derive(Debug, Clone)]
pub enum Target {
    /// An HTTP server on a Unix socket.
    Unix(PathBuf),
    /// An HTTP server on TCP.
    Tcp(std::net::SocketAddr),
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: hyper::HeaderMap,
    /// The body, whole.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; panics with the body's text if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl Target {
    /// Whether something accepts connections there now.
    pub fn is_up(&self) -> bool {
        match self {
            Target::Unix(path) => std::os::unix::net::UnixStream::connect(path).is_ok(),
            Target::Tcp(addr) => std::net::TcpStream::connect(addr).is_ok(),
        }
    }

    /// Whether a server there answers HTTP, not only accepts the connection: a balancer's
    /// supervisor accepts before its worker serves. The probe is malformed on purpose, so an
    /// HTTP server answers 400 itself and no request reaches (or is counted by) an upstream.
    pub fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let request = b"PROBE\r\n\r\n";
        let exchange = |mut stream: Box<dyn ReadWrite>| -> std::io::Result<bool> {
            stream.write_all(request)?;
            let mut first = [0u8; 5];
            stream.read_exact(&mut first)?;
            Ok(&first == b"HTTP/")
        };
        let patience = Some(Duration::from_millis(300));
        let stream: std::io::Result<Box<dyn ReadWrite>> = match self {
            Target::Unix(path) => std::os::unix::net::UnixStream::connect(path).and_then(|s| {
                s.set_read_timeout(patience)?;
                Ok(Box::new(s) as Box<dyn ReadWrite>)
            }),
            Target::Tcp(addr) => std::net::TcpStream::connect(addr).and_then(|s| {
                s.set_read_timeout(patience)?;
                Ok(Box::new(s) as Box<dyn ReadWrite>)
            }),
        };
        stream.and_then(exchange).unwrap_or(false)
    }

    /// GET `path` on a fresh connection.
    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, b"").await
    }

    /// POST the JSON `body` to `path` on a fresh connection.
    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.request(Method::POST, path, body.as_bytes()).await
    }

    /// Sends one request on a new connection and reads the whole reply.
    pub async fn request(&self, method: Method, path: &str, body: &[u8]) -> Reply {
        self.try_request(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `request`, for tests where a request may fail (a server killed under load).
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
    ) -> Result<Reply, String> {
        self.try_request_with(method, path, &[], body).await
    }

    /// A POST with extra headers (values as raw bytes, so tests can send invalid ones).
    pub async fn post_with(&self, path: &str, headers: &[(&str, &[u8])], body: &str) -> Reply {
        self.try_request_with(Method::POST, path, headers, body.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `try_request` with extra headers.
    pub async fn try_request_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> Result<Reply, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let exchange = async {
            match self {
                Target::Unix(p) => send(tokio::net::UnixStream::connect(p).await?, request).await,
                Target::Tcp(a) => send(tokio::net::TcpStream::connect(a).await?, request).await,
            }
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(format!("request to {self:?} failed: {e}")),
            Err(_) => Err(format!("request to {self:?} took over {TIMEOUT:?}")),
        }
    }

    /// Writes raw bytes and returns everything the server sends until it closes the
    /// connection (end the request with `Connection: close`).
    pub async fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let exchange = async {
            match self {
                Target::Unix(p) => raw(tokio::net::UnixStream::connect(p).await?, bytes).await,
                Target::Tcp(a) => raw(tokio::net::TcpStream::connect(a).await?, bytes).await,
            }
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => panic!("raw exchange with {self:?} failed: {e}"),
            Err(_) => panic!("raw exchange with {self:?} took over {TIMEOUT:?}"),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

async fn send<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<Reply, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

async fn raw<IO>(mut io: IO, bytes: &[u8]) -> Result<Vec<u8>, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(bytes).await?;
    let mut out = Vec::new();
    io.read_to_end(&mut out).await?;
    Ok(out)
}
