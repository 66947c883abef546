//! A minimal upstream for benchmarking balancers: serverkit's own accept/serve loop answering
//! every request with a fixed extrato-sized JSON body, on any mix of sources, so every
//! contender (nginx, HAProxy, our balancer in each mode) is measured against the same
//! upstream, including the handoff mode, which needs an upstream that takes descriptors.
//!
//!   static-upstream /tmp/a.sock handoff:/tmp/a.handoff 127.0.0.1:19998
//!
//! An argument is a Unix socket path, `handoff:` and a path, or `ip:port`. Stops on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serverkit::deadline::Deadlines;
use serverkit::listen::Listen;
use serverkit::server::{Connection, Drain, Handler, Server};

const BODY: &str = r#"{"saldo":{"total":-9098,"data_extrato":"2024-01-17T02:34:41.217753Z","limite":100000},"ultimas_transacoes":[{"valor":10,"tipo":"c","descricao":"descricao","realizada_em":"2024-01-17T02:34:38.543030Z"}]}"#;

struct Static;

impl Handler for Static {
    fn serve(&self, batch: &mut Vec<Connection>, drain: &Drain) {
        for connection in batch.drain(..) {
            serverkit::http::spawn_connection(connection, drain, |_request| async {
                let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                response
            });
        }
    }
}

fn parse(arg: &str) -> Result<Listen, String> {
    if let Some(path) = arg.strip_prefix("handoff:") {
        Ok(Listen::Handoff(path.into()))
    } else if arg.starts_with('/') {
        Ok(Listen::Unix(arg.into()))
    } else {
        arg.parse()
            .map(Listen::Tcp)
            .map_err(|_| format!("{arg}: not /path, handoff:/path or ip:port"))
    }
}

fn main() -> std::process::ExitCode {
    let listens: Result<Vec<Listen>, String> =
        std::env::args().skip(1).map(|a| parse(&a)).collect();
    let listens = match listens {
        Ok(listens) if !listens.is_empty() => listens,
        Ok(_) => {
            return serverkit::lifecycle::config_error(
                "static-upstream",
                "give at least one address",
            )
        }
        Err(e) => return serverkit::lifecycle::config_error("static-upstream", &e),
    };
    serverkit::lifecycle::run("static-upstream", 1, async move {
        let server = Server::bind(&listens, 4096, Duration::from_secs(1), Deadlines::DEFAULT)?;
        serverkit::timer::spawn_timer_anchor(Duration::from_millis(500));
        eprintln!("static-upstream: listening on {}", server.describe());
        server
            .run(
                "static-upstream",
                Arc::new(Static),
                serverkit::lifecycle::shutdown_signal(),
            )
            .await
    })
}
