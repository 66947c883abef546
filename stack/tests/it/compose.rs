//! Static checks of what Docker runs: compose.yaml in every balancer mode (budget, wiring,
//! pass-through), the Dockerfiles and .dockerignore. `scripts/compose-test` runs the same
//! file under a real Docker engine.

use std::path::Path;

use stack::compose::{interpolate, Compose, Service};
use testkit::repo_root;

/// The balancer's modes; `None` is LB_MODE unset.
const MODES: [Option<&str>; 4] = [None, Some("handoff"), Some("http"), Some("tcp")];

/// compose.yaml as Compose resolves it with LB_MODE set to `mode` (or unset).
fn compose_in(mode: Option<&str>) -> Compose {
    let lookup = |name: &str| {
        (name == "LB_MODE")
            .then(|| mode.map(str::to_owned))
            .flatten()
    };
    Compose::load(&repo_root().join("compose.yaml"), &lookup)
        .unwrap_or_else(|e| panic!("compose.yaml with LB_MODE={mode:?}: {e}"))
}

fn compose() -> Compose {
    compose_in(None)
}

fn apis(compose: &Compose) -> Vec<&Service> {
    compose
        .services
        .iter()
        .filter(|s| s.dockerfile.as_deref() == Some("Dockerfile.api"))
        .collect()
}

fn lb(compose: &Compose) -> &Service {
    compose.service("lb").expect("a service named lb")
}

#[test]
fn in_every_mode_every_service_declares_limits_within_the_budget() {
    for mode in MODES {
        limits_within_the_budget(&compose_in(mode), mode);
    }
}

fn limits_within_the_budget(compose: &Compose, mode: Option<&str>) {
    let (mut cpus, mut memory) = (0.0, 0);
    for service in &compose.services {
        let c = service
            .cpus()
            .unwrap_or_else(|| panic!("{}: deploy.resources.limits.cpus", service.name));
        let m = service.memory_mb().unwrap_or_else(|| {
            panic!(
                "{}: limits.memory written in MB, got {:?}",
                service.name, service.memory
            )
        });
        assert!(c > 0.0 && m > 0, "{}", service.name);
        cpus += c;
        memory += m;
    }
    assert!(
        cpus <= 1.5 + 1e-9,
        "{mode:?}: CPU limits sum to {cpus}, over 1.5"
    );
    assert!(
        memory <= 550,
        "{mode:?}: memory limits sum to {memory}MB, over 550MB"
    );
}

#[test]
fn the_proxy_modes_give_the_balancer_more_cpu_than_handoff() {
    let lb_cpus = |mode| lb(&compose_in(mode)).cpus().unwrap();
    assert_eq!(
        lb_cpus(None),
        lb_cpus(Some("handoff")),
        "handoff is the default"
    );
    for mode in [Some("http"), Some("tcp")] {
        assert!(lb_cpus(mode) >= 3.0 * lb_cpus(None), "{mode:?}");
    }
}

#[test]
fn every_service_is_restarted_after_a_crash() {
    for service in &compose().services {
        assert_eq!(
            service.restart.as_deref(),
            Some("unless-stopped"),
            "{}",
            service.name
        );
    }
}

#[test]
fn the_required_services_exist() {
    let compose = compose();
    assert_eq!(apis(&compose).len(), 2, "two API instances");
    let db = compose.service("db").expect("a db service");
    assert!(
        db.image
            .as_deref()
            .is_some_and(|i| i.starts_with("postgres:")),
        "official postgres image"
    );
    assert_eq!(lb(&compose).dockerfile.as_deref(), Some("Dockerfile.lb"));
}

#[test]
fn only_the_balancer_takes_traffic_from_the_network_and_it_is_the_hosts_port_9999() {
    let compose = compose();
    let lb = lb(&compose);
    // No published port: its path (docker-proxy, NAT on a bridge) cost seconds of tail.
    assert_eq!(lb.network_mode.as_deref(), Some("host"));
    assert_eq!(lb.env("LB_LISTEN"), Some("0.0.0.0:9999"));
    assert_eq!(lb.env("LB_STRATEGY"), Some("${LB_STRATEGY:-round-robin}"));
    assert_eq!(lb.env("LB_MODE"), Some("${LB_MODE:-handoff}"));
    for service in &compose.services {
        assert!(
            service.ports.is_empty(),
            "{}: nothing published",
            service.name
        );
    }
    let db = compose.services.iter().find(|s| s.name == "db").unwrap();
    assert_eq!(
        db.network_mode.as_deref(),
        Some("none"),
        "db: Unix sockets only"
    );
    // The APIs share the host's network for their admin listeners alone, on loopback.
    for api in apis(&compose) {
        assert_eq!(api.network_mode.as_deref(), Some("host"), "{}", api.name);
        assert!(
            api.env("API_LISTEN").is_none(),
            "{}: no HTTP port of its own",
            api.name
        );
    }
}

#[test]
fn every_server_has_a_loopback_admin_listener_that_its_health_check_asks() {
    let compose = compose();
    let mut ports = Vec::new();
    for (service, variable) in apis(&compose)
        .into_iter()
        .map(|api| (api, "API_ADMIN"))
        .chain([(lb(&compose), "LB_ADMIN")])
    {
        let admin = service
            .env(variable)
            .unwrap_or_else(|| panic!("{}: {variable}", service.name));
        let port = admin
            .strip_prefix("127.0.0.1:")
            .unwrap_or_else(|| panic!("{}: {variable}={admin} is not on loopback", service.name));
        let check = service
            .healthcheck
            .as_ref()
            .expect("a health check")
            .join(" ");
        assert!(
            check.contains(&format!("/dev/tcp/127.0.0.1/{port} ")) && check.contains("GET /readyz"),
            "{}: {check}",
            service.name
        );
        ports.push(port.to_owned());
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "one port each");
}

/// The directory a path lives in, and the named volume mounted there for `service`.
fn volume_at<'a>(service: &'a Service, path: &str) -> &'a str {
    let dir = Path::new(path).parent().unwrap().to_str().unwrap();
    service
        .volumes
        .iter()
        .find(|m| m.target == dir)
        .map(|m| m.source.as_str())
        .unwrap_or_else(|| panic!("{}: no volume mounted at {dir} for {path}", service.name))
}

#[test]
fn in_every_mode_the_balancer_reaches_the_apis_sockets_of_that_mode() {
    let compose = compose();
    let lb = lb(&compose);
    let apis = apis(&compose);
    // With LB_MODE unset: the default mode's sockets.
    for mode in MODES {
        let env = |name: &str| {
            (name == "LB_MODE")
                .then(|| mode.map(str::to_owned))
                .flatten()
        };
        let resolved_mode = interpolate(lb.env("LB_MODE").unwrap(), &env);
        let upstreams = interpolate(lb.env("LB_UPSTREAMS").expect("LB_UPSTREAMS"), &env);
        let upstreams: Vec<&str> = upstreams.split(',').collect();
        assert_eq!(
            upstreams.len(),
            apis.len(),
            "{mode:?}: one upstream per API"
        );
        for (api, upstream) in apis.iter().zip(&upstreams) {
            let variable = if resolved_mode == "handoff" {
                "API_HANDOFF_SOCKET"
            } else {
                "API_SOCKET"
            };
            let socket = api
                .env(variable)
                .unwrap_or_else(|| panic!("{}: {variable}", api.name));
            // Same volume and file name: the same socket, seen from each container.
            assert_eq!(
                volume_at(lb, upstream),
                volume_at(api, socket),
                "{mode:?}: {} at {upstream}",
                api.name
            );
            assert_eq!(
                Path::new(upstream).file_name(),
                Path::new(socket).file_name(),
                "{mode:?}"
            );
            assert!(
                compose.volumes.iter().any(|v| v == volume_at(api, socket)),
                "declared at top level"
            );
        }
        assert_ne!(upstreams[0], upstreams[1]);
    }
}

#[test]
fn the_apis_reach_the_database_socket_and_wait_for_it() {
    let compose = compose();
    let db = compose.service("db").unwrap();
    let health = db.healthcheck.as_ref().expect("db healthcheck");
    // Ready from PostgreSQL's own status file, with a TCP address (not the init server's
    // socket-only one); no connection, so no backend forked per check.
    let check = health.join(" ");
    assert!(
        check.contains("postmaster.pid")
            && check.contains("ready")
            && !check.contains("pg_isready"),
        "{health:?}"
    );
    for api in apis(&compose) {
        let url = api.env("DATABASE_URL").expect("DATABASE_URL");
        let socket_dir = url
            .split("host=")
            .nth(1)
            .expect("a Unix socket directory in DATABASE_URL");
        let probe = format!("{socket_dir}/.s.PGSQL.5432");
        assert_eq!(
            volume_at(api, &probe),
            volume_at(db, &probe),
            "{}: shares the db socket volume",
            api.name
        );
        assert!(
            url.contains(&format!("/{}", db.env("POSTGRES_DB").unwrap())),
            "{url}"
        );
        let dependency = api
            .depends_on
            .iter()
            .find(|(name, _)| name == "db")
            .expect("depends on db");
        assert_eq!(dependency.1.as_deref(), Some("service_healthy"));
    }
}

#[test]
fn mounted_files_exist_and_the_config_file_is_used() {
    let compose = compose();
    for service in &compose.services {
        for mount in &service.volumes {
            if mount.source.starts_with('.') || mount.source.starts_with('/') {
                assert!(
                    repo_root().join(&mount.source).is_file(),
                    "{}: {} does not exist",
                    service.name,
                    mount.source
                );
            } else {
                assert!(
                    compose.volumes.contains(&mount.source),
                    "{}: volume {} not declared",
                    service.name,
                    mount.source
                );
            }
        }
    }
    let db = compose.service("db").unwrap();
    let config = db
        .command
        .as_deref()
        .and_then(|c| c.split("config_file=").nth(1))
        .expect("postgres -c config_file=...");
    let mount = db
        .volumes
        .iter()
        .find(|m| m.target == config)
        .expect("the config file is mounted");
    assert_eq!(mount.source, "./db/postgresql.conf");
    assert!(db.volumes.iter().any(
        |m| m.source == "./db/init.sql" && m.target.starts_with("/docker-entrypoint-initdb.d/")
    ));
}

fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let list = manifest
        .split("members = [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn dockerfiles_build_the_right_binaries_from_files_that_exist() {
    let compose = compose();
    let members = workspace_members();
    for service in compose.services.iter().filter(|s| s.dockerfile.is_some()) {
        let name = service.dockerfile.as_deref().unwrap();
        assert_eq!(
            service.build_context.as_deref(),
            Some("."),
            "{name}: built from the repo root"
        );
        let text = std::fs::read_to_string(repo_root().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut copied = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(image) = line.strip_prefix("FROM ") {
                let image = image
                    .split_whitespace()
                    .find(|w| !w.starts_with("--"))
                    .unwrap();
                assert!(
                    !image.contains('/'),
                    "{name}: {image} is not an official image"
                );
            }
            if let Some(args) = line.strip_prefix("COPY ") {
                if args.starts_with("--from") {
                    continue;
                }
                let words: Vec<&str> = args.split_whitespace().collect();
                for source in &words[..words.len() - 1] {
                    assert!(
                        repo_root().join(source).exists(),
                        "{name}: COPY {source} does not exist"
                    );
                    copied.push(source.to_string());
                }
            }
        }
        // The dependency layer needs every member's manifest, or the build breaks.
        for member in &members {
            assert!(
                copied.contains(&format!("{member}/Cargo.toml")),
                "{name}: COPY {member}/Cargo.toml"
            );
        }
        let binary = match name {
            "Dockerfile.api" => "api",
            "Dockerfile.lb" => "balancer",
            other => panic!("unexpected {other}"),
        };
        assert!(
            text.contains(&format!("-p {binary}")),
            "{name} builds {binary}"
        );
        assert!(
            text.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")),
            "{name} runs {binary}"
        );
        assert!(text.contains("\nUSER "), "{name}: not root");
        assert!(
            text.contains("linux/amd64"),
            "{name}: the test server is x86-64"
        );
    }
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).expect(".dockerignore");
    for entry in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}
