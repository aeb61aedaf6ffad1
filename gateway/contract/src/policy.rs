//! Per-rule behaviour beyond routing: filters that change a request or its response (or answer
//! it), and the policies the data plane applies around forwarding — timeouts, body limits,
//! retries, rate limits, load balancing, outlier detection.
//!
//! Everything here is plain data, compiled once per table by the data plane. A rule with no
//! filters and the default policy costs a request nothing.

use std::{sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue, StatusCode, uri::Scheme};

use crate::backend::ServiceBackend;

/// Something a rule does to the requests it matches, or to their responses.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Changes the request's headers before it is forwarded.
    RequestHeaderModifier(HeaderModifier),
    /// Changes the response's headers before it is returned.
    ResponseHeaderModifier(HeaderModifier),
    /// Changes the host and path sent upstream.
    UrlRewrite(UrlRewrite),
    /// Answers with a redirect; nothing is forwarded.
    RequestRedirect(RequestRedirect),
    /// Sends a copy of some requests to another backend, ignoring its answers.
    RequestMirror(RequestMirror),
    /// Answers with a fixed status and body; nothing is forwarded.
    DirectResponse(DirectResponse),
}

/// Header changes, applied in the order set, add, remove (as Gateway API's).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderModifier {
    /// Replace any value the header had.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Add a value, keeping those already there.
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

/// A new host and path for the request sent upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlRewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathModifier>,
}

/// A path replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    ReplaceFullPath(String),
    /// The prefix that matched becomes this; the rest of the path is kept.
    ReplacePrefixMatch(String),
}

/// A redirect; each part given replaces the request's own in `Location`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRedirect {
    pub scheme: Option<Scheme>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    pub status: StatusCode,
}

/// A copy of a share of the requests.
#[derive(Debug, Clone)]
pub struct RequestMirror {
    pub backend: Arc<ServiceBackend>,
    /// 0 to 100.
    pub percent: u8,
}

/// A fixed answer.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectResponse {
    pub status: StatusCode,
    pub body: String,
}

/// How a rule's requests are forwarded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RulePolicy {
    pub timeouts: Timeouts,
    /// The largest request body accepted; a larger one is answered 413. `None`: no limit.
    pub max_request_body_bytes: Option<u64>,
    pub retry: Option<RetryPolicy>,
    pub rate_limit: Option<RateLimit>,
    pub load_balancer: LoadBalancer,
    pub outlier_detection: Option<OutlierDetection>,
}

/// Time limits on a rule's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole request, every try included, until response headers. `None`: no limit.
    pub request: Option<Duration>,
    /// One upstream try, until its response headers arrive. `None`: no limit.
    pub backend_request: Option<Duration>,
    /// The longest pause while the client sends the request body.
    pub request_body: BodyTimeout,
}

/// How long a client may pause while sending a request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyTimeout {
    /// The gateway's own default (its command line).
    #[default]
    GatewayDefault,
    /// No limit.
    Disabled,
    After(Duration),
}

/// Retries of failed tries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try, at most.
    pub attempts: u32,
    pub on: RetryOn,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub budget: RetryBudget,
    /// Whether non-idempotent methods are retried on more than connect failures.
    pub non_idempotent: bool,
}

/// What a try may fail with to be retried.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryOn {
    pub connect_failure: bool,
    /// The connection failed after the request was sent.
    pub reset: bool,
    /// Statuses retried (100..=599), `5xx` and `gateway-error` expanded.
    pub statuses: Vec<u16>,
}

impl RetryOn {
    /// Whether a response with `status` is retried.
    pub fn status(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status.as_u16())
    }
}

/// Retries may add at most `percent`% of the rule's requests, plus `min_per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    pub percent: u32,
    pub min_per_second: u32,
}

impl Default for RetryBudget {
    /// Linkerd's and Finagle's default: 20% of requests, plus 10 a second.
    fn default() -> Self {
        Self {
            percent: 20,
            min_per_second: 10,
        }
    }
}

/// A limit on a rule's request rate: `requests` per `per`, with `burst` more allowed at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
    pub key: RateLimitKey,
}

/// What a rate limit is counted per.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    /// The whole rule.
    Rule,
    ClientIp,
    Header(HeaderName),
}

/// How a rule's endpoints are chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LoadBalancer {
    /// Smooth weighted round-robin across backends, round-robin across each one's endpoints.
    #[default]
    RoundRobin,
    /// Power of two choices over in-flight requests.
    LeastRequest,
    /// A ring of endpoints, weighted; requests with the same key go to the same endpoint.
    ConsistentHash(HashKey),
    /// Weighted random.
    Random,
}

/// What consistent hashing hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(HeaderName),
    /// A cookie's value; set (to a new random value) when the request has none.
    Cookie {
        name: String,
        ttl: Option<Duration>,
    },
    SourceIp,
}

/// Passive outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Failures (5xx or connect failures) in a row that eject an endpoint.
    pub consecutive_errors: u32,
    /// How often a healthy endpoint's ejection count decays by one.
    pub interval: Duration,
    /// The first ejection's length; the n-th lasts n times as long.
    pub base_ejection_time: Duration,
    /// Never more than this share of a backend's endpoints ejected at once.
    pub max_ejection_percent: u32,
}
