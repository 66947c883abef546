//! The parts of a Compose file this project uses, read with a real YAML parser (anchors and
//! aliases included).

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

#[derive(Debug, Clone)]
pub struct Mount {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Clone, Default)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    pub build_context: Option<String>,
    pub dockerfile: Option<String>,
    pub command: Option<String>,
    /// Raw values, `${VAR:-default}` not yet resolved.
    pub environment: Vec<(String, String)>,
    pub volumes: Vec<Mount>,
    pub ports: Vec<String>,
    pub cpus: Option<String>,
    pub memory: Option<String>,
    /// (service, condition)
    pub depends_on: Vec<(String, Option<String>)>,
    pub healthcheck: Option<Vec<String>>,
    pub restart: Option<String>,
}

impl Service {
    pub fn env(&self, name: &str) -> Option<&str> {
        self.environment
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn cpus(&self) -> Option<f64> {
        self.cpus.as_deref()?.parse().ok()
    }

    /// The memory limit in megabytes, when written as `<n>MB` (the challenge asks for MB).
    pub fn memory_mb(&self) -> Option<u64> {
        self.memory.as_deref()?.strip_suffix("MB")?.parse().ok()
    }
}

#[derive(Debug, Clone)]
pub struct Compose {
    pub services: Vec<Service>,
    pub volumes: Vec<String>,
}

impl Compose {
    pub fn load(path: &Path) -> Result<Compose, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Compose::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

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

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
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
    s.healthcheck = body["healthcheck"]["test"]
        .as_vec()
        .map(|t| t.iter().filter_map(scalar).collect());
    Ok(s)
}

/// Resolves `${VAR}` and `${VAR:-default}` the way Compose does, reading variables through
/// `lookup` (an empty value counts as unset for `:-`).
pub fn interpolate(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
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
        assert_eq!(interpolate("${SET:-no}", env), "yes");
        assert_eq!(interpolate("${UNSET:-round-robin}", env), "round-robin");
        assert_eq!(interpolate("a-${SET}-b-${UNSET}-c", env), "a-yes-b--c");
        assert_eq!(interpolate("plain", env), "plain");
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
}
