//! Reading a process's `/metrics` the way Prometheus does: every sample line of the text
//! format, by name and labels.

use std::collections::BTreeMap;

use crate::Target;

/// One scrape: each sample (`name{label="value",...}`, labels sorted) and its value.
#[derive(Debug)]
pub struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    /// Scrapes `target`'s `/metrics`; panics unless it answers 200 in the OpenMetrics format.
    pub async fn of(target: &Target) -> Scrape {
        let reply = target.get("/metrics").await;
        assert_eq!(reply.status, hyper::StatusCode::OK, "{}", reply.text());
        Scrape::parse(&reply.text())
    }

    /// Parses exposition text.
    pub fn parse(text: &str) -> Scrape {
        assert!(
            text.ends_with("# EOF\n"),
            "not a whole OpenMetrics exposition"
        );
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("a sample line");
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
                (normalized(series), value)
            })
            .collect();
        Scrape(samples)
    }

    /// The value of `name` with exactly `labels`; 0 when absent is not assumed: panics.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = key(name, labels);
        *self
            .0
            .get(&key)
            .unwrap_or_else(|| panic!("no sample {key} in {:#?}", self.0.keys()))
    }

    /// The sum of every sample of `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        self.0
            .iter()
            .filter(|(series, _)| {
                series.split('{').next() == Some(name)
                    && wanted.iter().all(|label| series.contains(label.as_str()))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    pairs.sort();
    format!("{name}{{{}}}", pairs.join(","))
}

/// `name{b="2",a="1"}` as `name{a="1",b="2"}` (label values hold no commas here).
fn normalized(series: &str) -> String {
    match series.split_once('{') {
        None => series.to_owned(),
        Some((name, labels)) => {
            let mut pairs: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
            pairs.sort();
            format!("{name}{{{}}}", pairs.join(","))
        }
    }
}
