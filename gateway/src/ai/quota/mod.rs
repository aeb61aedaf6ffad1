//! Per-key quotas on AI models: tokens and requests per window, held under concurrency.
//!
//! A request is admitted against every quota of its model whose selector matches the caller's
//! key, each key counted on its own. Admission reserves an estimate of the request's tokens
//! (its prompt, estimated, plus its `max_tokens` or a default) in one atomic step across all
//! of them; the answer's real usage then settles the reservation (a stream's when it ends, a
//! request that failed everywhere gives it back). Concurrent requests therefore can't all take
//! the last tokens: the limit is passed by at most one reservation
//! ([`window`] says how the counting works).
//!
//! Counters live in a [`Store`]: this process's memory by default (one replica), or Redis
//! (`--quota-store redis://…`) so that replicas enforce one limit between them. When Redis
//! can't be reached the request is admitted or refused as configured ([`WhenStoreDown`]),
//! and the failure is logged and counted either way; it is never silent.

mod memory;
mod redis;
pub mod window;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, HeaderValue};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use weir_contract::{AiModel, ClientKey};

pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use window::Kind;
use window::{Counts, Window};

/// A quota store that can't be set up or reached.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("the quota store URL is not valid: {0}")]
    Url(String),
    #[error("the quota store failed: {0}")]
    Store(String),
}

/// Where quota counters live.
#[derive(Clone)]
pub enum Store {
    Memory(Arc<MemoryStore>),
    Redis(RedisStore),
}

/// What a request gets when the store can't be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenStoreDown {
    /// Serve it unlimited: an outage of Redis doesn't become an outage of the models.
    #[default]
    Admit,
    /// Answer 503: no request goes unaccounted.
    Refuse,
}

/// The quota machinery the AI gateway shares across tables and threads.
#[derive(Clone)]
pub struct Quotas {
    store: Store,
    when_down: WhenStoreDown,
    /// Output tokens reserved for a request that names no `max_tokens`.
    pub default_output_tokens: u64,
    metrics: QuotaMetrics,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas::new(Store::Memory(Arc::default()), WhenStoreDown::Admit, 1024)
    }
}

/// One counter a request is checked against.
#[derive(Debug, Clone)]
pub struct Check {
    /// The counter's name: `{<key namespace>/<key name>}:<model>:<quota>:<kind>:<window ms>`.
    pub bucket: String,
    pub kind: Kind,
    pub limit: u64,
    pub per: Duration,
    /// What this request takes from it: 1 request, or its estimated tokens.
    pub cost: u64,
}

impl Check {
    pub fn window(&self, now_ms: u64) -> Window {
        Window::at(now_ms, self.per)
    }
}

/// A store's answer: whether the request was reserved everywhere, and each bucket's counts
/// before it.
#[derive(Debug)]
pub struct Verdict {
    pub admitted: bool,
    pub counts: Vec<Counts>,
}

/// What admission decided.
pub enum Admission {
    /// No quota applies to this caller.
    Unlimited,
    Admitted(Reservation),
    Refused(Refusal),
    /// The store could not be reached and is configured to refuse.
    StoreDown,
}

/// A refused request: which limit, and when to come back.
#[derive(Debug)]
pub struct Refusal {
    pub kind: Kind,
    pub limit: u64,
    pub per: Duration,
    pub retry_after: Duration,
    /// Rate-limit headers the answer carries.
    pub headers: HeaderMap,
}

/// Tokens reserved for a request in flight; settle it with the real usage.
///
/// Dropped unsettled (every provider failed, the client left before an answer), the
/// reservation is given back.
pub struct Reservation {
    store: Store,
    /// Token buckets the estimate was reserved in, with the window it was reserved in.
    buckets: Vec<(String, u64)>,
    reserved: u64,
    used: Option<u64>,
    /// Rate-limit headers for the answer.
    pub headers: HeaderMap,
}

impl Reservation {
    /// The tokens reserved.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Corrects every bucket from the reservation to `used` tokens.
    pub fn settle(mut self, used: u64) {
        self.used = Some(used);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let used = self.used.unwrap_or(0);
        let delta = i64::try_from(used).unwrap_or(i64::MAX)
            - i64::try_from(self.reserved).unwrap_or(i64::MAX);
        if delta == 0 || self.buckets.is_empty() {
            return;
        }
        let buckets = std::mem::take(&mut self.buckets);
        match &self.store {
            Store::Memory(store) => {
                for (bucket, index) in &buckets {
                    store.settle(bucket, *index, delta);
                }
            }
            Store::Redis(store) => {
                let store = store.clone();
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                runtime.spawn(async move {
                    for (bucket, index) in &buckets {
                        if let Err(error) = store.settle(bucket, *index, delta).await {
                            tracing::warn!(%error, "a quota reservation could not be settled");
                        }
                    }
                });
            }
        }
    }
}

impl Quotas {
    pub fn new(store: Store, when_down: WhenStoreDown, default_output_tokens: u64) -> Quotas {
        Quotas {
            store,
            when_down,
            default_output_tokens,
            metrics: QuotaMetrics::default(),
        }
    }

    /// Quotas counted in Redis at `url`.
    pub fn redis(
        url: &str,
        when_down: WhenStoreDown,
        default_output_tokens: u64,
    ) -> Result<Quotas, QuotaError> {
        let store = RedisStore::new(url, Duration::from_secs(1))?;
        Ok(Quotas::new(
            Store::Redis(store),
            when_down,
            default_output_tokens,
        ))
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ai_quota_refusals",
            "AI requests refused by a quota, by model, client key and what was exhausted",
            self.metrics.refusals.clone(),
        );
        registry.register(
            "ai_quota_store_errors",
            "Quota checks that could not reach the quota store",
            self.metrics.store_errors.clone(),
        );
    }

    /// Admits a request of `estimate` tokens by `key` to `model`.
    pub async fn admit(
        &self,
        model: &AiModel,
        key: Option<&ClientKey>,
        estimate: u64,
    ) -> Admission {
        let Some(key) = key else {
            return Admission::Unlimited;
        };
        let checks = checks(model, key, estimate);
        if checks.is_empty() {
            return Admission::Unlimited;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let verdict = match &self.store {
            Store::Memory(store) => Ok(store.reserve(&checks, now_ms)),
            Store::Redis(store) => store.reserve(&checks, now_ms).await,
        };
        let verdict = match verdict {
            Ok(verdict) => verdict,
            Err(error) => {
                self.metrics.store_errors.inc();
                tracing::warn!(%error, when_down = ?self.when_down, "quota store unreachable");
                return match self.when_down {
                    WhenStoreDown::Admit => Admission::Unlimited,
                    WhenStoreDown::Refuse => Admission::StoreDown,
                };
            }
        };
        let headers = rate_limit_headers(&checks, &verdict, now_ms);
        if verdict.admitted {
            return Admission::Admitted(Reservation {
                store: self.store.clone(),
                buckets: checks
                    .iter()
                    .filter(|check| check.kind == Kind::Tokens)
                    .map(|check| (check.bucket.clone(), check.window(now_ms).index))
                    .collect(),
                reserved: estimate,
                used: None,
                headers,
            });
        }
        // The bucket that keeps the request waiting longest is the one to report.
        let (check, retry_after) = checks
            .iter()
            .zip(&verdict.counts)
            .filter(|(check, counts)| {
                !counts.fits(&check.window(now_ms), check.kind, check.limit, check.cost)
            })
            .map(|(check, counts)| {
                let wait =
                    counts.retry_after(&check.window(now_ms), check.kind, check.limit, check.cost);
                (check, wait)
            })
            .max_by_key(|(_, wait)| *wait)
            .unwrap_or((&checks[0], Duration::from_secs(1)));
        self.metrics
            .refusals
            .get_or_create(&RefusalLabels {
                model: model.id.to_string(),
                key: key.id.name.clone(),
                limit: check.kind.as_str(),
            })
            .inc();
        let mut headers = headers;
        if let Ok(value) = HeaderValue::try_from(retry_after.as_secs().to_string()) {
            headers.insert(http::header::RETRY_AFTER, value);
        }
        Admission::Refused(Refusal {
            kind: check.kind,
            limit: check.limit,
            per: check.per,
            retry_after,
            headers,
        })
    }
}

/// The buckets `key` is checked against on `model`.
fn checks(model: &AiModel, key: &ClientKey, estimate: u64) -> Vec<Check> {
    let mut checks = Vec::new();
    for (i, quota) in model.quotas.iter().enumerate() {
        if !quota.keys.matches(&key.labels) {
            continue;
        }
        for (kind, limit, cost) in [
            (Kind::Tokens, quota.tokens, estimate),
            (Kind::Requests, quota.requests, 1),
        ] {
            let Some(limit) = limit else { continue };
            let per_ms = limit.per.as_millis();
            checks.push(Check {
                // The key's identity is the hash tag: one Redis Cluster slot per request.
                bucket: format!(
                    "{{{}/{}}}:{}:{i}:{}:{per_ms}",
                    key.id.namespace,
                    key.id.name,
                    model.id,
                    kind.as_str()
                ),
                kind,
                limit: limit.limit,
                per: limit.per,
                cost,
            });
        }
    }
    checks
}

/// `x-ratelimit-{limit,remaining}-{tokens,requests}`: the tightest bucket of each kind, after
/// this request's reservation if it was admitted.
fn rate_limit_headers(checks: &[Check], verdict: &Verdict, now_ms: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for kind in [Kind::Tokens, Kind::Requests] {
        let tightest = checks
            .iter()
            .zip(&verdict.counts)
            .filter(|(check, _)| check.kind == kind)
            .map(|(check, counts)| {
                let mut remaining = counts.remaining(&check.window(now_ms), check.limit);
                if verdict.admitted {
                    remaining = remaining.saturating_sub(check.cost);
                }
                (check.limit, remaining)
            })
            .min_by_key(|(_, remaining)| *remaining);
        let Some((limit, remaining)) = tightest else {
            continue;
        };
        let (limit_name, remaining_name) = match kind {
            Kind::Tokens => ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens"),
            Kind::Requests => (
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
            ),
        };
        headers.insert(limit_name, HeaderValue::from(limit));
        headers.insert(remaining_name, HeaderValue::from(remaining));
    }
    headers
}

#[derive(Clone, Default)]
struct QuotaMetrics {
    refusals: Family<RefusalLabels, Counter>,
    store_errors: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    model: String,
    key: String,
    limit: &'static str,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weir_contract::{
        Access, AiQuota, AiTimeouts, Fallback, LabelSelector, NamespacedName, QuotaLimit,
    };

    use super::*;

    fn model(quotas: Vec<AiQuota>) -> AiModel {
        AiModel {
            id: NamespacedName::new("ai", "chat"),
            names: vec!["chat".into()],
            hosts: vec![],
            access: Access::Public,
            providers: vec![],
            timeouts: AiTimeouts::default(),
            fallback: Fallback::default(),
            quotas,
            prompts: vec![],
        }
    }

    fn key(name: &str, tier: &str) -> ClientKey {
        ClientKey {
            id: NamespacedName::new("ai", name),
            sha256: [0; 32],
            labels: BTreeMap::from([("tier".to_owned(), tier.to_owned())]),
        }
    }

    fn free_tier(tokens: u64) -> AiQuota {
        AiQuota {
            keys: LabelSelector {
                match_labels: vec![("tier".into(), "free".into())],
                match_expressions: vec![],
            },
            tokens: Some(QuotaLimit {
                limit: tokens,
                per: Duration::from_secs(3600),
            }),
            requests: None,
        }
    }

    #[tokio::test]
    async fn only_keys_a_quota_selects_are_limited_and_each_key_on_its_own() {
        let quotas = Quotas::default();
        let model = model(vec![free_tier(100)]);
        let (free, other_free, paid) = (key("a", "free"), key("b", "free"), key("c", "paid"));
        let Admission::Admitted(first) = quotas.admit(&model, Some(&free), 150).await else {
            panic!("the first request fits");
        };
        first.settle(150);
        let Admission::Refused(refusal) = quotas.admit(&model, Some(&free), 10).await else {
            panic!("the key is over its limit");
        };
        assert_eq!(refusal.kind, Kind::Tokens);
        assert_eq!(refusal.headers["x-ratelimit-remaining-tokens"], "0");
        assert!(refusal.headers.contains_key(http::header::RETRY_AFTER));
        assert!(matches!(
            quotas.admit(&model, Some(&other_free), 10).await,
            Admission::Admitted(_)
        ));
        assert!(matches!(
            quotas.admit(&model, Some(&paid), 10_000).await,
            Admission::Unlimited
        ));
        assert!(matches!(
            quotas.admit(&model, None, 10).await,
            Admission::Unlimited
        ));
    }

    #[tokio::test]
    async fn an_unsettled_reservation_is_given_back_and_a_settled_one_corrected() {
        let quotas = Quotas::default();
        let model = model(vec![free_tier(100)]);
        let free = key("a", "free");
        let Admission::Admitted(reservation) = quotas.admit(&model, Some(&free), 99).await else {
            panic!("fits");
        };
        assert_eq!(reservation.headers["x-ratelimit-remaining-tokens"], "1");
        drop(reservation);
        let Admission::Admitted(reservation) = quotas.admit(&model, Some(&free), 99).await else {
            panic!("the dropped reservation was given back");
        };
        reservation.settle(20);
        let Admission::Admitted(reservation) = quotas.admit(&model, Some(&free), 10).await else {
            panic!("fits");
        };
        assert_eq!(reservation.headers["x-ratelimit-remaining-tokens"], "70");
    }

    #[tokio::test]
    async fn concurrent_admissions_never_pass_the_limit_by_more_than_one_reservation() {
        let quotas = Quotas::default();
        let model = Arc::new(model(vec![free_tier(1000)]));
        let free = Arc::new(key("a", "free"));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (quotas, model, free) = (quotas.clone(), model.clone(), free.clone());
                tokio::spawn(async move {
                    match quotas.admit(&model, Some(&free), 70).await {
                        Admission::Admitted(reservation) => {
                            reservation.settle(70);
                            70
                        }
                        _ => 0,
                    }
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        assert!((1000..=1000 + 70).contains(&total), "{total}");
    }
}
