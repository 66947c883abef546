//! Configuration, read once from the environment at start.
//!
//! Every knob lives here, so the README's table and the code cannot drift apart silently:
//! each error message names the variable and says how to fix it.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serverkit::config::number;
use serverkit::deadline::Deadlines;
use serverkit::listen::Listen;

use sqlx::postgres::PgConnectOptions;

/// `api --help`. A test checks that every variable `Config` reads is named here.
pub const USAGE: &str = "\
api: the Rinha de Backend 2024/Q1 API (credits, debits and statements over PostgreSQL).
It takes no arguments; it is configured by environment variables (README.md, Configuration):

  DATABASE_URL             postgres://user@host/db (required; ?host=/dir for a Unix socket)
  API_SOCKET               serve HTTP on this Unix socket path, or
  API_LISTEN               serve HTTP on this host:port (at most one of the two)
  API_HANDOFF_SOCKET       take connections the balancer hands over on this socket path
  API_ADMIN                /metrics, /healthz, /readyz on this host:port or socket path
                           (off when unset; compose.yaml and scripts/run set it)
  DB_POOL_SIZE             write connections (default 5)
  DB_READ_POOL_SIZE        connections for statements only (default 1; 0: share the writes')
  DB_BATCH_MAX             group commit: most transactions in one commit (default 16)
  DB_TIMEOUT_MS            deadline for a connection and for one operation (default 2000)
  DB_WAIT_SECS             how long to wait for the database at start (default 30)
  API_WORKERS              runtime threads (default 1)
  API_MAX_CONNECTIONS      open client connections at once (default 1024)
  API_DRAIN_SECS           time in-flight requests get after SIGTERM (default 10)
  API_HEADER_TIMEOUT_MS    client deadlines: the request head,
  API_BODY_TIMEOUT_MS      its body,
  API_IDLE_TIMEOUT_MS      and an idle keep-alive connection
  RUST_LOG                 log levels, e.g. warn or api=debug (default info)
  LOG_FORMAT               text (default) or json: one JSON object per line
";

/// The API's configuration, read once at start (`from_env`).
#[derive(Debug, Clone)]
pub struct Config {
    /// DATABASE_URL.
    pub database: PgConnectOptions,
    /// Every source of connections: HTTP on a Unix socket or TCP, and/or a handoff socket.
    pub listen: Vec<Listen>,
    /// API_ADMIN: the admin listener (metrics and health), if any.
    pub admin: Option<Listen>,
    /// Write connections (DB_POOL_SIZE).
    pub pool_size: u32,
    /// Connections for statement reads only (0: reads share `pool_size`'s connections).
    pub read_pool_size: u32,
    /// Runtime threads (API_WORKERS).
    pub workers: usize,
    /// How long to wait for the database at start before giving up.
    pub db_wait: Duration,
    /// Upper bound for getting a connection and for one database operation; past it the
    /// request gets 503 instead of hanging.
    pub db_timeout: Duration,
    /// Group commit: the most credits and debits one transaction applies; 1 runs each alone.
    pub batch_max: usize,
    /// Client connections open at once (API_MAX_CONNECTIONS).
    pub max_connections: usize,
    /// How long in-flight requests get to finish after a shutdown signal.
    pub drain: Duration,
    /// API_HEADER_TIMEOUT_MS, API_BODY_TIMEOUT_MS, API_IDLE_TIMEOUT_MS: how long a client
    /// may take (in handoff mode the API reads the clients themselves).
    pub deadlines: Deadlines,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests can feed it without touching the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let url = get("DATABASE_URL").ok_or(
            "DATABASE_URL is not set: give a PostgreSQL URL, e.g. postgres://user:pass@host:5432/db \
             or postgres://user@localhost/db?host=/var/run/postgresql for a Unix socket directory",
        )?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                "DATABASE_URL is not a valid PostgreSQL URL: it must start with postgres://".into(),
            );
        }
        let database = PgConnectOptions::from_str(&url)
            .map_err(|e| format!("DATABASE_URL is not a valid PostgreSQL URL ({e})"))?;

        let mut listen = match (get("API_SOCKET"), get("API_LISTEN")) {
            (Some(path), None) => vec![Listen::Unix(socket_path("API_SOCKET", &path)?)],
            (None, Some(addr)) => vec![Listen::Tcp(addr.parse().map_err(|_| {
                format!("API_LISTEN={addr} is not host:port with a numeric IP, e.g. 0.0.0.0:8080")
            })?)],
            (Some(_), Some(_)) => {
                return Err("API_SOCKET and API_LISTEN are both set: set at most one".into())
            }
            (None, None) => Vec::new(),
        };
        if let Some(path) = get("API_HANDOFF_SOCKET") {
            listen.push(Listen::Handoff(socket_path("API_HANDOFF_SOCKET", &path)?));
        }
        if listen.is_empty() {
            return Err(
                "set API_SOCKET=/path/to/api.sock (Unix socket), API_LISTEN=host:port (TCP) \
                 and/or API_HANDOFF_SOCKET=/path/to/api.handoff (connections from the balancer)"
                    .into(),
            );
        }

        Ok(Config {
            database,
            listen,
            admin: get("API_ADMIN")
                .map(|value| serverkit::listen::admin("API_ADMIN", &value))
                .transpose()?,
            pool_size: number(&get, "DB_POOL_SIZE", 5, 1..=1000)?,
            read_pool_size: number(&get, "DB_READ_POOL_SIZE", 1, 0..=1000)?,
            workers: number(&get, "API_WORKERS", 1, 1..=1024)?,
            db_wait: Duration::from_secs(number(&get, "DB_WAIT_SECS", 30, 0..=3600)?),
            db_timeout: Duration::from_millis(number(&get, "DB_TIMEOUT_MS", 2000, 1..=600_000)?),
            batch_max: number(&get, "DB_BATCH_MAX", 16, 1..=1000)?,
            max_connections: number(&get, "API_MAX_CONNECTIONS", 1024, 1..=1_000_000)?,
            drain: Duration::from_secs(number(&get, "API_DRAIN_SECS", 10, 0..=3600)?),
            deadlines: Deadlines::from_env(&get, "API")?,
        })
    }
}

/// A socket path from variable `name`: absolute, since the balancer in another container
/// (or process) reaches it by the same name.
fn socket_path(name: &str, path: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(path);
    if !path.is_absolute() || path.file_name().is_none() {
        return Err(format!(
            "{name}={} is not an absolute file path",
            path.display()
        ));
    }
    Ok(path)
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
        let (read, unlisted) = serverkit::config::variables_read(
            &[DB, ("API_SOCKET", "/a"), ("API_HANDOFF_SOCKET", "/h")],
            USAGE,
            |get| {
                Config::from_lookup(get).unwrap();
            },
        );
        assert!(read.len() >= 15, "{read:?}");
        assert!(unlisted.is_empty(), "not in USAGE: {unlisted:?}");
        assert!(
            USAGE.contains(serverkit::log::USAGE),
            "the logger's variables"
        );
    }

    const DB: (&str, &str) = ("DATABASE_URL", "postgres://u:p@localhost:5432/rinha");

    #[test]
    fn minimal_unix_config_uses_defaults() {
        let config = parse(&[DB, ("API_SOCKET", "/tmp/api.sock")]).unwrap();
        assert_eq!(config.listen, [Listen::Unix("/tmp/api.sock".into())]);
        assert_eq!(config.drain, Duration::from_secs(10));
        assert_eq!(config.pool_size, 5);
        assert_eq!(config.read_pool_size, 1);
        assert_eq!(config.workers, 1);
        assert_eq!(config.batch_max, 16);
        assert_eq!(config.db_wait, Duration::from_secs(30));
    }

    #[test]
    fn socket_directory_url_is_accepted() {
        let config = parse(&[
            (
                "DATABASE_URL",
                "postgres://postgres@localhost/rinha?host=/var/run/postgresql",
            ),
            ("API_LISTEN", "127.0.0.1:8080"),
        ])
        .unwrap();
        assert!(matches!(config.listen[..], [Listen::Tcp(a)] if a.port() == 8080));
    }

    #[test]
    fn a_handoff_socket_alone_or_beside_http() {
        let alone = parse(&[DB, ("API_HANDOFF_SOCKET", "/run/api1.handoff")]).unwrap();
        assert_eq!(alone.listen, [Listen::Handoff("/run/api1.handoff".into())]);
        let both = parse(&[
            DB,
            ("API_SOCKET", "/run/api1.sock"),
            ("API_HANDOFF_SOCKET", "/run/api1.handoff"),
        ])
        .unwrap();
        assert_eq!(
            both.listen,
            [
                Listen::Unix("/run/api1.sock".into()),
                Listen::Handoff("/run/api1.handoff".into())
            ]
        );
    }

    #[test]
    fn bad_configs_say_which_variable_is_wrong() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("API_SOCKET", "/tmp/a.sock")], "DATABASE_URL is not set"),
            (
                &[("DATABASE_URL", "mysql://x"), ("API_SOCKET", "/a")],
                "DATABASE_URL is not a valid",
            ),
            (&[DB], "set API_SOCKET"),
            (
                &[DB, ("API_SOCKET", "/a"), ("API_LISTEN", "1.2.3.4:5")],
                "both set",
            ),
            (&[DB, ("API_LISTEN", "localhost")], "API_LISTEN=localhost"),
            (
                &[DB, ("API_HANDOFF_SOCKET", "api.handoff")],
                "API_HANDOFF_SOCKET=api.handoff is not an absolute",
            ),
            (
                &[DB, ("API_SOCKET", "/")],
                "API_SOCKET=/ is not an absolute file path",
            ),
            (
                &[DB, ("API_SOCKET", "/a"), ("API_DRAIN_SECS", "soon")],
                "API_DRAIN_SECS=soon",
            ),
            (
                &[DB, ("API_SOCKET", "/a"), ("DB_POOL_SIZE", "0")],
                "DB_POOL_SIZE=0",
            ),
            (
                &[DB, ("API_SOCKET", "/a"), ("DB_READ_POOL_SIZE", "-1")],
                "DB_READ_POOL_SIZE=-1",
            ),
            (
                &[DB, ("API_SOCKET", "/a"), ("API_HEADER_TIMEOUT_MS", "5s")],
                "API_HEADER_TIMEOUT_MS=5s",
            ),
            (
                &[DB, ("API_SOCKET", "/a"), ("API_IDLE_TIMEOUT_MS", "0")],
                "API_IDLE_TIMEOUT_MS=0",
            ),
            (
                &[DB, ("API_SOCKET", "/a"), ("API_WORKERS", "two")],
                "API_WORKERS=two",
            ),
            (
                &[DB, ("API_SOCKET", "/a"), ("DB_BATCH_MAX", "0")],
                "DB_BATCH_MAX=0",
            ),
            (
                &[DB, ("API_SOCKET", "/a"), ("DB_TIMEOUT_MS", "-1")],
                "DB_TIMEOUT_MS=-1",
            ),
            (
                &[DB, ("API_SOCKET", "/a"), ("API_ADMIN", "localhost:9991")],
                "API_ADMIN=localhost:9991 is not ip:port",
            ),
            (
                &[DB, ("API_SOCKET", "/a"), ("API_ADMIN", "admin.sock")],
                "API_ADMIN=admin.sock",
            ),
        ];
        for (vars, expected) in cases {
            let err = parse(vars).expect_err(expected);
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }
}
