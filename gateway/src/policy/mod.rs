//! Policies applied around forwarding, each with the state it keeps: outlier detection
//! ([`outlier`]), retries with their budget and backoff ([`retry`]), rate limits
//! ([`ratelimit`]).
//!
//! Each is configured per rule ([`weir_contract::RulePolicy`]) and keeps its state in the
//! table's long-lived state, so a table swap that leaves a rule's policy as it was leaves its
//! limiter, budget and ejections as they were too.

pub mod outlier;
pub mod ratelimit;
pub mod retry;

use std::{sync::OnceLock, time::Instant};

/// Nanoseconds since the first call in this process: a clock atomics can hold.
pub fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
