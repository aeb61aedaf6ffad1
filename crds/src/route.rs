//! The `Route` custom resource (`weir.dev/v1alpha1`): which requests go to which Services.
//!
//! These types are the API users write. They are only shapes: what a Route *means* (which
//! values are valid, how matches rank) lives in [`crate::validate`] and in the control plane.
//!
//! ```
//! let route: weir_crds::Route = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
//!     "metadata": {"name": "echo", "namespace": "default"},
//!     "spec": {"hosts": ["echo.local"], "rules": [
//!         {"backends": [{"service": {"name": "echo", "port": 8080}}]}
//!     ]}
//! })).unwrap();
//! assert_eq!(route.spec.rules[0].backends[0].weight, 1);
//! ```

use k8s_openapi::apimachinery::pkg::{apis::meta::v1::Condition, util::intstr::IntOrString};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::{LoadBalancer, OutlierDetection, RateLimit, RetryPolicy, RouteFilter};

/// Routes HTTP requests for a set of hosts to Services, rule by rule.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "Route",
    namespaced,
    status = "RouteStatus",
    shortname = "rt",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// Host names this Route serves. `*.example.com` matches any subdomain of example.com
    /// (not example.com itself). Empty: every host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Rules, each matching some requests and sending them to backends.
    pub rules: Vec<RouteRule>,
    /// Certificates for the TLS listener (`--listen-tls`), chosen by the name the client
    /// asks for (SNI). Each comes from a `kubernetes.io/tls` Secret in the Route's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<RouteTls>,
}

/// A certificate for some of the Route's hosts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    /// Host names the certificate is served for (`*.example.com` for a wildcard). Absent: the
    /// Route's hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// A `kubernetes.io/tls` Secret in the Route's namespace: `tls.crt` (the chain, leaf first)
    /// and `tls.key` (its private key), PEM.
    pub secret_name: String,
}

/// One rule: requests matching any of `matches` go to `backends`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    /// A request matches the rule when it matches any of these. Empty: every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
    /// What the rule does to a matched request (and its response), applied in a fixed order:
    /// RequestRedirect or DirectResponse (which answer at once), RequestHeaderModifier,
    /// URLRewrite, RequestMirror; ResponseHeaderModifier on the way back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<RouteFilter>,
    /// Services that receive the matched requests, chosen by weight. May be empty only when a
    /// RequestRedirect or DirectResponse filter answers every request.
    #[serde(default)]
    pub backends: Vec<Backend>,
    /// How long to wait for the upstream's response headers on one try, e.g. `10s`, `500ms`,
    /// `1m30s`. `0s` or absent: no timeout. The same as `timeouts.backendRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Time limits on the rule's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<RuleTimeouts>,
    /// The largest request body accepted, as a quantity (`10Mi`, `512Ki`, `1000000`); a larger
    /// one is answered 413. Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_size: Option<String>,
    /// Retries of failed tries, on another endpoint when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// A limit on the rule's request rate, per Weir replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// How each request's endpoint is chosen. Absent: weighted round-robin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Endpoints that keep failing are taken out of rotation for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
}

/// Time limits on a rule's requests, as durations (`10s`, `500ms`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleTimeouts {
    /// The whole request, every try and backoff included, until the response headers;
    /// answered 504 when it passes. Absent or `0s`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// One try, until its response headers arrive; a try that takes longer fails with a
    /// timeout (and may be retried). Absent or `0s`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
    /// The longest the client may pause while sending the request body; a request whose body
    /// stalls longer is answered 408. Absent: the gateway's `--request-body-timeout`; `0s`:
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
}

/// Conditions a request must meet, all of them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// The request path. Absent: `PathPrefix /`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// The request method. Absent: any method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// Headers that must be present with these values (names are case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// Query parameters that must be present with these values (names are case-sensitive;
    /// values are compared percent-decoded; of a parameter given twice, the first counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<QueryParamMatch>,
}

/// How the request path is matched.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PathMatch {
    /// `PathPrefix` (default), `Exact` or `RegularExpression`.
    #[serde(rename = "type", default)]
    pub kind: PathMatchType,
    /// A path starting with `/`, or a regular expression matched against the whole path.
    pub value: String,
}

/// The kinds of path match. Prefixes match whole segments: `/api` matches `/api`, `/api/`
/// and `/api/x`, never `/apix`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PathMatchType {
    #[default]
    PathPrefix,
    Exact,
    RegularExpression,
}

/// HTTP methods a match can name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

impl HttpMethod {
    /// The method as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
        }
    }
}

/// A header that must be present with a value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct HeaderMatch {
    pub name: String,
    /// `Exact` (default) or `RegularExpression` (matched against the whole value).
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    pub value: String,
}

/// A query parameter that must be present with a value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct QueryParamMatch {
    pub name: String,
    /// `Exact` (default) or `RegularExpression` (matched against the whole value).
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    pub value: String,
}

/// How a header or query parameter's value is matched.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ValueMatchType {
    #[default]
    Exact,
    RegularExpression,
}

/// A Service in the Route's namespace, and the share of traffic it gets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Backend {
    pub service: ServiceRef,
    /// Relative share of the rule's requests (default 1; 0 sends none).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub weight: u32,
    /// Speak TLS to this backend. The protocol inside follows the Service port's
    /// `appProtocol`, as without TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTls>,
    /// Filters for requests sent to this backend, after the rule's: RequestHeaderModifier and
    /// ResponseHeaderModifier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<RouteFilter>,
}

/// TLS to a backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendTls {
    /// The name sent in SNI and checked against the backend's certificate.
    pub server_name: String,
    /// A Secret in the Route's namespace whose `ca.crt` (PEM) holds the CAs to trust instead of
    /// the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_name: Option<String>,
}

fn default_weight() -> u32 {
    1
}

/// A Service port, by number or by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ServiceRef {
    pub name: String,
    pub port: IntOrString,
}

/// What Weir last decided about a Route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
