//! The parts of a Compose file this project uses, read with a real YAML parser (anchors and
//! aliases included), with `extends` resolved as Compose resolves it.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

/// A volume or bind mount of a service.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The volume name or host path.
    pub source: String,
    /// The path in the container.
    pub target: String,
}

/// One service of compose.yaml, as far as the runner and the checks need it.
#[derive(Debug, Clone, Default)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// `image`.
    pub image: Option<String>,
    /// `build.context`.
    pub build_context: Option<String>,
    /// `build.dockerfile`.
    pub dockerfile: Option<String>,
    /// `command`, as one string.
    pub command: Option<String>,
    /// Raw values, `${VAR:-default}` not yet resolved.
    pub environment: Vec<(String, String)>,
    /// `volumes`.
    pub volumes: Vec<Mount>,
    /// `ports`.
    pub ports: Vec<String>,
    /// `deploy.resources.limits.cpus`, raw.
    pub cpus: Option<String>,
    /// `deploy.resources.limits.memory`, raw.
    pub memory: Option<String>,
    /// (service, condition)
    pub depends_on: Vec<(String, Option<String>)>,
    /// `healthcheck.test`.
    pub healthcheck: Option<Vec<String>>,
    /// `restart`.
    pub restart: Option<String>,
    /// `network_mode`.
    pub network_mode: Option<String>,
    /// `extends`, as written (`${VAR}` not yet resolved); [`Compose::load`] resolves it.
    pub extends: Option<Extends>,
}

/// An `extends:` entry.
#[derive(Debug, Clone)]
pub struct Extends {
    /// The other file, if any.
    pub file: Option<String>,
    /// The service extended.
    pub service: String,
}

impl Service {
    /// The raw value of environment variable `name`.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.environment
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The CPU limit as a number, with `${VAR:-default}` resolved to its default.
    pub fn cpus(&self) -> Option<f64> {
        self.cpus.as_deref()?.parse().ok()
    }

    /// The memory limit in megabytes, when written as `<n>MB` (the challenge asks for MB).
    pub fn memory_mb(&self) -> Option<u64> {
        self.memory.as_deref()?.strip_suffix("MB")?.parse().ok()
    }

    /// This service written over `base`, as Compose merges an extending service over the one
    /// it extends: single values replace, environment variables and mounts replace per name
    /// and target, lists append.
    fn over(self, base: Service) -> Service {
        let mut environment = base.environment;
        for (key, value) in self.environment {
            environment.retain(|(k, _)| *k != key);
            environment.push((key, value));
        }
        let mut volumes = base.volumes;
        for mount in self.volumes {
            volumes.retain(|m| m.target != mount.target);
            volumes.push(mount);
        }
        Service {
            name: self.name,
            image: self.image.or(base.image),
            build_context: self.build_context.or(base.build_context),
            dockerfile: self.dockerfile.or(base.dockerfile),
            command: self.command.or(base.command),
            environment,
            volumes,
            ports: [base.ports, self.ports].concat(),
            cpus: self.cpus.or(base.cpus),
            memory: self.memory.or(base.memory),
            depends_on: [base.depends_on, self.depends_on].concat(),
            healthcheck: self.healthcheck.or(base.healthcheck),
            restart: self.restart.or(base.restart),
            network_mode: self.network_mode.or(base.network_mode),
            extends: base.extends,
        }
    }
}

/// compose.yaml, as far as the runner and the checks need it.
#[derive(Debug, Clone)]
pub struct Compose {
    /// Every service, in file order.
    pub services: Vec<Service>,
    /// Named volumes.
    pub volumes: Vec<String>,
}

impl Compose {
    /// Reads a Compose file and resolves every `extends`, its file and service name
    /// interpolated first with variables from `lookup`, as Compose does (compose.yaml picks
    /// its limits from limits.yaml by `LB_MODE` that way).
    pub fn load(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Compose, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let raw = Compose::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let services = raw
            .services
            .iter()
            .map(|service| extend(service.clone(), path, &raw, lookup))
            .collect::<Result<_, _>>()?;
        Ok(Compose {
            services,
            volumes: raw.volumes.clone(),
        })
    }

    /// Parses compose text (without resolving `extends`: `load` does).
    pub fn parse(text: &str) -> Result<Compose, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
        let doc = docs.first().ok_or("empty document")?;
        let services = doc["services"].as_hash().ok_or("no services")?;
        let services = services
            .iter()
            .map(|(name, body)| service(name.as_str().unwrap_or_default(), body))
            .collect::<Result<Vec<_>, _>>()?;
        let volumes = doc["volumes"]
            .as_hash()
            .map(|h| {
                h.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Compose { services, volumes })
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// `service` written over the service it extends (in `compose`, read from `path`, or in the
/// file its `extends` names), recursively.
fn extend(
    mut service: Service,
    path: &Path,
    compose: &Compose,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Service, String> {
    let Some(extends) = service.extends.take() else {
        return Ok(service);
    };
    let name = interpolate(&extends.service, lookup);
    let base = match &extends.file {
        Some(file) => {
            let file = path
                .parent()
                .unwrap_or(Path::new("."))
                .join(interpolate(file, lookup));
            Compose::load(&file, lookup)?
                .service(&name)
                .cloned()
                .ok_or_else(|| format!("{}: no service {name} to extend", file.display()))?
        }
        None => {
            let base = compose
                .service(&name)
                .cloned()
                .ok_or_else(|| format!("{}: no service {name} to extend", path.display()))?;
            extend(base, path, compose, lookup)?
        }
    };
    Ok(service.over(base))
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn service(name: &str, body: &Yaml) -> Result<Service, String> {
    let mut s = Service {
        name: name.to_owned(),
        ..Service::default()
    };
    s.image = scalar(&body["image"]);
    s.command = scalar(&body["command"]);
    match &body["build"] {
        Yaml::String(context) => s.build_context = Some(context.clone()),
        build @ Yaml::Hash(_) => {
            s.build_context = scalar(&build["context"]);
            s.dockerfile = scalar(&build["dockerfile"]);
        }
        _ => {}
    }
    match &body["environment"] {
        Yaml::Hash(h) => {
            for (k, v) in h {
                let key = k
                    .as_str()
                    .ok_or_else(|| format!("{name}: environment key"))?;
                s.environment
                    .push((key.to_owned(), scalar(v).unwrap_or_default()));
            }
        }
        Yaml::Array(items) => {
            for item in items.iter().filter_map(Yaml::as_str) {
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                s.environment.push((k.to_owned(), v.to_owned()));
            }
        }
        _ => {}
    }
    for volume in body["volumes"].as_vec().into_iter().flatten() {
        let text = volume
            .as_str()
            .ok_or_else(|| format!("{name}: only short volume syntax is supported"))?;
        let mut parts = text.split(':');
        let (source, target) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        s.volumes.push(Mount {
            source: source.to_owned(),
            target: target.to_owned(),
        });
    }
    s.ports = body["ports"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter_map(scalar)
        .collect();
    let limits = &body["deploy"]["resources"]["limits"];
    s.cpus = scalar(&limits["cpus"]);
    s.memory = scalar(&limits["memory"]);
    match &body["depends_on"] {
        Yaml::Array(items) => {
            s.depends_on = items.iter().filter_map(scalar).map(|d| (d, None)).collect()
        }
        Yaml::Hash(h) => {
            s.depends_on = h
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar(&v["condition"]))))
                .collect()
        }
        _ => {}
    }
    s.restart = scalar(&body["restart"]);
    s.network_mode = scalar(&body["network_mode"]);
    s.extends = match &body["extends"] {
        Yaml::String(service) => Some(Extends {
            file: None,
            service: service.clone(),
        }),
        extends @ Yaml::Hash(_) => Some(Extends {
            file: scalar(&extends["file"]),
            service: scalar(&extends["service"])
                .ok_or_else(|| format!("{name}: extends without a service"))?,
        }),
        _ => None,
    };
    s.healthcheck = body["healthcheck"]["test"]
        .as_vec()
        .map(|t| t.iter().filter_map(scalar).collect());
    Ok(s)
}

/// Resolves `${VAR}` and `${VAR:-default}` the way Compose does, reading variables through
/// `lookup` (an empty value counts as unset for `:-`).
pub fn interpolate(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &rest[start + 2..start + end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        out.push_str(
            &lookup(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned()),
        );
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation() {
        let env = |name: &str| (name == "SET").then(|| "yes".to_owned());
        assert_eq!(interpolate("${SET:-no}", &env), "yes");
        assert_eq!(interpolate("${UNSET:-round-robin}", &env), "round-robin");
        assert_eq!(interpolate("a-${SET}-b-${UNSET}-c", &env), "a-yes-b--c");
        assert_eq!(interpolate("plain", &env), "plain");
    }

    #[test]
    fn anchors_and_both_environment_forms() {
        let compose = Compose::parse(
            "services:\n  a:\n    environment: &env\n      X: \"1\"\n    deploy: &d\n      resources:\n        limits:\n          cpus: \"0.5\"\n          memory: 10MB\n  b:\n    environment: [\"Y=2\"]\n    deploy: *d\n",
        )
        .unwrap();
        let b = compose.service("b").unwrap();
        assert_eq!(b.env("Y"), Some("2"));
        assert_eq!((b.cpus(), b.memory_mb()), (Some(0.5), Some(10)));
        assert_eq!(compose.service("a").unwrap().env("X"), Some("1"));
    }

    #[test]
    fn extends_from_another_file_by_an_interpolated_name() {
        let dir = std::env::temp_dir().join(format!("rinha-compose-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("limits.yaml"),
            "services:\n  a-one:\n    environment: {X: base, Y: base}\n    deploy: {resources: {limits: {cpus: \"0.1\", memory: 1MB}}}\n  a-two:\n    deploy: {resources: {limits: {cpus: \"0.2\", memory: 2MB}}}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("compose.yaml"),
            "services:\n  a:\n    image: x\n    environment: {Y: local}\n    extends: {file: limits.yaml, service: \"a-${MODE:-one}\"}\n  b:\n    extends: a\n    network_mode: none\n",
        )
        .unwrap();
        let load = |mode: Option<&str>| {
            let mode = mode.map(str::to_owned);
            Compose::load(&dir.join("compose.yaml"), &move |name: &str| {
                (name == "MODE").then(|| mode.clone()).flatten()
            })
        };
        let default = load(None).unwrap();
        let a = default.service("a").unwrap();
        assert_eq!((a.cpus(), a.memory_mb()), (Some(0.1), Some(1)));
        assert_eq!((a.env("X"), a.env("Y")), (Some("base"), Some("local")));
        assert_eq!(a.image.as_deref(), Some("x"));
        let b = default.service("b").unwrap();
        assert_eq!((b.cpus(), b.env("Y")), (Some(0.1), Some("local")));
        assert_eq!(b.network_mode.as_deref(), Some("none"));
        let two = load(Some("two")).unwrap();
        assert_eq!(two.service("b").unwrap().memory_mb(), Some(2));
        let missing = load(Some("three")).unwrap_err();
        assert!(missing.contains("no service a-three"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
