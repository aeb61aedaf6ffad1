//! When a retried key may run again: its own exponential backoff, and a token from the bucket
//! every retry of one queue shares (client-go's default controller rate limiter, both halves).

use std::time::Duration;

use governor::{
    Quota, RateLimiter, clock::Clock, middleware::NoOpMiddleware, nanos::Nanos,
    state::InMemoryState, state::NotKeyed,
};
use tokio::time::Instant;

use super::QueueConfig;

/// `base_delay * 2^failures`, capped at `max_delay`.
pub(super) fn backoff_after(failures: u32, config: &QueueConfig) -> Duration {
    1u32.checked_shl(failures)
        .and_then(|factor| config.base_delay.checked_mul(factor))
        .map_or(config.max_delay, |backoff| backoff.min(config.max_delay))
}

/// The token bucket shared by every retry of one queue, on tokio's clock.
pub(super) struct RetryBucket {
    clock: TokioClock,
    limiter: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>,
}

impl RetryBucket {
    pub(super) fn new(quota: Quota) -> Self {
        let clock = TokioClock {
            origin: Instant::now(),
        };
        Self {
            clock,
            limiter: RateLimiter::direct_with_clock(quota, clock),
        }
    }

    /// Takes a token, or says when the next one could be had.
    pub(super) fn take_token(&self) -> Result<(), Instant> {
        self.limiter
            .check()
            .map_err(|not_until| self.clock.origin + Duration::from(not_until.earliest_possible()))
    }
}

/// governor's view of `tokio::time`: nanoseconds since the bucket was made. Following tokio's
/// clock (rather than governor's own) keeps the bucket in step with paused-clock tests.
#[derive(Clone, Copy, Debug)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(Instant::now().saturating_duration_since(self.origin))
    }
}
