//! Logging through `tracing`, set up once at start: human-readable lines by default, one
//! JSON object per line with `LOG_FORMAT=json` (for a log collector), levels from
//! `RUST_LOG` (default `info`; e.g. `RUST_LOG=warn` or `RUST_LOG=api=debug`). Everything
//! goes to standard error, which compose and the native runner keep.
//!
//! Lines carry their facts as fields (`client`, `operations`, `sqlstate`, ...), so an
//! operator can search for them in either format.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The variables `init` reads, for a server's `--help`.
pub const USAGE: &str = "\
  RUST_LOG                 log levels, e.g. warn or api=debug (default info)
  LOG_FORMAT               text (default) or json: one JSON object per line
";

/// Installs the process's logger from RUST_LOG and LOG_FORMAT.
pub fn init() -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| {
                format!("RUST_LOG={directives} is not a log filter ({e}), e.g. info or api=debug")
            })?,
        _ => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().flatten_event(true).try_init(),
        Ok("text") | Ok("") | Err(_) => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        Ok(other) => return Err(format!("LOG_FORMAT={other} is not text or json")),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}
