//! L7 mode: each client request is forwarded over a pooled HTTP/1.1 connection to an
//! upstream. Upstream connections outlive client connections, so the official test's
//! one-request-per-connection clients cost the upstreams no connection set-up at all.
//!
//! Bodies are small here (under 100 bytes), so both directions are read whole, within bounds:
//! a request can then be offered to another upstream when the first one turns out to be
//! gone, and a connection goes back to the pool as soon as its response is read.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use serverkit::quiet::QuietStream;

use crate::state::State;
use crate::upstream::{Sender, Stream, Upstream};

/// Upstream responses larger than this are refused with 502 rather than buffered.
const MAX_RESPONSE_BODY: usize = 8 * 1024 * 1024;

pub type Body = Full<Bytes>;

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

pub async fn handle(request: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > state.config.max_body as u64) {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let body = match Limited::new(body, state.config.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return reply(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        Err(_) => return reply(StatusCode::BAD_REQUEST, "could not read the request body"),
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

    // Only idempotent requests may be replayed once they reached an upstream; keep a copy.
    let mut replay = (parts.method == Method::GET || parts.method == Method::HEAD)
        .then(|| Request::from_parts(clone_parts(&parts), Full::new(body.clone())));
    // Uri clones share their bytes; only client-hash needs it.
    let key_uri = state
        .config
        .strategy
        .needs_request()
        .then(|| parts.uri.clone());
    let key = key_uri
        .as_ref()
        .and_then(|uri| crate::selection::client_key(uri.path()));
    let mut request = Some(Request::from_parts(parts, Full::new(body)));
    let mut broke = false;

    for index in state.selection.candidates(&state.upstreams, key) {
        let upstream = &state.upstreams[index];
        if upstream.is_down() {
            continue;
        }
        let Some(outgoing) = request.take() else {
            break;
        };
        match exchange(upstream, outgoing, &state).await {
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

/// One request against one upstream: a pooled connection if one is alive, else a new one.
async fn exchange(
    upstream: &Upstream,
    mut request: Request<Body>,
    state: &State,
) -> Result<Response<Body>, Failure> {
    let _in_flight = upstream.begin();
    loop {
        let (mut sender, pooled) = match upstream.take_idle() {
            Some(sender) => (sender, true),
            None => match connect(upstream, state).await {
                Ok(sender) => (sender, false),
                Err(()) => {
                    upstream.mark_failed();
                    return Err(Failure::NotSent(request));
                }
            },
        };
        if pooled && sender.ready().await.is_err() {
            continue; // closed while idle (the upstream restarted): try the next one
        }
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
        let outcome = tokio::time::timeout(state.config.timeout, attempt).await;
        match outcome {
            Err(_) => {
                // A frozen instance: let the next requests go elsewhere for a while.
                upstream.mark_failed();
                return Err(Failure::TimedOut);
            }
            Ok(Ok((mut parts, body))) => {
                upstream.mark_ok();
                upstream.put_idle(sender);
                strip_hop_by_hop(&mut parts.headers);
                return Ok(Response::from_parts(parts, Full::new(body)));
            }
            Ok(Err(Some(back))) if pooled => request = back, // never written: retry here
            Ok(Err(Some(back))) => {
                upstream.mark_failed();
                return Err(Failure::NotSent(back));
            }
            Ok(Err(None)) => {
                upstream.mark_failed();
                return Err(Failure::Broken);
            }
        }
    }
}

async fn connect(upstream: &Upstream, state: &State) -> Result<Sender, ()> {
    let stream = upstream
        .connect(state.config.connect_timeout)
        .await
        .map_err(|_| ())?;
    let fd: std::os::fd::OwnedFd = match stream {
        Stream::Unix(s) => s.into_std().map_err(|_| ())?.into(),
        Stream::Tcp(s) => s.into_std().map_err(|_| ())?.into(),
    };
    // Pooled connections only ever need to wake for responses: see serverkit::quiet.
    let stream = QuietStream::new(fd).map_err(|_| ())?;
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
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

pub fn reply(status: StatusCode, reason: &str) -> Response<Body> {
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
