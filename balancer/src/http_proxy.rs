//! L7 mode: each client request is forwarded over a pooled HTTP/1.1 connection to an
//! upstream (`crate::pool`, one pool per upstream, kept here: only this mode has them).
//!
//! Bodies are small here (under 100 bytes), so both directions are read whole, within bounds:
//! a request can then be offered to another upstream when the first one turns out to be
//! gone, and a connection goes back to the pool as soon as its response is read.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::{Method, Request, Response, StatusCode};
use serverkit::deadline::RequestBody;
use serverkit::http::{self, BodyError};
use serverkit::server::{Connection, Drain, Handler};

use crate::pool::{Checkout, Pool};
use crate::state::State;
use crate::upstream::Upstream;

/// Upstream responses larger than this are refused with 502 rather than buffered.
const MAX_RESPONSE_BODY: usize = 8 * 1024 * 1024;

pub(crate) type Body = Full<Bytes>;

/// How one attempt at one upstream ended, when it did not produce a response.
// Moved once per attempt, never stored: boxing the request would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Failure {
    /// Nothing reached the upstream: the request comes back to be offered elsewhere.
    NotSent(Request<Body>),
    /// The request was written and the exchange broke: it may have been processed.
    Broken,
    TimedOut,
}

/// http mode's handler: every request of a client connection forwarded on its own.
pub(crate) struct HttpProxy(Arc<Shared>);

/// What every request of http mode reads, behind one reference count (one increment per
/// request, as before the pools moved here).
struct Shared {
    state: Arc<State>,
    /// Per upstream, in the order of `state.upstreams`.
    pools: Vec<Pool>,
}

impl HttpProxy {
    /// A pool per upstream, empty: connections are opened on first use.
    pub(crate) fn new(state: Arc<State>) -> HttpProxy {
        let pools = state.upstreams.iter().map(|_| Pool::default()).collect();
        HttpProxy(Arc::new(Shared { state, pools }))
    }
}

impl Handler for HttpProxy {
    fn serve(&self, batch: &mut Vec<Connection>, drain: &Drain) {
        for connection in batch.drain(..) {
            let shared = self.0.clone();
            http::spawn_connection(connection, drain, move |request| {
                proxy(request, shared.clone())
            });
        }
    }
}

/// Forwards one client request and returns the answer for the client: the upstream's, or
/// the balancer's own 4xx/5xx.
async fn proxy(request: Request<RequestBody>, shared: Arc<Shared>) -> Response<Body> {
    match prepare(request, &shared.state).await {
        Ok(prepared) => forward(prepared, &shared.state, &shared.pools).await,
        Err(refusal) => refusal,
    }
}

/// A request ready to go upstream, whole.
struct Prepared {
    request: Request<Body>,
    /// A copy to send again after an exchange broke: only for a request that may be replayed
    /// once it reached an upstream (`replayable`).
    replay: Option<Request<Body>>,
    /// The client id, for the strategies that read the request.
    key: Option<String>,
}

/// Reads the body within LB_MAX_BODY, strips hop-by-hop headers, adds Via, turns an
/// absolute-form target into origin-form, and keeps what failover needs. A request the
/// balancer refuses itself (413, 400) comes back as the response.
async fn prepare(request: Request<RequestBody>, state: &State) -> Result<Prepared, Response<Body>> {
    let (mut parts, body) = match http::read_body(request, state.config.max_body).await {
        Ok(read) => read,
        Err(BodyError::TooLarge) => {
            return Err(reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ))
        }
        Err(BodyError::Unreadable) => {
            return Err(reply(
                StatusCode::BAD_REQUEST,
                "could not read the request body",
            ))
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.append(
        HeaderName::from_static("via"),
        HeaderValue::from_static("1.1 rinha-balancer"),
    );
    // The client's request line may be absolute-form; upstreams get origin-form.
    if let Some(path) = parts.uri.path_and_query() {
        if parts.uri.scheme().is_some() {
            if let (Some(authority), false) = (
                parts.uri.authority().cloned(),
                parts.headers.contains_key(HOST),
            ) {
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    parts.headers.insert(HOST, host);
                }
            }
            parts.uri = path.clone().into();
        }
    }
    let replay = replayable(&parts.method, &parts.headers)
        .then(|| Request::from_parts(clone_parts(&parts), Full::new(body.clone())));
    let key = state
        .config
        .strategy
        .needs_request()
        .then(|| crate::selection::client_key(parts.uri.path()).map(str::to_owned))
        .flatten();
    Ok(Prepared {
        request: Request::from_parts(parts, Full::new(body)),
        replay,
        key,
    })
}

/// Whether a request may be sent again after it reached an upstream whose exchange broke: GET
/// and HEAD, which change nothing, and a POST with an `Idempotency-Key`, which the API applies
/// at most once per key (a retry gets the first answer). Other POSTs never are.
fn replayable(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && headers.contains_key("idempotency-key"))
}

/// The failover loop: the candidates in the strategy's order, skipping those down, until
/// one answers. A request never written moves on; one written to an exchange that broke is
/// replayed only if it may be (`replayable`); a timeout ends it with 504.
async fn forward(prepared: Prepared, state: &State, pools: &[Pool]) -> Response<Body> {
    let Prepared {
        request,
        mut replay,
        key,
    } = prepared;
    let mut request = Some(request);
    let mut broke = false;
    for (index, upstream) in state.candidates(key.as_deref()) {
        let Some(outgoing) = request.take() else {
            break;
        };
        match exchange(upstream, &pools[index], outgoing, state).await {
            Ok(response) => return response,
            Err(Failure::NotSent(back)) => request = Some(back),
            Err(Failure::TimedOut) => {
                return reply(StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
            }
            Err(Failure::Broken) => {
                broke = true;
                match replay.take() {
                    Some(copy) => request = Some(copy),
                    None => break,
                }
            }
        }
    }
    if broke {
        reply(
            StatusCode::BAD_GATEWAY,
            "upstream connection broke; the request may have been applied",
        )
    } else {
        reply(StatusCode::SERVICE_UNAVAILABLE, "no upstream available")
    }
}

/// One request against one upstream, over a pooled connection or a new one.
async fn exchange(
    upstream: &Upstream,
    pool: &Pool,
    mut request: Request<Body>,
    state: &State,
) -> Result<Response<Body>, Failure> {
    let _in_flight = upstream.begin();
    // Connections to a failing upstream are suspect; fresh ones are opened when it is back.
    let failed = || {
        upstream.health.mark_failed();
        pool.clear();
    };
    loop {
        let Ok(Checkout { mut sender, reused }) = pool
            .checkout(&upstream.addr, state.config.connect_timeout)
            .await
        else {
            failed();
            return Err(Failure::NotSent(request));
        };
        // Err(Some(request)): never written, here it is back. Err(None): it was written.
        let attempt = async {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    match Limited::new(body, MAX_RESPONSE_BODY).collect().await {
                        Ok(body) => Ok((parts, body.to_bytes())),
                        Err(_) => Err(None),
                    }
                }
                Err(mut e) => Err(e.take_message()),
            }
        };
        match tokio::time::timeout(state.config.timeout, attempt).await {
            Err(_) => {
                // A frozen instance: let the next requests go elsewhere for a while.
                failed();
                return Err(Failure::TimedOut);
            }
            Ok(Ok((mut parts, body))) => {
                upstream.health.mark_ok();
                pool.checkin(sender);
                strip_hop_by_hop(&mut parts.headers);
                return Ok(Response::from_parts(parts, Full::new(body)));
            }
            Ok(Err(Some(back))) if reused => request = back, // never written: retry here
            Ok(Err(Some(back))) => {
                failed();
                return Err(Failure::NotSent(back));
            }
            Ok(Err(None)) => {
                failed();
                return Err(Failure::Broken);
            }
        }
    }
}

/// Removes the headers that describe one connection rather than the message (RFC 9110 §7.6.1):
/// the fixed list and every header the Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

fn clone_parts(parts: &hyper::http::request::Parts) -> hyper::http::request::Parts {
    let mut copy = Request::new(()).into_parts().0;
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

/// The balancer's own answer (no upstream answered), counted in the metrics.
pub(crate) fn reply(status: StatusCode, reason: &str) -> Response<Body> {
    crate::metrics::answered(status);
    let mut response = Response::new(Full::new(Bytes::from(format!(r#"{{"erro":"{reason}"}}"#))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "close, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("content-type", "application/json"),
            ("x-request-id", "abc"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["content-type", "x-request-id"]);
    }
}
