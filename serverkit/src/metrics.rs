//! What a process counts for its operator, and how Prometheus reads it.
//!
//! Counting happens on the request path, so it is a relaxed atomic add into a static: no
//! lock, no allocation, no lookup by name or label (a label set is an index into an array
//! fixed at compile time, so it is bounded by construction). The statics are read only when
//! `/metrics` is scraped (`crate::admin`), through one `Collector` per crate that writes
//! them with prometheus-client's OpenMetrics text encoder: the format's escaping, `# TYPE`,
//! `# UNIT`, `_total` and cumulative `le` buckets are the official client's, not ours.
//! prometheus-client's own `Family` and `Histogram` take a lock per observation; the
//! encoder alone does not.
//!
//! What serverkit itself counts (connections received, cut by a deadline, malformed
//! requests) is `SERVER`, written by `server_families` into every process's exposition.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::histogram::{Snapshot, BOUNDS_US};

/// Prefix of every metric name (Prometheus's convention: one word naming the application).
pub const PREFIX: &str = "rinha";

/// A monotonic count in a static.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Zero.
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    /// One more.
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    /// `n` more.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One scrape's metric families, written through prometheus-client's encoder. Names are
/// given without the prefix, the unit or `_total`; the encoder adds them.
pub struct Families<'a>(DescriptorEncoder<'a>);

impl Families<'_> {
    /// A counter without labels: `name_total value`.
    pub fn one_counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.0
            .encode_descriptor(name, help, None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)
    }

    /// A counter family: `name_total{labels} value` per sample, the labels as
    /// `[("route", "extrato"), ("status", "200")]`.
    pub fn counter<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in samples {
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }

    /// A gauge family.
    pub fn gauge<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, i64)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in samples {
            family.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    /// A histogram family in seconds, from `crate::histogram`'s microsecond buckets.
    pub fn seconds<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, Snapshot)>,
    ) -> fmt::Result {
        let mut family =
            self.0
                .encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
        for (labels, snapshot) in samples {
            let buckets = buckets(
                BOUNDS_US.iter().map(|&us| us as f64 / 1e6),
                &snapshot.buckets,
            );
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    snapshot.sum_us as f64 / 1e6,
                    snapshot.count(),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }

    /// A histogram family of plain numbers (sizes): `counts` has one entry per bound and
    /// one more for everything above.
    pub fn sizes(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[u64],
        counts: &[u64],
        sum: u64,
    ) -> fmt::Result {
        assert_eq!(counts.len(), bounds.len() + 1, "one count per bucket");
        let buckets = buckets(bounds.iter().map(|&b| b as f64), counts);
        self.0
            .encode_descriptor(name, help, None, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(sum as f64, counts.iter().sum(), &buckets, None)
    }
}

/// Buckets as prometheus-client takes them: (upper bound, count in that bucket alone),
/// `+Inf` last; the encoder writes them cumulative.
fn buckets(bounds: impl Iterator<Item = f64>, counts: &[u64]) -> Vec<(f64, u64)> {
    bounds
        .chain(std::iter::once(f64::INFINITY))
        .zip(counts.iter().copied())
        .collect()
}

/// A crate's families, written at each scrape by `write`.
pub struct Collect<F>(pub F);

impl<F> fmt::Debug for Collect<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Collect")
    }
}

impl<F> Collector for Collect<F>
where
    F: Fn(&mut Families<'_>) -> fmt::Result + Send + Sync + 'static,
{
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        (self.0)(&mut Families(encoder))
    }
}

/// A registry holding serverkit's own families and `collect`'s, under `PREFIX`.
pub fn registry<F>(collect: F) -> Registry
where
    F: Fn(&mut Families<'_>) -> fmt::Result + Send + Sync + 'static,
{
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Collect(server_families)));
    registry.register_collector(Box::new(Collect(collect)));
    registry
}

/// The whole exposition of `registry`, in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

/// The `Content-Type` of `encode`'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `status` label over a fixed list of HTTP statuses, every other one counted as `other`
/// (the last index): bounded whatever a process answers. Counters are indexed by `index`.
pub struct StatusLabel(pub &'static [&'static str]);

impl StatusLabel {
    /// Label values, `other` included: the length of an array of counters by status.
    pub const fn len(&self) -> usize {
        self.0.len() + 1
    }

    /// Never empty: `other` is always a value.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The index of `status`'s counter.
    pub fn index(&self, status: hyper::StatusCode) -> usize {
        let code = status.as_str();
        self.0
            .iter()
            .position(|&s| s == code)
            .unwrap_or(self.0.len())
    }

    /// The label values in index order, `other` last.
    pub fn values(&self) -> impl Iterator<Item = &'static str> + Clone {
        self.0.iter().copied().chain(["other"])
    }
}

/// How a connection reached the process.
#[derive(Clone, Copy)]
pub enum Received {
    /// Accepted on a TCP listener.
    Tcp = 0,
    /// Accepted on a Unix socket.
    Unix,
    /// Handed over by a balancer.
    Handoff,
}

const RECEIVED: [&str; 3] = ["tcp", "unix", "handoff"];

/// What serverkit counts in every process, admin listener excluded.
pub struct ServerCounters {
    /// Connections received, by `Received`.
    pub connections: [Counter; 3],
    /// Connections closed by a deadline or to make room, by the phase they were in
    /// (`crate::deadline::Phase`: fresh, idle, head, body, busy).
    pub cut: [Counter; 5],
    /// Requests hyper refused before our handlers saw them (malformed or oversized head):
    /// answered 400 or 431 by hyper itself.
    pub malformed: Counter,
}

/// serverkit's counters.
pub static SERVER: ServerCounters = ServerCounters {
    connections: [const { Counter::new() }; 3],
    cut: [const { Counter::new() }; 5],
    malformed: Counter::new(),
};

const PHASES: [&str; 5] = ["fresh", "idle", "head", "body", "busy"];

fn server_families(out: &mut Families<'_>) -> fmt::Result {
    out.counter(
        "connections_received",
        "Client connections accepted, or handed over by the balancer.",
        RECEIVED
            .iter()
            .zip(&SERVER.connections)
            .map(|(how, n)| ([("how", *how)], n.get())),
    )?;
    out.counter(
        "connections_cut",
        "Connections closed by a deadline or to make room at the connection limit, by phase (head and body were answered 408).",
        PHASES
            .iter()
            .zip(&SERVER.cut)
            .map(|(phase, n)| ([("phase", *phase)], n.get())),
    )?;
    out.one_counter(
        "http_malformed_requests",
        "Requests refused by the HTTP parser before any handler (answered 400 or 431).",
        SERVER.malformed.get(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;
    use std::time::Duration;

    #[test]
    fn families_are_written_in_the_openmetrics_format() {
        static LATENCY: Histogram = Histogram::new("t");
        static HITS: Counter = Counter::new();
        LATENCY.observe(Duration::from_micros(30));
        LATENCY.observe(Duration::from_millis(3));
        HITS.add(3);
        let registry = registry(|out| {
            out.counter("hits", "Hits.", [([("route", "a\"b")], HITS.get())])?;
            out.seconds(
                "latency",
                "Latency.",
                [([("route", "x")], LATENCY.snapshot())],
            )?;
            out.sizes("batch_size", "Sizes.", &[1, 2], &[4, 0, 1], 7)
        });
        let text = encode(&registry);
        assert!(
            text.contains("rinha_hits_total{route=\"a\\\"b\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT rinha_latency_seconds seconds\n"),
            "{text}"
        );
        assert!(
            text.contains("rinha_latency_seconds_bucket{le=\"0.00005\",route=\"x\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("rinha_latency_seconds_count{route=\"x\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("rinha_batch_size_bucket{le=\"+Inf\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("rinha_batch_size_sum 7.0\n"), "{text}");
        assert!(
            text.contains("rinha_connections_received_total{how=\"handoff\"}"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
