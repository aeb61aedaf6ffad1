//! The sliding-window counter both quota stores count with.
//!
//! Time is cut into windows of the limit's length, aligned to the Unix epoch so that every
//! replica agrees on them. A bucket keeps two counts, this window's and the last one's, and
//! estimates what was used over the last `per` as the last window's count weighted by how much
//! of it still lies inside the sliding window, plus this window's count. Two integers per bucket
//! and no burst at window boundaries, which a fixed window allows (twice the limit across one).
//!
//! Tokens and requests are admitted differently. A request fits if one more stays within the
//! limit, so requests never overshoot. Tokens are reserved before the answer says how many were
//! used, so a request is admitted while any are left and reserves its estimate: the limit can
//! then be passed by at most the last admitted reservation, and a request asking for more than
//! the whole limit is still served once a window.

use std::time::Duration;

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tokens,
    Requests,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tokens => "tokens",
            Kind::Requests => "requests",
        }
    }
}

/// Where `now` falls among windows of length `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Windows since the epoch.
    pub index: u64,
    /// How far into its window `now` is, in [0, 1).
    pub elapsed: f64,
    pub per_ms: u64,
}

impl Window {
    /// The window `now_ms` (milliseconds since the Unix epoch) is in.
    pub fn at(now_ms: u64, per: Duration) -> Window {
        let per_ms = (per.as_millis() as u64).max(1);
        Window {
            index: now_ms / per_ms,
            elapsed: (now_ms % per_ms) as f64 / per_ms as f64,
            per_ms,
        }
    }

    /// The share of the last window's count still inside the sliding window.
    pub fn previous_weight(&self) -> f64 {
        1.0 - self.elapsed
    }
}

/// A bucket's two counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub current: u64,
    pub previous: u64,
}

impl Counts {
    /// What the sliding window holds now.
    pub fn used(&self, window: &Window) -> f64 {
        self.previous as f64 * window.previous_weight() + self.current as f64
    }

    /// Whether `cost` more fits under `limit`.
    pub fn fits(&self, window: &Window, kind: Kind, limit: u64, cost: u64) -> bool {
        let used = self.used(window);
        match kind {
            Kind::Tokens => used < limit as f64,
            Kind::Requests => used + cost as f64 <= limit as f64,
        }
    }

    /// What is left under `limit`, rounded down.
    pub fn remaining(&self, window: &Window, limit: u64) -> u64 {
        (limit as f64 - self.used(window)).max(0.0) as u64
    }

    /// How long until `cost` more fits (for `Retry-After`), at least a second: the last
    /// window's share shrinks as the sliding window moves on, this window's count only leaves
    /// once the next window is under way.
    pub fn retry_after(&self, window: &Window, kind: Kind, limit: u64, cost: u64) -> Duration {
        // The request fits when what is used is below (tokens) or at most (requests) this.
        let threshold = match kind {
            Kind::Tokens => limit as f64,
            Kind::Requests => limit as f64 - cost as f64,
        };
        let per = window.per_ms as f64;
        let (current, previous) = (self.current as f64, self.previous as f64);
        let wait_ms = if current < threshold {
            // Within this window: previous × (1 − f) + current ≤ threshold.
            let needed = if previous > 0.0 {
                1.0 - (threshold - current) / previous
            } else {
                0.0
            };
            (needed - window.elapsed).max(0.0) * per
        } else {
            // This window's count must start leaving: current × (1 − f′) ≤ threshold in the next.
            let rest_of_window = (1.0 - window.elapsed) * per;
            let needed = (1.0 - threshold.max(0.0) / current.max(1.0)).max(0.0);
            rest_of_window + needed * per
        };
        // A millisecond past the boundary, where "below" holds too.
        Duration::from_millis(wait_ms.ceil() as u64 + 1).max(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let window = Window::at(61_000, MINUTE);
        assert_eq!(window.index, 1);
        assert!((window.elapsed - 1.0 / 60.0).abs() < 1e-9);
        assert_eq!(Window::at(0, MINUTE).index, 0);
    }

    #[test]
    fn the_last_window_counts_for_the_part_still_inside() {
        let counts = Counts {
            current: 10,
            previous: 100,
        };
        let quarter = Window::at(15_000, MINUTE);
        assert!((counts.used(&quarter) - 85.0).abs() < 1e-9);
        assert_eq!(counts.remaining(&quarter, 100), 15);
    }

    #[test]
    fn requests_fit_exactly_up_to_the_limit() {
        let window = Window::at(0, MINUTE);
        let at = |current| Counts {
            current,
            previous: 0,
        };
        assert!(at(9).fits(&window, Kind::Requests, 10, 1));
        assert!(!at(10).fits(&window, Kind::Requests, 10, 1));
    }

    #[test]
    fn tokens_are_admitted_while_any_are_left_whatever_the_reservation() {
        let window = Window::at(0, MINUTE);
        let at = |current| Counts {
            current,
            previous: 0,
        };
        assert!(at(999).fits(&window, Kind::Tokens, 1000, 5000));
        assert!(!at(1000).fits(&window, Kind::Tokens, 1000, 1));
    }

    #[test]
    fn retry_after_waits_for_the_last_window_to_slide_out() {
        // 50 this window, 100 last window, 30 s into this one: used 100, limit 100.
        let counts = Counts {
            current: 50,
            previous: 100,
        };
        let window = Window::at(30_000, MINUTE);
        let wait = counts.retry_after(&window, Kind::Tokens, 100, 1);
        // previous × (1 − f) + 50 < 100 once f > 0.5: just after 30 s.
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        let later = Window::at(30_000 + wait.as_millis() as u64, MINUTE);
        assert!(counts.fits(&later, Kind::Tokens, 100, 1));

        let full = Counts {
            current: 60,
            previous: 100,
        };
        let wait = full.retry_after(&window, Kind::Requests, 60, 1);
        let later = Window::at(30_000 + wait.as_millis() as u64, MINUTE);
        // After the wait the sliding window has room, and not much before it.
        let next = Counts {
            current: 0,
            previous: 60,
        };
        let (counts_then, window_then) = if later.index == window.index {
            (full, later)
        } else {
            (next, later)
        };
        assert!(counts_then.fits(&window_then, Kind::Requests, 60, 1));
        let earlier = Window::at(30_000 + wait.as_millis() as u64 - 2_000, MINUTE);
        let counts_earlier = if earlier.index == window.index {
            full
        } else {
            next
        };
        assert!(!counts_earlier.fits(&earlier, Kind::Requests, 60, 1));
    }

    #[test]
    fn retry_after_is_at_least_a_second() {
        let counts = Counts {
            current: 0,
            previous: 1,
        };
        let window = Window::at(59_999, MINUTE);
        assert_eq!(
            counts.retry_after(&window, Kind::Tokens, 1, 1),
            Duration::from_secs(1)
        );
    }
}
