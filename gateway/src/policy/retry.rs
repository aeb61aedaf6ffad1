//! Retries: when a failed try may be tried again, how long to wait first, and the budget that
//! keeps retries from multiplying a failing backend's load.
//!
//! The budget is Finagle's and Linkerd's: over a sliding window of ten seconds, retries may
//! number at most `percent`% of the rule's requests, plus `min_per_second` a second (so a
//! rule with little traffic can still retry). Each request deposits, each retry withdraws;
//! a retry the budget refuses is not made, and the failure goes to the client as it is. The
//! per-second floor counts only the seconds the budget has existed, so a new rule cannot
//! spend ten seconds' floor in its first second.

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use http::Method;
use weir_contract::{RetryBudget, RetryPolicy};

use super::now_nanos;
use crate::balance::random;

/// Seconds the budget's window covers.
const WINDOW_SECONDS: u64 = 10;

/// One rule's retry budget: requests and retries per second, for the last ten seconds.
#[derive(Debug)]
pub struct RetryBudgetState {
    pub config: RetryBudget,
    seconds: [Second; WINDOW_SECONDS as usize],
    /// The second (since the process epoch) the budget was made in.
    created: u64,
}

#[derive(Debug, Default)]
struct Second {
    /// Which second (since the process epoch) the counts are of.
    second: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

impl RetryBudgetState {
    pub fn new(config: RetryBudget) -> Self {
        Self {
            config,
            seconds: Default::default(),
            created: now_nanos() / 1_000_000_000,
        }
    }

    /// This second's counters, cleared if they held an older second's.
    fn current(&self) -> &Second {
        let now = now_nanos() / 1_000_000_000;
        let slot = &self.seconds[(now % WINDOW_SECONDS) as usize];
        let held = slot.second.load(Ordering::Relaxed);
        if held != now
            && slot
                .second
                .compare_exchange(held, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Counts a request (every first try).
    pub fn deposit(&self) {
        self.current().requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a retry from the budget; `false` when the budget is spent.
    pub fn withdraw(&self) -> bool {
        let now = now_nanos() / 1_000_000_000;
        let (mut requests, mut retries) = (0u64, 0u64);
        for slot in &self.seconds {
            if now.saturating_sub(slot.second.load(Ordering::Relaxed)) < WINDOW_SECONDS {
                requests += u64::from(slot.requests.load(Ordering::Relaxed));
                retries += u64::from(slot.retries.load(Ordering::Relaxed));
            }
        }
        let seconds_covered = (now.saturating_sub(self.created) + 1).min(WINDOW_SECONDS);
        let allowed = requests * u64::from(self.config.percent) / 100
            + u64::from(self.config.min_per_second) * seconds_covered;
        if retries >= allowed {
            return false;
        }
        self.current().retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// How a try ended, as retry conditions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// No connection could be made: nothing reached the upstream.
    ConnectFailure,
    /// The connection failed after the request was sent, or the try timed out.
    Reset,
    Status(http::StatusCode),
}

/// Whether `outcome` of a request with `method` is retried under `policy`. Non-idempotent
/// methods are retried only when nothing reached the upstream, unless the policy says so.
pub fn retryable(policy: &RetryPolicy, method: &Method, outcome: TryOutcome) -> bool {
    let wanted = match outcome {
        TryOutcome::ConnectFailure => policy.on.connect_failure,
        TryOutcome::Reset => policy.on.reset,
        TryOutcome::Status(status) => policy.on.status(status),
    };
    wanted
        && (outcome == TryOutcome::ConnectFailure || policy.non_idempotent || is_idempotent(method))
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The wait before retry number `retry` (1 for the first): a random time up to
/// `base × 2^(retry-1)`, capped at `max` ("full jitter").
pub fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let ceiling = policy
        .backoff_base
        .saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        )
        .min(policy.backoff_max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(random::below(nanos + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use weir_contract::RetryOn;

    fn policy(non_idempotent: bool) -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            on: RetryOn {
                connect_failure: true,
                reset: true,
                statuses: vec![503],
            },
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            budget: RetryBudget::default(),
            non_idempotent,
        }
    }

    #[test]
    fn only_the_named_failures_are_retried_and_posts_only_when_nothing_was_sent() {
        let policy = policy(false);
        let unavailable = TryOutcome::Status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(retryable(&policy, &Method::GET, unavailable));
        assert!(!retryable(
            &policy,
            &Method::GET,
            TryOutcome::Status(StatusCode::INTERNAL_SERVER_ERROR)
        ));
        assert!(retryable(
            &policy,
            &Method::POST,
            TryOutcome::ConnectFailure
        ));
        assert!(!retryable(&policy, &Method::POST, unavailable));
        assert!(!retryable(&policy, &Method::POST, TryOutcome::Reset));
        assert!(retryable(&self::policy(true), &Method::POST, unavailable));
    }

    #[test]
    fn backoff_grows_and_stays_under_its_cap() {
        let policy = policy(false);
        for retry in 1..10 {
            let ceiling =
                (Duration::from_millis(25) * (1 << (retry - 1))).min(Duration::from_millis(250));
            for _ in 0..100 {
                assert!(backoff(&policy, retry) <= ceiling);
            }
        }
    }

    #[test]
    fn the_budget_allows_a_share_of_requests_plus_a_floor() {
        let budget = RetryBudgetState::new(RetryBudget {
            percent: 20,
            min_per_second: 0,
        });
        for _ in 0..100 {
            budget.deposit();
        }
        let granted = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 20);
        let floor = RetryBudgetState::new(RetryBudget {
            percent: 0,
            min_per_second: 1,
        });
        // A budget made this second has one second's floor (two if the second turned over).
        let granted = (0..100).filter(|_| floor.withdraw()).count();
        assert!((1..=2).contains(&granted), "{granted}");
    }
}
