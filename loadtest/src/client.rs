//! One request on one new TCP connection, as every Gatling virtual user of the official test
//! does (docs/challenge.md, "The official test"): connect within 10 s, the whole answer within 60 s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::checks::Answer;

/// The longest a connection may take to open (Gatling's default).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a request may take to be answered (Gatling's default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = "Agente do Caos - 2024/Q1";

/// An HTTP/1.1 client that opens a connection per request, as the official test's users do.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    host: String,
    /// Connections open right now, for the report's chart.
    pub active: Arc<AtomicUsize>,
    /// Every exchange so far by the status answered ("none": no answer), to compare with
    /// what the servers counted (`scripts/metrics-test`).
    pub statuses: Arc<Mutex<BTreeMap<String, u64>>>,
}

struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Client {
    /// `target` is `http://host:port` (a path, if any, is ignored).
    pub fn new(target: &str) -> Result<Client, String> {
        let rest = target
            .strip_prefix("http://")
            .ok_or_else(|| format!("--target {target}: only http:// URLs"))?;
        let host = rest.split('/').next().unwrap_or_default();
        let with_port = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
            .map_err(|e| format!("--target {target}: {e}"))?
            .next()
            .ok_or_else(|| format!("--target {target}: no address"))?;
        Ok(Client {
            addr,
            host: host.to_owned(),
            active: Arc::new(AtomicUsize::new(0)),
            statuses: Arc::default(),
        })
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    /// POST `body` (JSON) to `path`.
    pub async fn post(&self, path: &str, body: String) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn send(&self, method: Method, path: &str, body: Option<String>) -> Answer {
        self.active.fetch_add(1, Relaxed);
        let _active = Active(&self.active);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("user-agent", USER_AGENT);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
            .expect("a valid request");
        let exchange = async {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
                .await
                .ok()?
                .ok()?;
            let _ = stream.set_nodelay(true);
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .ok()?;
            tokio::spawn(connection);
            let response = sender.send_request(request).await.ok()?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some(Answer {
                status: Some(status),
                body,
            })
        };
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Some(answer)) => answer,
            _ => Answer {
                status: None,
                body: Bytes::new(),
            },
        };
        let status = answer.status.map_or("none".into(), |s| s.to_string());
        *self.statuses.lock().unwrap().entry(status).or_default() += 1;
        answer
    }
}
