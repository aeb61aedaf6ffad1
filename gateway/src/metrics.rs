//! Prometheus metrics of the gateway, via `prometheus-client`.
//!
//! Per-route series are looked up once, when a table is compiled, and handed to the rule as a
//! [`RouteMetrics`] (held in the route's long-lived state, see [`crate::state`]); a request then
//! only increments atomics, never hashes a label set and never takes a lock (prometheus-client's
//! own histogram locks a mutex per observation, so the request latency histogram is a
//! [`DurationHistogram`] of atomic buckets instead). When a route is gone from every table, its
//! series are dropped ([`Metrics::forget_route`]).
//!
//! The binary owns the [`Registry`]; each component registers its own metrics in it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::StatusCode;
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, text::encode},
    metrics::{
        MetricType, TypedMetric,
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `namespace/name` of the Route, empty for requests that matched none.
    route: String,
    /// `2xx`, `4xx`, …
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upper bounds of the request latency buckets: 100 µs doubling to ~3.3 s (then +Inf).
const DURATION_BOUNDS_NANOS: [u64; 16] = {
    let mut bounds = [0; 16];
    let mut i = 0;
    while i < 16 {
        bounds[i] = 100_000 << i;
        i += 1;
    }
    bounds
};

/// A request latency histogram: one relaxed atomic add per bucket, count and sum, no lock.
///
/// Buckets are cumulative only when encoded, like prometheus-client's own; durations are kept
/// in nanoseconds so that no float is touched on the hot path.
///
/// ```
/// # use weir_gateway::metrics::DurationHistogram;
/// # use std::time::Duration;
/// let histogram = DurationHistogram::default();
/// histogram.observe(Duration::from_micros(150));
/// assert_eq!(histogram.count(), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct DurationHistogram {
    cells: Arc<HistogramCells>,
}

#[derive(Debug, Default)]
struct HistogramCells {
    /// One per bound, then +Inf.
    buckets: [AtomicU64; DURATION_BOUNDS_NANOS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = DURATION_BOUNDS_NANOS
            .iter()
            .position(|bound| nanos <= *bound)
            .unwrap_or(DURATION_BOUNDS_NANOS.len());
        let cells = &*self.cells;
        cells.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        cells.count.fetch_add(1, Ordering::Relaxed);
        cells.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.cells.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let cells = &*self.cells;
        let buckets: Vec<(f64, u64)> = DURATION_BOUNDS_NANOS
            .iter()
            .map(|bound| *bound as f64 / 1e9)
            .chain([f64::INFINITY])
            .zip(&cells.buckets)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        let sum = cells.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        // The count is the buckets' total, so a scrape racing a request stays consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabels {
    /// A snapshot listener's `address:port`.
    address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    route: String,
    outcome: &'static str,
}

/// Every metric the data plane exports. The binary owns the registry they are registered in.
#[derive(Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabels, DurationHistogram>,
    connect_failovers: Family<RouteLabels, Counter>,
    upstream_attempts: Family<RouteLabels, Counter>,
    retries: Family<RouteLabels, Counter>,
    retry_budget_exhausted: Family<RouteLabels, Counter>,
    rate_limited: Family<RouteLabels, Counter>,
    mirrors: Family<OutcomeLabels, Counter>,
    ejections: Family<RouteLabels, Counter>,
    table_generation: Gauge,
    table_routes: Gauge,
    table_compile_duration: Histogram,
    listener_sockets: Gauge,
    listener_bind_failures: Family<AddressLabels, Counter>,
    ai: crate::ai::AiMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_duration: Family::default(),
            connect_failovers: Family::default(),
            upstream_attempts: Family::default(),
            retries: Family::default(),
            retry_budget_exhausted: Family::default(),
            rate_limited: Family::default(),
            mirrors: Family::default(),
            ejections: Family::default(),
            table_generation: Gauge::default(),
            table_routes: Gauge::default(),
            table_compile_duration: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            listener_sockets: Gauge::default(),
            listener_bind_failures: Family::default(),
            ai: crate::ai::AiMetrics::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric in `registry` (which prefixes them `weir_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "Requests proxied, by route and status class",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers, by route",
            self.request_duration.clone(),
        );
        registry.register(
            "upstream_connect_failovers",
            "Requests sent to another endpoint of their backend because a connection to the \
             one picked could not be opened (nothing of the request was sent), by route",
            self.connect_failovers.clone(),
        );
        registry.register(
            "upstream_attempts",
            "Tries sent upstream by rules with a retry policy, first tries included",
            self.upstream_attempts.clone(),
        );
        registry.register("retries", "Retries made, by route", self.retries.clone());
        registry.register(
            "retry_budget_exhausted",
            "Retries not made because the route's retry budget was spent",
            self.retry_budget_exhausted.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests answered 429 by a route's rate limit",
            self.rate_limited.clone(),
        );
        registry.register(
            "mirrored_requests",
            "Copies of requests sent to mirrors, by outcome (sent, failed, skipped)",
            self.mirrors.clone(),
        );
        registry.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection, by route",
            self.ejections.clone(),
        );
        registry.register(
            "table_generation",
            "Generation of the routing table being served",
            self.table_generation.clone(),
        );
        registry.register(
            "table_routes",
            "Routes in the routing table being served",
            self.table_routes.clone(),
        );
        registry.register(
            "table_compile_duration_seconds",
            "Time to compile a snapshot into a routing table",
            self.table_compile_duration.clone(),
        );
        registry.register(
            "listener_sockets",
            "Sockets open for the snapshot's listeners (one per address)",
            self.listener_sockets.clone(),
        );
        registry.register(
            "listener_bind_failures",
            "Failed attempts to open the socket of a snapshot's listeners, by address",
            self.listener_bind_failures.clone(),
        );
        self.ai.register(registry);
    }

    /// The AI gateway's metrics.
    pub fn ai(&self) -> &crate::ai::AiMetrics {
        &self.ai
    }

    /// The series of one route, resolved once for the hot path.
    pub fn route_metrics(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            by_status_class: STATUS_CLASSES.map(|status_class| {
                self.requests
                    .get_or_create(&RequestLabels {
                        route: route.to_owned(),
                        status_class,
                    })
                    .clone()
            }),
            duration: self
                .request_duration
                .get_or_create(&RouteLabels {
                    route: route.to_owned(),
                })
                .clone(),
            connect_failovers: self
                .connect_failovers
                .get_or_create(&RouteLabels {
                    route: route.to_owned(),
                })
                .clone(),
        }
    }

    /// The policy series of one route (retries, rate limits, mirrors, ejections), made only
    /// for routes whose rules have such policies.
    pub fn policy_metrics(&self, route: &str) -> PolicyMetrics {
        let labels = RouteLabels {
            route: route.to_owned(),
        };
        let outcome = |outcome| {
            self.mirrors
                .get_or_create(&OutcomeLabels {
                    route: route.to_owned(),
                    outcome,
                })
                .clone()
        };
        PolicyMetrics {
            upstream_attempts: self.upstream_attempts.get_or_create(&labels).clone(),
            retries: self.retries.get_or_create(&labels).clone(),
            retry_budget_exhausted: self.retry_budget_exhausted.get_or_create(&labels).clone(),
            rate_limited: self.rate_limited.get_or_create(&labels).clone(),
            mirror_sent: outcome("sent"),
            mirror_failed: outcome("failed"),
            mirror_skipped: outcome("skipped"),
            ejections: self.ejections.get_or_create(&labels).clone(),
        }
    }

    /// Drops the series of a route that is gone, so they stop being exported.
    pub fn forget_route(&self, route: &str) {
        let labels = RouteLabels {
            route: route.to_owned(),
        };
        for family in [
            &self.upstream_attempts,
            &self.retries,
            &self.retry_budget_exhausted,
            &self.rate_limited,
            &self.ejections,
        ] {
            family.remove(&labels);
        }
        for outcome in ["sent", "failed", "skipped"] {
            self.mirrors.remove(&OutcomeLabels {
                route: route.to_owned(),
                outcome,
            });
        }
        for status_class in STATUS_CLASSES {
            self.requests.remove(&RequestLabels {
                route: route.to_owned(),
                status_class,
            });
        }
        self.request_duration.remove(&RouteLabels {
            route: route.to_owned(),
        });
        self.connect_failovers.remove(&RouteLabels {
            route: route.to_owned(),
        });
    }

    /// Records that a new table went live.
    pub fn table_swapped(&self, generation: u64, routes: usize, compile: Duration) {
        self.table_generation.set(generation as i64);
        self.table_routes.set(routes as i64);
        self.table_compile_duration.observe(compile.as_secs_f64());
    }

    /// Records how many sockets the snapshot's listeners have open.
    pub fn listener_sockets_open(&self, sockets: usize) {
        self.listener_sockets.set(sockets as i64);
    }

    /// Counts a failed attempt to open the socket at `address`.
    pub fn listener_bind_failed(&self, address: std::net::SocketAddr) {
        self.listener_bind_failures
            .get_or_create(&AddressLabels {
                address: address.to_string(),
            })
            .inc();
    }
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn encode_registry(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("writing to a String cannot fail");
    text
}

/// One route's policy counters.
#[derive(Debug, Clone)]
pub struct PolicyMetrics {
    pub upstream_attempts: Counter,
    pub retries: Counter,
    pub retry_budget_exhausted: Counter,
    pub rate_limited: Counter,
    pub mirror_sent: Counter,
    pub mirror_failed: Counter,
    pub mirror_skipped: Counter,
    pub ejections: Counter,
}

/// One route's request counters and latency histogram, and its connect failovers (which any
/// rule may make, policy or not).
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    by_status_class: [Counter; 5],
    duration: DurationHistogram,
    connect_failovers: Counter,
}

impl RouteMetrics {
    /// Counts a request sent to another endpoint because its connection could not be opened.
    pub fn connect_failover(&self) {
        self.connect_failovers.inc();
    }

    pub fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_status_class[class].inc();
        self.duration.observe(elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text a scrape of these metrics gives.
    fn scrape(metrics: &Metrics) -> String {
        let mut registry = Registry::with_prefix("weir");
        metrics.register(&mut registry);
        encode_registry(&registry)
    }

    #[test]
    fn counts_requests_by_route_and_status_class() {
        let metrics = Metrics::default();
        let route = metrics.route_metrics("default/echo");
        route.record(StatusCode::OK, Duration::from_millis(1));
        route.record(StatusCode::BAD_GATEWAY, Duration::from_millis(1));
        // A second lookup of the same route shares the series.
        metrics
            .route_metrics("default/echo")
            .record(StatusCode::OK, Duration::from_millis(1));
        let text = scrape(&metrics);
        assert!(
            text.contains(r#"weir_requests_total{route="default/echo",status_class="2xx"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_requests_total{route="default/echo",status_class="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("weir_request_duration_seconds_count{route=\"default/echo\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn latency_buckets_include_their_upper_bound_and_encode_cumulatively() {
        let metrics = Metrics::default();
        let route = metrics.route_metrics("r");
        for micros in [100, 101, 200, 10_000_000] {
            route.record(StatusCode::OK, Duration::from_micros(micros));
        }
        let text = scrape(&metrics);
        for expected in [
            r#"weir_request_duration_seconds_bucket{le="0.0001",route="r"} 1"#,
            r#"weir_request_duration_seconds_bucket{le="0.0002",route="r"} 3"#,
            r#"weir_request_duration_seconds_bucket{le="+Inf",route="r"} 4"#,
            r#"weir_request_duration_seconds_count{route="r"} 4"#,
            r#"weir_request_duration_seconds_sum{route="r"} 10.000401"#,
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
    }
}

#[cfg(test)]
mod forgetting {
    use super::*;

    #[test]
    fn a_forgotten_route_is_no_longer_exported() {
        let metrics = Metrics::default();
        let mut registry = Registry::with_prefix("weir");
        metrics.register(&mut registry);
        metrics
            .route_metrics("default/gone")
            .record(StatusCode::OK, Duration::from_millis(1));
        metrics
            .route_metrics("default/kept")
            .record(StatusCode::OK, Duration::from_millis(1));
        metrics.forget_route("default/gone");
        let text = encode_registry(&registry);
        assert!(!text.contains("default/gone"), "{text}");
        assert!(text.contains("default/kept"), "{text}");
    }
}
