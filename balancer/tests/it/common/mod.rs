//! Stub upstreams (real HTTP servers on temporary Unix sockets) and the real balancer
//! binary, for the balancer's integration tests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use balancer::Mode;
use balancer::Strategy;
use balancer::BACKOFF;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serverkit::deadline::Deadlines;
use serverkit::listen::Listen;
use serverkit::quiet::QuietStream;
use serverkit::server::{Connection, Drain, Handler, Server};
use testkit::TempDir;
use tokio::task::JoinHandle;

/// An upstream that answers with what it received, and records every request it saw. It
/// serves HTTP on a Unix socket (`socket`, for http and tcp modes) and the connections a
/// balancer hands over (`handoff`), through serverkit's server loop like the API.
/// Paths change its behaviour: `/slow/{ms}` answers late, `/status/{code}` answers that
/// status, `/hangup` reads the request and closes the connection without answering, and
/// `/hangup-on/{name}` does that only on the stub of that name.
pub(crate) struct Stub {
    pub socket: PathBuf,
    pub handoff: PathBuf,
    seen: Arc<Mutex<Vec<String>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    dead: Arc<AtomicBool>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    server: Mutex<Option<JoinHandle<Result<(), String>>>>,
}

struct Serve {
    name: String,
    delay: Duration,
    seen: Arc<Mutex<Vec<String>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    dead: Arc<AtomicBool>,
}

impl Handler for Serve {
    fn serve(&self, batch: &mut Vec<Connection>, _drain: &Drain) {
        for Connection { fd, permit, .. } in batch.drain(..) {
            if self.dead.load(Ordering::SeqCst) {
                continue; // crashed: whatever was still queued for it is lost
            }
            let stream = QuietStream::new(fd).unwrap();
            let (name, seen, delay) = (self.name.clone(), self.seen.clone(), self.delay);
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
                drop(permit);
            });
            self.tasks.lock().unwrap().push(connection);
        }
    }
}

impl Stub {
    pub(crate) fn start(dir: &TempDir, name: &str) -> Stub {
        Stub::start_slow(dir, name, Duration::ZERO)
    }

    /// A stub that waits `delay` before every answer.
    pub(crate) fn start_slow(dir: &TempDir, name: &str, delay: Duration) -> Stub {
        let socket = Stub::path(dir, name, "http");
        let handoff = Stub::path(dir, name, "handoff");
        let server = Server::bind(
            &[
                Listen::Unix(socket.clone()),
                Listen::Handoff(handoff.clone()),
            ],
            1024,
            Duration::from_secs(5),
            Deadlines::DEFAULT,
        )
        .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let dead = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(Serve {
            name: name.to_owned(),
            delay,
            seen: seen.clone(),
            tasks: tasks.clone(),
            dead: dead.clone(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server.run("stub", serve, async {
            let _ = stopped.await;
        }));
        Stub {
            socket,
            handoff,
            seen,
            tasks,
            dead,
            stop: Mutex::new(Some(stop)),
            server: Mutex::new(Some(server)),
        }
    }

    /// Where a stub called `name` in `dir` is reached by a balancer in `mode`.
    pub(crate) fn path(dir: &TempDir, name: &str, mode: &str) -> PathBuf {
        let extension = if mode == "handoff" { "handoff" } else { "sock" };
        dir.join(&format!("{name}.{extension}"))
    }

    /// Where a balancer in `mode` reaches this stub.
    pub(crate) fn addr(&self, mode: &str) -> &PathBuf {
        if mode == "handoff" {
            &self.handoff
        } else {
            &self.socket
        }
    }

    /// Every request seen, as "METHOD path body".
    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Like a crashed process: every connection closes, connections still queued for it are
    /// lost, and both socket files go away. Returns once all of that is done.
    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.lock().unwrap().take() {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(server)
                    .unwrap()
                    .unwrap()
            });
        }
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

/// Every mode, by the name LB_MODE takes.
pub(crate) fn modes() -> impl Iterator<Item = &'static str> {
    Mode::ALL.into_iter().map(Mode::name)
}

/// Every strategy with every mode it works in, by name.
pub(crate) fn strategy_modes() -> Vec<(&'static str, &'static str)> {
    Strategy::ALL
        .into_iter()
        .flat_map(|s| {
            Mode::ALL
                .into_iter()
                .filter(move |m| m.supports(s))
                .map(move |m| (s.name(), m.name()))
        })
        .collect()
}

/// Long enough for any upstream's failure backoff to have ended.
pub(crate) fn past_backoff() -> Duration {
    BACKOFF.max + Duration::from_millis(100)
}

/// The balancer's worker processes, as its supervisor's children.
pub(crate) fn workers_of(supervisor: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect()
}
