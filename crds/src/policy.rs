//! The per-rule vocabulary of a Route beyond matching: filters, retries, rate limits, load
//! balancing and outlier detection. The names are Gateway API's where it has them.
//!
//! Shapes only: [`crate::validate`] says which values are valid, and the control plane what
//! they mean.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::route::ServiceRef;

/// Something a rule does to a matched request or its response. `type` names the kind, and the
/// field of the same name (camelCase) holds its settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteFilter {
    /// `RequestHeaderModifier`, `ResponseHeaderModifier`, `URLRewrite`, `RequestRedirect`,
    /// `RequestMirror` or `DirectResponse`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Sets, adds and removes request headers before the request is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    /// Sets, adds and removes response headers before the response is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    /// Rewrites the host and path sent upstream.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "urlRewrite"
    )]
    pub url_rewrite: Option<UrlRewrite>,
    /// Answers with a redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    /// Sends a copy of some requests to another Service, ignoring its answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
    /// Answers with a fixed status and body instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
}

/// Header changes, applied in the order set, add, remove.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct HeaderModifier {
    /// Replaces any value the header had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HttpHeader>,
    /// Adds a value, keeping those already there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HttpHeader>,
    /// Header names to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// A new host and path for the request sent upstream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct UrlRewrite {
    /// The Host sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

/// A path replacement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub kind: PathModifierType,
    /// The whole new path (type ReplaceFullPath).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    /// What the matched prefix becomes, the rest of the path kept (type ReplacePrefixMatch;
    /// only on rules whose matches are all PathPrefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

/// The kinds of path replacement.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PathModifierType {
    ReplaceFullPath,
    ReplacePrefixMatch,
}

/// A redirect: each part given replaces the request's own in the `Location`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirect {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Absent: the scheme's default port when the scheme changes, else the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u32>,
}

/// A copy of some requests, sent to another Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct RequestMirror {
    pub backend: MirrorBackend,
    /// The share of requests copied, 0 to 100. Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<u32>,
}

/// Where mirrored requests go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct MirrorBackend {
    pub service: ServiceRef,
}

/// A fixed answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct DirectResponse {
    /// 200 to 599.
    #[schemars(range(min = 200, max = 599))]
    pub status: u32,
    /// Sent as `text/plain`; at most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Retries of a failed try.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries after the first try, at most (0 to 10). Absent: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub attempts: Option<u32>,
    /// What a try may fail with to be retried: `connect-failure` (the upstream could not be
    /// reached), `reset` (the connection failed after the request was sent), a status code
    /// (`"503"`), `5xx`, `gateway-error` (502, 503, 504) or `retriable-4xx` (409). Absent:
    /// `connect-failure` and `gateway-error`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<String>,
    /// Waits between tries: exponential, with jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// A cap on retries relative to requests, so a failing backend's load is not multiplied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RetryBudget>,
    /// Retry non-idempotent methods (POST, PATCH) on more than connect failures.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_idempotent: bool,
}

/// Exponential backoff: the n-th retry waits a random time up to `base × 2ⁿ⁻¹`, capped at `max`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct Backoff {
    /// A duration, e.g. `25ms`. Absent: 25ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// A duration, e.g. `250ms`. Absent: 250ms, or `base` if that is longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
}

/// Retries may add at most `percent`% of the rule's requests, plus `minPerSecond` retries a
/// second, over a sliding ten seconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// 0 to 100. Absent: 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<u32>,
    /// Retries a second allowed whatever the share, so a quiet rule can retry. Absent: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_per_second: Option<u32>,
}

/// A limit on a rule's request rate: `requests` per `per`, plus `burst` at once, per key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct RateLimit {
    #[schemars(range(min = 1))]
    pub requests: u32,
    /// A duration, e.g. `1s`, `1m`.
    pub per: String,
    /// Requests allowed at once beyond the steady rate.
    #[serde(default)]
    pub burst: u32,
    /// What a limit is counted per. Absent: the whole rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<RateLimitKey>,
}

/// A rate limit's key: one of the fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitKey {
    /// The client's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "clientIP")]
    pub client_ip: Option<Empty>,
    /// A request header's value (requests without it share one bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// A field whose presence is its whole meaning (`clientIP: {}`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct Empty {}

/// How a rule's endpoints are chosen.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    /// `RoundRobin` (weighted, the default), `LeastRequest` (power of two choices over
    /// in-flight requests), `ConsistentHash` or `Random`.
    #[serde(rename = "type", default)]
    pub kind: LoadBalancerType,
    /// What requests are hashed by (type ConsistentHash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash>,
}

/// The load-balancing algorithms.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum LoadBalancerType {
    #[default]
    RoundRobin,
    LeastRequest,
    ConsistentHash,
    Random,
}

/// A consistent-hash key: one of the fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHash {
    /// A request header's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A cookie's value; when the request has none, Weir sets one with a new random value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<HashCookie>,
    /// The client's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "sourceIP")]
    pub source_ip: Option<Empty>,
}

/// The cookie requests are hashed by.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct HashCookie {
    pub name: String,
    /// How long a cookie Weir sets lives, e.g. `1h`. Absent: the browser session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// Passive outlier detection: an endpoint that fails `consecutiveErrors` times in a row (5xx
/// or connect failures) is ejected for `baseEjectionTime` × the number of times it has been.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Failures in a row (5xx responses, connect failures, resets) that eject an endpoint.
    /// Absent: 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub consecutive_errors: Option<u32>,
    /// How often a healthy endpoint's ejection count decays by one, e.g. `10s`. Absent: 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The first ejection's length, e.g. `30s`; the n-th lasts n times as long. Absent: 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    /// Never more than this share of a backend's endpoints ejected at once (0 to 100), though
    /// one endpoint may always be ejected unless this is 0. Absent: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_ejection_percent: Option<u32>,
}
