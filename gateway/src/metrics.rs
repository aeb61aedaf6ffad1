//! Prometheus metrics of the gateway, via `prometheus-client`.
//!
//! Per-route series are looked up once, when a table is compiled, and handed to the rule as a
//! [`RouteMetrics`]; a request then only increments an atomic, never hashes a label set.

use std::time::Duration;

use http::StatusCode;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
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

fn duration_histogram() -> Histogram {
    // 100 µs to ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric the gateway exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    table_generation: Gauge,
    table_routes: Gauge,
    reconcile_duration: Histogram,
    table_compile_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("weir");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        let table_generation = Gauge::default();
        let table_routes = Gauge::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        let table_compile_duration = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        registry.register(
            "requests",
            "Requests proxied, by route and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers, by route",
            request_duration.clone(),
        );
        registry.register(
            "table_generation",
            "Generation of the routing table being served",
            table_generation.clone(),
        );
        registry.register(
            "table_routes",
            "Routes in the routing table being served",
            table_routes.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to build a snapshot from the store",
            reconcile_duration.clone(),
        );
        registry.register(
            "table_compile_duration_seconds",
            "Time to compile a snapshot into a routing table",
            table_compile_duration.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            table_generation,
            table_routes,
            reconcile_duration,
            table_compile_duration,
        }
    }
}

impl Metrics {
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
        }
    }

    /// The registry, for components that bring metrics of their own (the control plane's
    /// work queues) to register before the gateway starts serving.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Records that a new table went live.
    pub fn table_swapped(
        &self,
        generation: u64,
        routes: usize,
        reconcile: Duration,
        compile: Duration,
    ) {
        self.table_generation.set(generation as i64);
        self.table_routes.set(routes as i64);
        self.reconcile_duration.observe(reconcile.as_secs_f64());
        self.table_compile_duration.observe(compile.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// One route's request counters and latency histogram.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    by_status_class: [Counter; 5],
    duration: Histogram,
}

impl RouteMetrics {
    pub fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_status_class[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = metrics.encode();
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
}
