//! Stub upstreams (real HTTP servers on temporary Unix sockets) and the real balancer
//! binary, for the balancer's integration tests.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use testkit::TempDir;
use tokio::task::JoinHandle;

/// An upstream that answers with what it received, and records every request it saw.
/// Paths change its behaviour: `/slow/{ms}` answers late, `/status/{code}` answers that
/// status, `/hangup` reads the request and closes the connection without answering, and
/// `/hangup-on/{name}` does that only on the stub of that name.
pub struct Stub {
    pub name: String,
    pub socket: PathBuf,
    seen: Arc<Mutex<Vec<String>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Stub {
    pub fn start(dir: &TempDir, name: &str) -> Stub {
        Stub::start_slow(dir, name, Duration::ZERO)
    }

    /// A stub that waits `delay` before every answer.
    pub fn start_slow(dir: &TempDir, name: &str, delay: Duration) -> Stub {
        let socket = dir.join(&format!("{name}.sock"));
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let (name_c, seen_c, tasks_c) = (name.to_owned(), seen.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (name, seen) = (name_c.clone(), seen_c.clone());
                let service = hyper::service::service_fn(move |request| {
                    let (name, seen) = (name.clone(), seen.clone());
                    async move {
                        tokio::time::sleep(delay).await;
                        answer(name, seen, request).await
                    }
                });
                let connection = tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                tasks_c.lock().unwrap().push(connection);
            }
        });
        tasks.lock().unwrap().push(accept);
        Stub {
            name: name.to_owned(),
            socket,
            seen,
            tasks,
        }
    }

    /// Every request seen, as "METHOD path body".
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Like a crashed process: every connection closes and the socket file goes away.
    pub fn kill(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn answer(
    name: String,
    seen: Arc<Mutex<Vec<String>>>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let path = parts.uri.path().to_owned();
    seen.lock().unwrap().push(format!(
        "{} {} {}",
        parts.method,
        path,
        String::from_utf8_lossy(&body)
    ));

    let mut status = StatusCode::OK;
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    } else if let Some(code) = path.strip_prefix("/status/") {
        status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
    } else if path == "/hangup" || path == format!("/hangup-on/{name}") {
        return Err(std::io::Error::other("hanging up")); // hyper closes without a response
    }
    let headers: HashMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let json = serde_json::json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "path": parts.uri.to_string(),
        "body": String::from_utf8_lossy(&body),
        "headers": headers,
    });
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("x-upstream", name.parse().unwrap());
    response
        .headers_mut()
        .insert("keep-alive", "timeout=99".parse().unwrap());
    Ok(response)
}

pub const MODES: [&str; 2] = ["http", "tcp"];
