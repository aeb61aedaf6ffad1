//! A work queue's metrics, the ones client-go's workqueue exports, registered by whoever owns
//! the registry.

use prometheus_client::{
    metrics::{
        counter::Counter,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// A work queue's metrics, the ones client-go's workqueue exports.
pub struct QueueMetrics {
    /// The queue's name made safe for a metric name.
    pub(super) metric_prefix: String,
    pub(super) depth: Gauge,
    pub(super) adds: Counter,
    pub(super) retries: Counter,
    pub(super) wait_duration: Histogram,
    pub(super) work_duration: Histogram,
}

fn seconds_histogram() -> Histogram {
    // 1 µs to ~1000 s, as client-go's.
    Histogram::new(exponential_buckets(0.000_001, 10.0, 10))
}

impl QueueMetrics {
    pub(super) fn new(queue_name: &str) -> Self {
        let safe_name: String = queue_name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Self {
            metric_prefix: format!("workqueue_{safe_name}"),
            depth: Gauge::default(),
            adds: Counter::default(),
            retries: Counter::default(),
            wait_duration: seconds_histogram(),
            work_duration: seconds_histogram(),
        }
    }

    /// Registers the metrics under `workqueue_<queue name>_`: `depth`, `adds_total`,
    /// `retries_total`, `queue_duration_seconds` and `work_duration_seconds`.
    ///
    /// ```
    /// use prometheus_client::{encoding::text::encode, registry::Registry};
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::new("routes", QueueConfig::default());
    /// queue.add("default/web");
    /// let mut registry = Registry::default();
    /// queue.metrics().register(&mut registry);
    /// let mut text = String::new();
    /// encode(&mut text, &registry).unwrap();
    /// assert!(text.contains("workqueue_routes_depth 1"));
    /// ```
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix(&self.metric_prefix);
        registry.register("depth", "Keys waiting for a worker", self.depth.clone());
        registry.register(
            "adds",
            "Keys added (not counting adds of a key already waiting)",
            self.adds.clone(),
        );
        registry.register(
            "retries",
            "Keys queued again after a failure",
            self.retries.clone(),
        );
        registry.register(
            "queue_duration_seconds",
            "How long a key waited before a worker took it",
            self.wait_duration.clone(),
        );
        registry.register(
            "work_duration_seconds",
            "How long a worker took over a key",
            self.work_duration.clone(),
        );
    }

    /// Keys waiting for a worker.
    pub fn depth(&self) -> &Gauge {
        &self.depth
    }

    /// Keys added, counting a key once per time it started waiting or was marked dirty.
    pub fn adds(&self) -> &Counter {
        &self.adds
    }

    /// Calls of [`WorkQueue::add_rate_limited`], the worker's failures included.
    pub fn retries(&self) -> &Counter {
        &self.retries
    }

    /// Seconds each key waited between starting to wait and a worker taking it.
    pub fn wait_duration(&self) -> &Histogram {
        &self.wait_duration
    }

    /// Seconds a worker spent on each key.
    pub fn work_duration(&self) -> &Histogram {
        &self.work_duration
    }

    pub(super) fn set_depth(&self, waiting: usize) {
        self.depth.set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }
}
