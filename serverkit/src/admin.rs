//! The admin listener every process can have beside its traffic (API_ADMIN, LB_ADMIN),
//! never on the traffic's port: `GET /metrics` (Prometheus), `GET /healthz` (the process
//! serves: its runtime answers), `GET /readyz` (it can do its work now, as the process's
//! `Ready` check says), plus whatever extra pages the process adds (the balancer's
//! `/stats`). Its connections are not counted in the traffic's metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use prometheus_client::registry::Registry;

use crate::deadline::Deadlines;
use crate::listen::Listen;
use crate::metrics;
use crate::server::{Connection, Drain, Handler, Server};

/// Admin connections at once: it is for a person or a monitor, not for load.
const MAX_CONNECTIONS: usize = 16;

/// The longest `/readyz` waits for the process's check: a monitor wants an answer, and a
/// check that takes longer is a "not ready" in itself.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the process can do its work now: `Err` says why not.
pub type Ready =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A page of the process's own: `(content type, body)` for a path, or None.
pub type Page = Box<dyn Fn(&str) -> Option<(&'static str, String)> + Send + Sync>;

/// What the admin listener serves.
pub struct Admin {
    /// The process's metrics (`metrics::registry`).
    pub registry: Registry,
    /// `/readyz`'s check.
    pub ready: Ready,
    /// Extra pages, if any.
    pub pages: Option<Page>,
}

/// Binds `listen` and serves `admin` on it until the shutdown signal.
pub fn spawn(service: &str, listen: &Listen, admin: Admin) -> Result<(), String> {
    let server = Server::bind(
        std::slice::from_ref(listen),
        MAX_CONNECTIONS,
        Duration::from_secs(1),
        Deadlines::DEFAULT,
    )?
    .unmetered();
    tracing::info!("admin listener on {listen} (/metrics, /healthz, /readyz)");
    let name = format!("{service} admin");
    tokio::spawn(async move {
        let handler = Arc::new(Serve(Arc::new(admin)));
        if let Err(e) = server
            .run(&name, handler, crate::lifecycle::shutdown_signal())
            .await
        {
            tracing::error!("admin listener: {e}");
        }
    });
    Ok(())
}

struct Serve(Arc<Admin>);

impl Handler for Serve {
    fn serve(&self, batch: &mut Vec<Connection>, drain: &Drain) {
        for connection in batch.drain(..) {
            let admin = self.0.clone();
            crate::http::spawn_connection(connection, drain, move |request| {
                let admin = admin.clone();
                let (method, path) = (request.method().clone(), request.uri().path().to_owned());
                async move { admin.answer(&method, &path).await }
            });
        }
    }
}

impl Admin {
    async fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match path {
            "/metrics" => page(
                StatusCode::OK,
                metrics::CONTENT_TYPE,
                metrics::encode(&self.registry),
            ),
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match tokio::time::timeout(READY_TIMEOUT, (self.ready)()).await {
                Ok(Ok(())) => text(StatusCode::OK, "ready\n".into()),
                Ok(Err(why)) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
                Err(_) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: no answer within {}s\n", READY_TIMEOUT.as_secs()),
                ),
            },
            _ => match self.pages.as_ref().and_then(|pages| pages(path)) {
                Some((content_type, body)) => page(StatusCode::OK, content_type, body),
                None => text(
                    StatusCode::NOT_FOUND,
                    "not here: GET /metrics, /healthz or /readyz\n".into(),
                ),
            },
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    page(status, "text/plain; charset=utf-8", body)
}

fn page(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
