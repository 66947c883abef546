//! compose.yaml's environment for a service, mapped onto this machine: the caller's
//! variables override literal values, and the runner's own addresses replace the
//! containers' paths.

use std::path::{Path, PathBuf};

use stack::compose::{interpolate, Service};

/// Variables the runner sets itself, because they are addresses on this machine.
const OWNED: [&str; 7] = [
    "DATABASE_URL",
    "API_SOCKET",
    "API_HANDOFF_SOCKET",
    "API_ADMIN",
    "LB_UPSTREAMS",
    "LB_LISTEN",
    "LB_ADMIN",
];

/// The variables that name a service's admin listener.
pub(crate) const ADMIN: [&str; 2] = ["API_ADMIN", "LB_ADMIN"];

/// The service's compose environment, resolved: the caller's variables override literal
/// values, and the runner's own addresses replace the container paths (and, with `admin`,
/// the admin listener's address).
pub(crate) fn environment(
    service: &Service,
    dir: &Path,
    database_url: &str,
    port: u16,
    admin: Option<&str>,
) -> Vec<(String, String)> {
    let lookup = |name: &str| std::env::var(name).ok();
    // Named volumes become directories under the stack's temporary directory.
    let mounts: Vec<(String, PathBuf)> = service
        .volumes
        .iter()
        .filter(|m| !m.source.starts_with('.') && !m.source.starts_with('/'))
        .map(|m| (m.target.clone(), dir.join("volumes").join(&m.source)))
        .collect();
    for (_, host) in &mounts {
        let _ = std::fs::create_dir_all(host);
    }
    service
        .environment
        .iter()
        .map(|(name, raw)| {
            let value = match name.as_str() {
                "DATABASE_URL" => database_url.to_owned(),
                "LB_LISTEN" => format!("0.0.0.0:{port}"),
                name if ADMIN.contains(&name) && admin.is_some() => admin.unwrap().to_owned(),
                _ if OWNED.contains(&name.as_str()) => {
                    let mut value = interpolate(raw, &lookup);
                    for (target, host) in &mounts {
                        value = value.replace(target.as_str(), &host.display().to_string());
                    }
                    value
                }
                _ => lookup(name)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| interpolate(raw, &lookup)),
            };
            (name.clone(), value)
        })
        .collect()
}
