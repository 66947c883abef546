//! Configuration, read once from the environment at start. Each error names the variable
//! and lists the valid choices.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serverkit::config::number;
use serverkit::deadline::Deadlines;
use serverkit::listen::Listen;

use crate::address::UpstreamAddr;
use crate::selection::Strategy;

/// How the balancer passes a client to an API (LB_MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// L7: parse HTTP, reuse upstream connections across clients.
    Http,
    /// L4: pick an upstream per client connection and copy bytes both ways.
    Tcp,
    /// Pass each client connection itself to an upstream (its descriptor, over the
    /// upstream's handoff socket): the upstream answers the client directly.
    Handoff,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 3] = [Mode::Http, Mode::Tcp, Mode::Handoff];

    /// Without LB_MODE: the mode measured cheapest (BENCHMARKS.md §5, "Our balancer against
    /// nginx"), and the one compose.yaml and the native runner run.
    pub const DEFAULT: Mode = Mode::Handoff;

    /// The name LB_MODE takes.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
            Mode::Handoff => "handoff",
        }
    }

    /// The mode of an LB_MODE value.
    pub fn parse(name: &str) -> Option<Mode> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether `strategy` works in this mode: one that reads the request needs http mode.
    pub fn supports(self, strategy: Strategy) -> bool {
        self == Mode::Http || !strategy.needs_request()
    }
}

/// `balancer --help`. A test checks that every variable `Config` reads is named here.
pub const USAGE: &str = "\
balancer: the Rinha balancer on port 9999, in front of the API instances.
It takes no arguments; it is configured by environment variables (README.md, Configuration):

  LB_UPSTREAMS             the APIs: /abs/path.sock, unix:/abs/path.sock or host:port, comma-separated (required)
  LB_MODE                  handoff (default: hands each connection to an API), http or tcp (proxies)
  LB_STRATEGY              round-robin (default), least-connections, random, power-of-two, client-hash (http mode)
  LB_LISTEN                ip:port to listen on (default 0.0.0.0:9999)
  LB_ADMIN                 /metrics, /healthz, /readyz and /stats on this ip:port or socket path
                           (off when unset; compose.yaml and scripts/run set it)
  LB_TIMEOUT_MS            deadline for an upstream's answer, and for waiting for room (default 10000)
  LB_CONNECT_TIMEOUT_MS    deadline for connecting to an upstream (default 1000)
  LB_MAX_BODY              largest request body in http mode, bytes (default 65536)
  LB_MAX_CONNECTIONS       client connections at once (default 1024)
  LB_WORKERS               runtime threads (default 1)
  LB_DRAIN_SECS            time in-flight requests get after SIGTERM (default 10)
  LB_HEADER_TIMEOUT_MS     client deadlines: the request head,
  LB_BODY_TIMEOUT_MS       its body,
  LB_IDLE_TIMEOUT_MS       and an idle keep-alive connection
  RUST_LOG                 log levels, e.g. warn or api=debug (default info)
  LOG_FORMAT               text (default) or json: one JSON object per line
";

/// The balancer's configuration, read once at start (`from_env`).
#[derive(Debug, Clone)]
pub struct Config {
    /// LB_LISTEN.
    pub listen: SocketAddr,
    /// LB_UPSTREAMS, in order.
    pub upstreams: Vec<UpstreamAddr>,
    /// LB_STRATEGY.
    pub strategy: Strategy,
    /// LB_MODE.
    pub mode: Mode,
    /// Past this an upstream's answer is abandoned with 504 (http mode).
    pub timeout: Duration,
    /// Bound for connecting to an upstream (matters for TCP upstreams on other hosts).
    pub connect_timeout: Duration,
    /// LB_MAX_BODY: the largest request body http mode reads, in bytes.
    pub max_body: usize,
    /// LB_ADMIN: the admin listener (metrics, health, `/stats`), if any.
    pub admin: Option<Listen>,
    /// LB_WORKERS: runtime threads.
    pub workers: usize,
    /// LB_DRAIN_SECS: how long in-flight requests get after SIGTERM.
    pub drain: Duration,
    /// LB_MAX_CONNECTIONS: client connections at once.
    pub max_connections: usize,
    /// LB_HEADER_TIMEOUT_MS, LB_BODY_TIMEOUT_MS, LB_IDLE_TIMEOUT_MS: how long a client may
    /// take (http mode: head, body, idle keep-alive; tcp mode: first byte, idle).
    pub deadlines: Deadlines,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests can feed it without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let listen_text = get("LB_LISTEN").unwrap_or_else(|| "0.0.0.0:9999".into());
        let listen = listen_text
            .parse()
            .map_err(|_| format!("LB_LISTEN={listen_text} is not ip:port, e.g. 0.0.0.0:9999"))?;

        let upstreams_text = get("LB_UPSTREAMS").ok_or(
            "LB_UPSTREAMS is not set: give a comma-separated list of /abs/path.sock, unix:/abs/path.sock or host:port",
        )?;
        let upstreams = upstreams_text
            .split(',')
            .map(|item| parse_upstream(item.trim()))
            .collect::<Result<Vec<_>, _>>()?;

        let strategy_text = get("LB_STRATEGY").unwrap_or_else(|| "round-robin".into());
        let strategy = Strategy::parse(&strategy_text).ok_or_else(|| {
            format!(
                "LB_STRATEGY={strategy_text} is not valid: use one of {}",
                Strategy::names()
            )
        })?;

        let mode = match get("LB_MODE") {
            None => Mode::DEFAULT,
            Some(text) => Mode::parse(&text).ok_or_else(|| {
                format!("LB_MODE={text} is not valid: use handoff (default), http or tcp")
            })?,
        };
        if !mode.supports(strategy) {
            return Err(format!(
                "LB_STRATEGY={strategy_text} needs LB_MODE=http: {} mode never reads the request; \
                 use one of {}",
                mode.name(),
                Strategy::names_where(|s| mode.supports(s))
            ));
        }
        if mode == Mode::Handoff {
            if let Some(tcp) = upstreams.iter().find(|u| matches!(u, UpstreamAddr::Tcp(_))) {
                return Err(format!(
                    "LB_UPSTREAMS entry {tcp} is not a Unix socket: LB_MODE=handoff passes connections \
                     over the APIs' handoff sockets (API_HANDOFF_SOCKET), /abs/path or unix:/abs/path"
                ));
            }
        }

        let admin = get("LB_ADMIN")
            .map(|value| serverkit::listen::admin("LB_ADMIN", &value))
            .transpose()?;

        Ok(Config {
            listen,
            upstreams,
            strategy,
            mode,
            timeout: Duration::from_millis(number(&get, "LB_TIMEOUT_MS", 10_000, 1..=3_600_000)?),
            connect_timeout: Duration::from_millis(number(
                &get,
                "LB_CONNECT_TIMEOUT_MS",
                1_000,
                1..=60_000,
            )?),
            max_body: number(&get, "LB_MAX_BODY", 64 * 1024, 0..=64 * 1024 * 1024)?,
            admin,
            workers: number(&get, "LB_WORKERS", 1, 1..=1024)?,
            drain: Duration::from_secs(number(&get, "LB_DRAIN_SECS", 10, 0..=3600)?),
            max_connections: number(&get, "LB_MAX_CONNECTIONS", 1024, 1..=1_000_000)?,
            deadlines: Deadlines::from_env(&get, "LB")?,
        })
    }
}

fn parse_upstream(item: &str) -> Result<UpstreamAddr, String> {
    let bad = |why: &str| {
        format!("LB_UPSTREAMS entry {item:?} {why}: use /abs/path.sock, unix:/abs/path.sock or host:port")
    };
    let path = item.strip_prefix("unix:").unwrap_or(item);
    if path.starts_with('/') {
        return Ok(UpstreamAddr::Unix(PathBuf::from(path)));
    }
    if item.starts_with("unix:") {
        return Err(bad("is not an absolute path"));
    }
    let (host, port) = item.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad("is not host:port"));
    }
    Ok(UpstreamAddr::Tcp(item.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serverkit::config::lookup_in;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_lookup(lookup_in(vars))
    }

    #[test]
    fn the_usage_names_every_variable_read() {
        let (read, unlisted) =
            serverkit::config::variables_read(&[("LB_UPSTREAMS", "/a.sock")], USAGE, |get| {
                Config::from_lookup(get).unwrap();
            });
        assert!(read.len() >= 14, "{read:?}");
        assert!(unlisted.is_empty(), "not in USAGE: {unlisted:?}");
        assert!(
            USAGE.contains(serverkit::log::USAGE),
            "the logger's variables"
        );
    }

    #[test]
    fn defaults_and_upstream_forms() {
        let config = parse(&[
            (
                "LB_UPSTREAMS",
                "/run/a.sock, unix:/run/b.sock,api3:8080,127.0.0.1:9",
            ),
            ("LB_MODE", "http"),
        ])
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:9999".parse().unwrap());
        assert_eq!(
            config.upstreams,
            [
                UpstreamAddr::Unix("/run/a.sock".into()),
                UpstreamAddr::Unix("/run/b.sock".into()),
                UpstreamAddr::Tcp("api3:8080".into()),
                UpstreamAddr::Tcp("127.0.0.1:9".into()),
            ]
        );
        assert_eq!(config.strategy, Strategy::RoundRobin);
        assert_eq!(config.mode, Mode::Http);
        assert_eq!(config.workers, 1);
        let default = parse(&[("LB_UPSTREAMS", "/run/a.handoff")]).unwrap();
        assert_eq!(default.mode, Mode::Handoff, "handoff without LB_MODE");
        assert!(config.admin.is_none());
        let handoff = parse(&[
            ("LB_UPSTREAMS", "/run/a.handoff,unix:/run/b.handoff"),
            ("LB_MODE", "handoff"),
            ("LB_STRATEGY", "least-connections"),
        ])
        .unwrap();
        assert_eq!(handoff.mode, Mode::Handoff);
        assert_eq!(handoff.strategy, Strategy::LeastConnections);
    }

    #[test]
    fn every_strategy_name_parses() {
        for strategy in Strategy::ALL {
            let config = parse(&[
                ("LB_UPSTREAMS", "/a"),
                ("LB_STRATEGY", strategy.name()),
                ("LB_MODE", "http"),
            ])
            .unwrap();
            assert_eq!(config.strategy, strategy);
        }
    }

    #[test]
    fn bad_configs_are_refused_with_the_choices() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "LB_UPSTREAMS is not set"),
            (&[("LB_UPSTREAMS", "")], "LB_UPSTREAMS is not set"),
            (&[("LB_UPSTREAMS", "/a,,/b")], "entry \"\""),
            (
                &[("LB_UPSTREAMS", "unix:relative.sock")],
                "not an absolute path",
            ),
            (&[("LB_UPSTREAMS", "api1")], "has no port"),
            (&[("LB_UPSTREAMS", "api1:http")], "is not host:port"),
            (
                &[("LB_UPSTREAMS", "/a"), ("LB_STRATEGY", "fastest")],
                "round-robin, least-connections, random, power-of-two, client-hash",
            ),
            (&[("LB_UPSTREAMS", "/a"), ("LB_MODE", "udp")], "LB_MODE=udp"),
            (
                &[
                    ("LB_UPSTREAMS", "/a"),
                    ("LB_MODE", "handoff"),
                    ("LB_STRATEGY", "client-hash"),
                ],
                "needs LB_MODE=http: handoff mode never reads the request",
            ),
            (
                &[("LB_UPSTREAMS", "/a,api2:8080"), ("LB_MODE", "handoff")],
                "api2:8080 is not a Unix socket",
            ),
            (
                &[
                    ("LB_UPSTREAMS", "/a"),
                    ("LB_MODE", "tcp"),
                    ("LB_STRATEGY", "client-hash"),
                ],
                "needs LB_MODE=http",
            ),
            (
                &[("LB_UPSTREAMS", "/a"), ("LB_LISTEN", "9999")],
                "LB_LISTEN=9999",
            ),
            (&[("LB_UPSTREAMS", "/a"), ("LB_ADMIN", "x")], "LB_ADMIN=x"),
            (
                &[("LB_UPSTREAMS", "/a"), ("LB_WORKERS", "0")],
                "LB_WORKERS=0",
            ),
            (
                &[("LB_UPSTREAMS", "/a"), ("LB_BODY_TIMEOUT_MS", "-1")],
                "LB_BODY_TIMEOUT_MS=-1",
            ),
        ];
        for (vars, expected) in cases {
            let err = parse(vars).expect_err(expected);
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
            assert!(!err.contains('\n'));
        }
    }
}
