//! Rate limits: a token bucket per rule (or per client address, or per header value), from
//! the `governor` crate (GCRA).
//!
//! A rule's limit of `requests` per `per` with `burst` lets `requests + burst` requests through
//! at once from a full bucket, then one every `per / requests`. A refused request is answered
//! 429 with `Retry-After` and the IETF draft's `RateLimit-Policy` and `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers): the policy's quota and window, and, when it is
//! exhausted, the seconds until the next request would pass.
//!
//! Limits are per Weir replica: each replica has its own buckets. A bucket lives in the rule's
//! long-lived state, so a table swap that keeps the rule's limit keeps its bucket.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::{InMemoryState, NotKeyed, keyed::DefaultKeyedStateStore},
};
use http::{HeaderMap, HeaderValue};
use weir_contract::{RateLimit, RateLimitKey};

type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;
type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One rule's buckets.
pub struct RuleRateLimiter {
    pub config: RateLimit,
    buckets: Buckets,
    clock: DefaultClock,
    /// `RateLimit-Policy`, formatted once.
    policy_header: HeaderValue,
}

impl std::fmt::Debug for RuleRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleRateLimiter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

enum Buckets {
    Rule(Direct),
    ClientIp(Keyed<IpAddr>),
    Header(Keyed<Vec<u8>>),
}

/// A request the limit refused: how long until one would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl RuleRateLimiter {
    pub fn new(config: RateLimit) -> Self {
        let requests = NonZeroU32::new(config.requests).unwrap_or(NonZeroU32::MIN);
        let capacity = NonZeroU32::new(config.requests.saturating_add(config.burst))
            .unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(config.per / requests.get())
            .unwrap_or_else(|| Quota::per_second(requests))
            .allow_burst(capacity);
        let buckets = match &config.key {
            RateLimitKey::Rule => Buckets::Rule(RateLimiter::direct(quota).with_middleware()),
            RateLimitKey::ClientIp => {
                Buckets::ClientIp(RateLimiter::keyed(quota).with_middleware())
            }
            RateLimitKey::Header(_) => Buckets::Header(RateLimiter::keyed(quota).with_middleware()),
        };
        let window = config.per.as_secs().max(1);
        let policy_header = HeaderValue::from_str(&format!("\"default\";q={capacity};w={window}"))
            .expect("digits make a valid header value");
        Self {
            config,
            buckets,
            clock: DefaultClock::default(),
            policy_header,
        }
    }

    /// Takes a token for a request from `client` with `headers`.
    pub fn check(&self, client: IpAddr, headers: &HeaderMap) -> Result<(), Limited> {
        let refused = match &self.buckets {
            Buckets::Rule(bucket) => bucket.check().err(),
            Buckets::ClientIp(buckets) => buckets.check_key(&client).err(),
            Buckets::Header(buckets) => {
                let key = match &self.config.key {
                    RateLimitKey::Header(name) => headers
                        .get(name)
                        .map(|v| v.as_bytes().to_vec())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                buckets.check_key(&key).err()
            }
        };
        match refused {
            None => Ok(()),
            Some(not_until) => Err(Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
        }
    }

    /// The headers of a 429: `Retry-After`, `RateLimit-Policy` and `RateLimit`.
    pub fn refusal_headers(&self, limited: Limited, headers: &mut HeaderMap) {
        let seconds = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        headers.insert("ratelimit-policy", self.policy_header.clone());
        if let Ok(state) = HeaderValue::from_str(&format!("\"default\";r=0;t={seconds}")) {
            headers.insert("ratelimit", state);
        }
    }

    /// Forgets buckets that are full again, so keyed limits do not grow without end.
    pub fn forget_idle(&self) {
        match &self.buckets {
            Buckets::Rule(_) => {}
            Buckets::ClientIp(buckets) => {
                buckets.retain_recent();
                buckets.shrink_to_fit();
            }
            Buckets::Header(buckets) => {
                buckets.retain_recent();
                buckets.shrink_to_fit();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(key: RateLimitKey) -> RuleRateLimiter {
        RuleRateLimiter::new(RateLimit {
            requests: 5,
            per: Duration::from_secs(10),
            burst: 3,
            key,
        })
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn requests_plus_burst_pass_at_once_then_the_rest_wait() {
        let limiter = limiter(RateLimitKey::Rule);
        let passed = (0..20)
            .filter(|_| limiter.check(CLIENT, &HeaderMap::new()).is_ok())
            .count();
        assert_eq!(passed, 8);
        let refused = limiter.check(CLIENT, &HeaderMap::new()).unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(2), "{refused:?}");
        let mut headers = HeaderMap::new();
        limiter.refusal_headers(refused, &mut headers);
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=8;w=10");
        assert!(
            headers["ratelimit"]
                .to_str()
                .unwrap()
                .starts_with("\"default\";r=0;t=")
        );
        assert!(headers.contains_key("retry-after"));
    }

    #[test]
    fn keyed_limits_count_each_key_apart() {
        let by_client = limiter(RateLimitKey::ClientIp);
        let other = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
        for _ in 0..8 {
            assert!(by_client.check(CLIENT, &HeaderMap::new()).is_ok());
        }
        assert!(by_client.check(CLIENT, &HeaderMap::new()).is_err());
        assert!(by_client.check(other, &HeaderMap::new()).is_ok());

        let by_header = limiter(RateLimitKey::Header(http::HeaderName::from_static(
            "x-api-key",
        )));
        let mut alice = HeaderMap::new();
        alice.insert("x-api-key", HeaderValue::from_static("alice"));
        for _ in 0..8 {
            assert!(by_header.check(CLIENT, &alice).is_ok());
        }
        assert!(by_header.check(CLIENT, &alice).is_err());
        assert!(
            by_header.check(CLIENT, &HeaderMap::new()).is_ok(),
            "no key is a bucket of its own"
        );
    }
}
