//! Quota counters in this process's memory: the default store, right for one replica.
//!
//! One mutex over every bucket: a check-and-reserve is a few map lookups and additions, far
//! shorter than anything else a request does, and holding one lock over all of a request's
//! buckets is what makes admission atomic (two requests can't both take the last tokens).

use std::{collections::HashMap, sync::Mutex};

use super::{Check, Verdict, window::Counts};

/// A bucket's counts and the window its `current` belongs to.
#[derive(Debug, Clone, Copy)]
struct Entry {
    index: u64,
    per_ms: u64,
    counts: Counts,
}

impl Entry {
    /// The counts as of window `index`: windows that ended move `current` to `previous`.
    fn roll(&mut self, index: u64) {
        if index == self.index + 1 {
            self.counts = Counts {
                current: 0,
                previous: self.counts.current,
            };
        } else if index > self.index + 1 {
            self.counts = Counts::default();
        }
        self.index = self.index.max(index);
    }
}

/// Buckets by name.
#[derive(Debug, Default)]
pub struct MemoryStore {
    buckets: Mutex<HashMap<String, Entry>>,
}

/// Buckets kept before stale ones are swept.
const SWEEP_ABOVE: usize = 4096;

impl MemoryStore {
    pub fn reserve(&self, checks: &[Check], now_ms: u64) -> Verdict {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > SWEEP_ABOVE {
            // A bucket two windows old counts nothing any more.
            buckets.retain(|_, entry| entry.index + 1 >= now_ms / entry.per_ms);
        }
        let mut counts = Vec::with_capacity(checks.len());
        let mut admitted = true;
        for check in checks {
            let window = check.window(now_ms);
            let entry = buckets.entry(check.bucket.clone()).or_insert(Entry {
                index: window.index,
                per_ms: window.per_ms,
                counts: Counts::default(),
            });
            entry.roll(window.index);
            admitted &= entry
                .counts
                .fits(&window, check.kind, check.limit, check.cost);
            counts.push(entry.counts);
        }
        if admitted {
            for check in checks {
                if let Some(entry) = buckets.get_mut(&check.bucket) {
                    entry.counts.current = entry.counts.current.saturating_add(check.cost);
                }
            }
        }
        Verdict { admitted, counts }
    }

    /// Corrects a reservation made in window `index` by `delta`.
    pub fn settle(&self, bucket: &str, index: u64, delta: i64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = buckets.get_mut(bucket) else {
            return;
        };
        let count = if entry.index == index {
            &mut entry.counts.current
        } else if entry.index == index + 1 {
            &mut entry.counts.previous
        } else {
            // The window has slid past the reservation: nothing left to correct.
            return;
        };
        *count = count.saturating_add_signed(delta);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ai::quota::window::Kind;

    fn check(bucket: &str, kind: Kind, limit: u64, cost: u64) -> Check {
        Check {
            bucket: bucket.to_owned(),
            kind,
            limit,
            per: Duration::from_secs(60),
            cost,
        }
    }

    #[test]
    fn a_request_is_reserved_in_every_bucket_or_in_none() {
        let store = MemoryStore::default();
        let tokens = check("t", Kind::Tokens, 100, 60);
        let requests = check("r", Kind::Requests, 1, 1);
        assert!(
            store
                .reserve(&[tokens.clone(), requests.clone()], 0)
                .admitted
        );
        // The request bucket is full: the tokens bucket must not take a second reservation.
        let verdict = store.reserve(&[tokens.clone(), requests], 0);
        assert!(!verdict.admitted);
        assert_eq!(verdict.counts[0].current, 60);
        assert!(store.reserve(std::slice::from_ref(&tokens), 0).admitted);
        assert!(!store.reserve(&[tokens], 0).admitted);
    }

    #[test]
    fn settling_corrects_the_window_the_reservation_was_made_in() {
        let store = MemoryStore::default();
        let tokens = check("t", Kind::Tokens, 100, 80);
        assert!(store.reserve(std::slice::from_ref(&tokens), 1_000).admitted);
        store.settle(&tokens.bucket, 0, -70);
        let verdict = store.reserve(std::slice::from_ref(&tokens), 2_000);
        assert!(verdict.admitted);
        assert_eq!(verdict.counts[0].current, 10);
        // Next window: the correction lands in `previous`.
        let verdict = store.reserve(std::slice::from_ref(&tokens), 61_000);
        assert_eq!(verdict.counts[0].previous, 90);
        store.settle(&tokens.bucket, 0, -90);
        let verdict = store.reserve(std::slice::from_ref(&tokens), 61_000);
        assert_eq!(verdict.counts[0].previous, 0);
        // Two windows on, a late correction is dropped.
        store.settle(&tokens.bucket, 0, 500);
        let verdict = store.reserve(&[tokens], 125_000);
        assert_eq!(verdict.counts[0].current, 0);
    }
}
