//! Passive outlier detection: endpoints that keep failing are taken out of rotation.
//!
//! Each endpoint of a rule with outlier detection has an [`EndpointHealth`]. A try that fails
//! (a 5xx, or no connection) adds to its run of failures, a success ends the run. When the run
//! reaches `consecutive_errors`, the endpoint is ejected for `base_ejection_time` × the number
//! of times it has been ejected (so an endpoint that keeps failing stays out longer), unless
//! that would put more than `max_ejection_percent` of its backend's endpoints out at once (at
//! least one may always be ejected, if the percent is not 0). Every `interval` without an
//! ejection lowers the count again. An ejection ends on its own when its time is up: the next
//! pick that looks at the endpoint sees it back.

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use weir_contract::OutlierDetection;

use super::now_nanos;

/// One endpoint's health under one rule's outlier detection.
#[derive(Debug)]
pub struct EndpointHealth {
    pub config: OutlierDetection,
    /// Failures in a row.
    failures: AtomicU32,
    /// When the current ejection ends (`now_nanos`), 0 when not ejected.
    ejected_until: AtomicU64,
    /// How many times it has been ejected, decayed by one each `interval`.
    ejections: AtomicU32,
    /// When `ejections` last changed.
    ejections_changed: AtomicU64,
}

impl EndpointHealth {
    pub fn new(config: OutlierDetection) -> Self {
        Self {
            config,
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            ejections_changed: AtomicU64::new(0),
        }
    }

    /// Whether it is out of rotation now.
    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_nanos()
    }

    /// When its ejection ends, if it is ejected: the time left.
    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until
            .checked_sub(now_nanos())
            .filter(|left| *left > 0)
            .map(Duration::from_nanos)
    }

    /// How many times it has been ejected (decayed).
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// A try that succeeded.
    pub fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        self.decay(now_nanos());
    }

    /// A try that failed. `siblings` is every endpoint of its backend (itself included), to
    /// keep ejections within `max_ejection_percent`. Returns the ejection's length if this
    /// failure ejected it.
    pub fn failed<'a>(
        &self,
        siblings: impl Iterator<Item = &'a EndpointHealth> + Clone,
    ) -> Option<Duration> {
        let now = now_nanos();
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < self.config.consecutive_errors
            || self.ejected_until.load(Ordering::Relaxed) > now
        {
            return None;
        }
        let total = siblings.clone().count();
        let ejected = siblings
            .filter(|s| s.ejected_until.load(Ordering::Relaxed) > now)
            .count();
        let percent = self.config.max_ejection_percent as usize;
        let allowed = if percent == 0 {
            0
        } else {
            (total * percent / 100).max(1)
        };
        if ejected >= allowed {
            return None;
        }
        self.decay(now);
        let count = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        self.ejections_changed.store(now, Ordering::Relaxed);
        let length = self.config.base_ejection_time * count;
        let until = now.saturating_add(u64::try_from(length.as_nanos()).unwrap_or(u64::MAX));
        self.ejected_until.store(until, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        Some(length)
    }

    /// Lowers the ejection count by one per `interval` since it last changed, while ejected no more.
    fn decay(&self, now: u64) {
        let interval = u64::try_from(self.config.interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let changed = self.ejections_changed.load(Ordering::Relaxed);
        let until = self.ejected_until.load(Ordering::Relaxed);
        if now <= until || now.saturating_sub(changed) < interval {
            return;
        }
        let steps = (now - changed.max(until)) / interval;
        if steps == 0 {
            return;
        }
        let _ = self
            .ejections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                Some(count.saturating_sub(steps.min(u64::from(u32::MAX)) as u32))
            });
        self.ejections_changed.store(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_ejection_percent: u32) -> OutlierDetection {
        OutlierDetection {
            consecutive_errors: 3,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_millis(200),
            max_ejection_percent,
        }
    }

    #[test]
    fn an_endpoint_is_ejected_after_its_run_of_failures_and_comes_back() {
        let endpoints: Vec<EndpointHealth> =
            (0..3).map(|_| EndpointHealth::new(config(50))).collect();
        let first = &endpoints[0];
        assert_eq!(first.failed(endpoints.iter()), None);
        first.succeeded();
        assert_eq!(first.failed(endpoints.iter()), None);
        assert_eq!(first.failed(endpoints.iter()), None);
        assert_eq!(
            first.failed(endpoints.iter()),
            Some(Duration::from_millis(200))
        );
        assert!(first.is_ejected());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while first.is_ejected() {
            assert!(std::time::Instant::now() < deadline, "the ejection ends");
            std::thread::yield_now();
        }
        // A second ejection lasts twice as long.
        for _ in 0..2 {
            assert_eq!(first.failed(endpoints.iter()), None);
        }
        assert_eq!(
            first.failed(endpoints.iter()),
            Some(Duration::from_millis(400))
        );
    }

    #[test]
    fn never_more_than_the_max_percent_is_ejected() {
        let endpoints: Vec<EndpointHealth> =
            (0..3).map(|_| EndpointHealth::new(config(50))).collect();
        for endpoint in &endpoints {
            for _ in 0..3 {
                endpoint.failed(endpoints.iter());
            }
        }
        let ejected = endpoints.iter().filter(|e| e.is_ejected()).count();
        assert_eq!(ejected, 1, "50% of 3 allows one");
        let none: Vec<EndpointHealth> = (0..3).map(|_| EndpointHealth::new(config(0))).collect();
        for _ in 0..3 {
            none[0].failed(none.iter());
        }
        assert!(!none[0].is_ejected(), "0% ejects nothing");
    }
}
