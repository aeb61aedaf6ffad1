//! The operator's view of a snapshot, as `/debug/routes` serves it.
//!
//! Built field by field from the contract: the snapshot's listeners (address, protocol,
//! hostname, which Secrets serve their certificates); routes with the listeners they are
//! attached to, their matches, filters, backends (an invalid one with the reason it is
//! answered 500) and resolved endpoints; a report per Route; the sources' problems; and, for
//! certificates, only which Secret serves which hosts. Live state the table holds is shown
//! beside what it belongs to: each endpoint's outlier-detection health (ejected, for how long).
//! Nothing here can hold a private key or a credential: the contract's secret types implement
//! no `Serialize`, and no field of this view is taken from one.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use weir_contract::{
    Backend, BodyTimeout, Filter, HashKey, HeaderModifier, Listener, ListenerProtocol,
    LoadBalancer, NamespacedName, PathMatch, PathModifier, RateLimitKey, Route, RouteKind,
    RouteMatch, RouteReport, Rule, RuleBackend, RulePolicy, ServiceBackend, Snapshot,
    SourceProblem, TlsCertificate, Unresolved, ValueMatch,
};

use crate::{
    balance::BackendEndpoints,
    table::{RoutingTable, RuleTarget},
};

/// Finds the live target of a rule of a route, if the table has one.
type LiveTargets<'a> = &'a dyn Fn(&Route, usize) -> Option<Arc<RuleTarget>>;

/// The whole view.
#[derive(Serialize)]
pub struct SnapshotView {
    pub generation: u64,
    /// The listeners configuration defines, beyond the command line's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerView>,
    pub routes: Vec<RouteView>,
    pub certificates: Vec<CertificateView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_certificate: Option<CertificateView>,
    pub reports: Vec<ReportView>,
    /// One per Ingress of a Weir IngressClass; Ingresses have no conditions, so their
    /// problems are shown here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress_reports: Vec<IngressReportView>,
    pub source_problems: Vec<ProblemView>,
}

#[derive(Serialize)]
pub struct ListenerView {
    pub name: String,
    /// `address:port`; listeners with the same one share its socket.
    pub address: String,
    /// `HTTP` or `HTTPS`.
    pub protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Which Secrets serve which hosts (none: the socket's default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateView>,
}

#[derive(Serialize)]
pub struct IngressReportView {
    pub id: ObjectView,
    pub origin: String,
    pub generation: Option<i64>,
    pub problems: Vec<String>,
}

#[derive(Serialize)]
pub struct ObjectView {
    pub namespace: String,
    pub name: String,
}

#[derive(Serialize)]
pub struct RouteView {
    pub id: ObjectView,
    /// `Ingress` or `HTTPRoute` for their routes; absent for Weir's Routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// Which of its object's routes this is: an Ingress's host, `*`, or `defaultBackend`; the
    /// address of the socket an HTTPRoute's is served on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// The listeners it is served on; absent for the command line's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<String>,
    pub hosts: Vec<String>,
    pub rules: Vec<RuleView>,
}

#[derive(Serialize)]
pub struct RuleView {
    pub matches: Vec<MatchView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<serde_json::Value>,
    pub backends: Vec<BackendView>,
    /// The backend request timeout, e.g. `10s`.
    pub timeout: Option<String>,
    /// The longest pause in a request body: a duration, `gateway default` or `none`.
    pub request_body_timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    /// Retries, rate limit, load balancing and outlier detection, where set.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub policy: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
pub struct MatchView {
    /// `{"Prefix": "/api"}`, `{"Exact": …}` or `{"RegularExpression": …}`.
    pub path: serde_json::Value,
    pub method: Option<String>,
    pub headers: Vec<ValueMatchView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<ValueMatchView>,
}

#[derive(Serialize)]
pub struct ValueMatchView {
    pub name: String,
    /// `Exact`, `RegularExpression` or `Present`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A backend of a rule: a Service, or a reference the control plane could not accept.
#[derive(Serialize)]
#[serde(untagged)]
pub enum BackendView {
    Service(ServiceBackendView),
    Invalid(InvalidBackendView),
}

/// A backend reference the control plane could not accept: its share of the rule's requests
/// is answered 500.
#[derive(Serialize)]
pub struct InvalidBackendView {
    pub weight: u32,
    /// Why it is invalid.
    pub invalid: String,
    /// Always empty: there is nothing to send to.
    pub endpoints: Vec<String>,
}

#[derive(Serialize)]
pub struct ServiceBackendView {
    pub service: ObjectView,
    pub weight: u32,
    pub protocol: &'static str,
    /// Ready endpoints, `address:port`.
    pub endpoints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unresolved: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTlsView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<serde_json::Value>,
    /// Each endpoint's health, for a rule with outlier detection.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<EndpointHealthView>,
}

#[derive(Serialize)]
pub struct EndpointHealthView {
    pub endpoint: String,
    pub ejected: bool,
    /// Time left in the ejection, e.g. `4s 120ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_for: Option<String>,
    /// Times ejected, decayed as the endpoint stays healthy.
    pub ejections: u32,
}

#[derive(Serialize)]
pub struct BackendTlsView {
    pub server_name: String,
    pub trust: &'static str,
}

#[derive(Serialize)]
pub struct CertificateView {
    /// The Secret it came from.
    pub secret: ObjectView,
    pub hosts: Vec<String>,
}

#[derive(Serialize)]
pub struct ReportView {
    pub id: ObjectView,
    pub origin: String,
    pub generation: Option<i64>,
    pub accepted: bool,
    pub accepted_reason: &'static str,
    pub resolved_refs: bool,
    pub resolved_refs_reason: &'static str,
    pub message: String,
}

#[derive(Serialize)]
pub struct ProblemView {
    pub origin: String,
    pub reason: String,
}

/// The view of a live table: its snapshot, with its live state.
pub fn table(table: &RoutingTable) -> SnapshotView {
    view(&table.snapshot, &|route, rule| {
        table.rule_target(route, rule).cloned()
    })
}

/// The view of `snapshot` alone.
pub fn snapshot(snapshot: &Snapshot) -> SnapshotView {
    view(snapshot, &|_, _| None)
}

fn view(snapshot: &Snapshot, live: LiveTargets<'_>) -> SnapshotView {
    SnapshotView {
        generation: snapshot.generation,
        listeners: snapshot.listeners.iter().map(listener).collect(),
        routes: snapshot.routes.iter().map(|r| route(r, live)).collect(),
        certificates: snapshot
            .certificates
            .iter()
            .map(|c| certificate(c))
            .collect(),
        default_certificate: snapshot.default_certificate.as_deref().map(certificate),
        reports: snapshot.reports.iter().map(|r| report(r)).collect(),
        ingress_reports: snapshot
            .ingress_reports
            .iter()
            .map(|r| IngressReportView {
                id: object(&r.id),
                origin: r.origin.to_string(),
                generation: r.generation,
                problems: r.problems.clone(),
            })
            .collect(),
        source_problems: snapshot.source_problems.iter().map(problem).collect(),
    }
}

fn object(id: &NamespacedName) -> ObjectView {
    ObjectView {
        namespace: id.namespace.clone(),
        name: id.name.clone(),
    }
}

fn listener(listener: &Listener) -> ListenerView {
    ListenerView {
        name: listener.name.to_string(),
        address: listener.address.to_string(),
        protocol: match listener.protocol {
            ListenerProtocol::Http => "HTTP",
            ListenerProtocol::Https => "HTTPS",
        },
        hostname: listener.hostname.clone(),
        certificates: listener
            .certificates
            .iter()
            .map(|c| certificate(c))
            .collect(),
    }
}

fn route(route: &Route, live: LiveTargets<'_>) -> RouteView {
    RouteView {
        id: object(&route.id.object),
        kind: match route.id.kind {
            RouteKind::Route => None,
            RouteKind::Ingress => Some("Ingress"),
            RouteKind::HttpRoute => Some("HTTPRoute"),
        },
        section: route.id.section.as_deref().map(str::to_owned),
        listeners: route.listeners.iter().map(|l| l.to_string()).collect(),
        hosts: route.hosts.clone(),
        rules: route
            .rules
            .iter()
            .enumerate()
            .map(|(index, r)| rule(r, live(route, index).as_deref()))
            .collect(),
    }
}

fn rule(rule: &Rule, live: Option<&RuleTarget>) -> RuleView {
    RuleView {
        matches: rule.matches.iter().map(route_match).collect(),
        filters: rule.filters.iter().map(filter).collect(),
        backends: rule
            .backends
            .iter()
            .enumerate()
            .map(|(index, rule_backend)| match &rule_backend.backend {
                Backend::Service(service) => BackendView::Service(service_backend(
                    service,
                    rule_backend,
                    live.and_then(|target| target.balancer.backends().get(index)),
                )),
                Backend::Invalid(reason) => BackendView::Invalid(InvalidBackendView {
                    weight: rule_backend.weight,
                    invalid: reason.to_string(),
                    endpoints: Vec::new(),
                }),
            })
            .collect(),
        timeout: rule
            .policy
            .timeouts
            .backend_request
            .map(|t| humantime::format_duration(t).to_string()),
        request_body_timeout: match rule.policy.timeouts.request_body {
            BodyTimeout::GatewayDefault => "gateway default".into(),
            BodyTimeout::Disabled => "none".into(),
            BodyTimeout::After(limit) => humantime::format_duration(limit).to_string(),
        },
        max_request_body_bytes: rule.policy.max_request_body_bytes,
        policy: policy(&rule.policy),
    }
}

/// A Service backend, with the live health of its endpoints when the table has them.
fn service_backend(
    service: &ServiceBackend,
    rule_backend: &RuleBackend,
    live: Option<&BackendEndpoints>,
) -> ServiceBackendView {
    ServiceBackendView {
        service: object(&service.service),
        weight: rule_backend.weight,
        protocol: service.protocol.as_str(),
        endpoints: service
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect(),
        unresolved: service.unresolved.map(|u| match u {
            Unresolved::BackendNotFound => "BackendNotFound",
            Unresolved::PortNotFound => "PortNotFound",
            Unresolved::InvalidCertificateRef => "InvalidCertificateRef",
        }),
        tls: service.tls.as_ref().map(|tls| BackendTlsView {
            server_name: tls.server_name.clone(),
            trust: if tls.ca_pem.is_some() {
                "CA certificates from a Secret"
            } else {
                "system roots"
            },
        }),
        filters: rule_backend.filters.iter().map(filter).collect(),
        health: live
            .map(|backend| {
                backend
                    .endpoints
                    .iter()
                    .filter_map(|endpoint| {
                        let health = endpoint.health.as_ref()?;
                        let left = health.ejected_for();
                        Some(EndpointHealthView {
                            endpoint: endpoint.target.address().to_string(),
                            ejected: left.is_some(),
                            ejected_for: left
                                .map(|t| humantime::format_duration(round_ms(t)).to_string()),
                            ejections: health.ejections(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn round_ms(duration: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(duration.as_millis() as u64)
}

fn duration(duration: std::time::Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// The policies of a rule that differ from the defaults.
fn policy(policy: &RulePolicy) -> serde_json::Map<String, serde_json::Value> {
    let mut view = serde_json::Map::new();
    if let Some(request) = policy.timeouts.request {
        view.insert("requestTimeout".into(), json!(duration(request)));
    }
    if let Some(retry) = &policy.retry {
        let mut on: Vec<String> = Vec::new();
        if retry.on.connect_failure {
            on.push("connect-failure".into());
        }
        if retry.on.reset {
            on.push("reset".into());
        }
        on.extend(retry.on.statuses.iter().map(u16::to_string));
        view.insert(
            "retry".into(),
            json!({
                "attempts": retry.attempts,
                "on": on,
                "backoff": {"base": duration(retry.backoff_base), "max": duration(retry.backoff_max)},
                "budget": {"percent": retry.budget.percent, "minPerSecond": retry.budget.min_per_second},
                "nonIdempotent": retry.non_idempotent,
            }),
        );
    }
    if let Some(limit) = &policy.rate_limit {
        let key = match &limit.key {
            RateLimitKey::Rule => "rule".to_owned(),
            RateLimitKey::ClientIp => "clientIP".to_owned(),
            RateLimitKey::Header(name) => format!("header {name}"),
        };
        view.insert(
            "rateLimit".into(),
            json!({"requests": limit.requests, "per": duration(limit.per), "burst": limit.burst, "key": key}),
        );
    }
    let balancer = match &policy.load_balancer {
        LoadBalancer::RoundRobin => None,
        LoadBalancer::LeastRequest => Some(json!({"type": "LeastRequest"})),
        LoadBalancer::Random => Some(json!({"type": "Random"})),
        LoadBalancer::ConsistentHash(key) => Some(json!({
            "type": "ConsistentHash",
            "key": match key {
                HashKey::Header(name) => json!({"header": name.as_str()}),
                HashKey::Cookie { name, ttl } => json!({"cookie": name, "ttl": ttl.map(duration)}),
                HashKey::SourceIp => json!("sourceIP"),
            },
        })),
    };
    if let Some(balancer) = balancer {
        view.insert("loadBalancer".into(), balancer);
    }
    if let Some(outlier) = &policy.outlier_detection {
        view.insert(
            "outlierDetection".into(),
            json!({
                "consecutiveErrors": outlier.consecutive_errors,
                "interval": duration(outlier.interval),
                "baseEjectionTime": duration(outlier.base_ejection_time),
                "maxEjectionPercent": outlier.max_ejection_percent,
            }),
        );
    }
    view
}

fn route_match(route_match: &RouteMatch) -> MatchView {
    let path = match &route_match.path {
        PathMatch::Exact(p) => serde_json::json!({ "Exact": p }),
        PathMatch::Prefix(p) => serde_json::json!({ "Prefix": p }),
        PathMatch::RegularExpression(r) => serde_json::json!({ "RegularExpression": r.as_str() }),
    };
    MatchView {
        path,
        method: route_match.method.as_ref().map(|m| m.to_string()),
        headers: route_match
            .headers
            .iter()
            .map(|h| value_match(h.name.as_str(), &h.value))
            .collect(),
        query: route_match
            .query
            .iter()
            .map(|q| value_match(&q.name, &q.value))
            .collect(),
    }
}

fn value_match(name: &str, value: &ValueMatch) -> ValueMatchView {
    let (kind, value) = match value {
        ValueMatch::Exact(v) => ("Exact", Some(v.clone())),
        ValueMatch::RegularExpression(r) => ("RegularExpression", Some(r.as_str().to_owned())),
        ValueMatch::Present => ("Present", None),
    };
    ValueMatchView {
        name: name.to_owned(),
        kind,
        value,
    }
}

fn filter(filter: &Filter) -> serde_json::Value {
    let modifier = |m: &HeaderModifier| {
        let pairs = |list: &[(http::HeaderName, http::HeaderValue)]| {
            list.iter()
                .map(|(n, v)| json!({"name": n.as_str(), "value": String::from_utf8_lossy(v.as_bytes())}))
                .collect::<Vec<_>>()
        };
        json!({
            "set": pairs(&m.set),
            "add": pairs(&m.add),
            "remove": m.remove.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        })
    };
    let path = |p: &PathModifier| match p {
        PathModifier::ReplaceFullPath(path) => {
            json!({"type": "ReplaceFullPath", "replaceFullPath": path})
        }
        PathModifier::ReplacePrefixMatch(prefix) => {
            json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": prefix})
        }
    };
    match filter {
        Filter::RequestHeaderModifier(m) => {
            json!({"type": "RequestHeaderModifier", "requestHeaderModifier": modifier(m)})
        }
        Filter::ResponseHeaderModifier(m) => {
            json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": modifier(m)})
        }
        Filter::UrlRewrite(rewrite) => json!({"type": "URLRewrite", "urlRewrite": {
            "hostname": rewrite.hostname.as_ref().map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
            "path": rewrite.path.as_ref().map(path),
        }}),
        Filter::RequestRedirect(redirect) => json!({"type": "RequestRedirect", "requestRedirect": {
            "scheme": redirect.scheme.as_ref().map(|s| s.as_str()),
            "hostname": redirect.hostname,
            "port": redirect.port,
            "path": redirect.path.as_ref().map(path),
            "statusCode": redirect.status.as_u16(),
        }}),
        Filter::RequestMirror(mirror) => {
            let service = &mirror.backend;
            json!({"type": "RequestMirror", "requestMirror": {
                "service": service.service.to_string(),
                "percent": mirror.percent,
                "endpoints": service.endpoints.iter().map(|e| e.address.to_string()).collect::<Vec<_>>(),
            }})
        }
        Filter::DirectResponse(direct) => json!({"type": "DirectResponse", "directResponse": {
            "statusCode": direct.status.as_u16(),
            "body": direct.body,
        }}),
    }
}

fn certificate(certificate: &TlsCertificate) -> CertificateView {
    CertificateView {
        secret: object(&certificate.source),
        hosts: certificate.hosts.clone(),
    }
}

fn report(report: &RouteReport) -> ReportView {
    ReportView {
        id: object(&report.id),
        origin: report.origin.to_string(),
        generation: report.generation,
        accepted: report.is_accepted(),
        accepted_reason: report.accepted.as_str(),
        resolved_refs: report.refs_resolved(),
        resolved_refs_reason: report.resolved_refs.as_str(),
        message: report.message.clone(),
    }
}

fn problem(problem: &SourceProblem) -> ProblemView {
    ProblemView {
        origin: problem.origin.clone(),
        reason: problem.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weir_contract::{Credential, SecretBytes};

    use super::*;

    const MARKER: &str = "WEIR-SECRET-MARKER-7f3a";

    fn certificate_with_marker() -> TlsCertificate {
        TlsCertificate {
            source: NamespacedName::new("shop", "shop-tls"),
            hosts: vec!["shop.example.com".into()],
            chain_pem: b"-----BEGIN CERTIFICATE-----\n...\n".to_vec(),
            key_pem: SecretBytes::new(
                format!("-----BEGIN PRIVATE KEY-----\n{MARKER}\n-----END PRIVATE KEY-----\n")
                    .into_bytes(),
            ),
        }
    }

    #[test]
    fn secret_material_shows_in_neither_debug_nor_the_operator_view() {
        let credential = Credential {
            source: NamespacedName::new("ai", "openai"),
            value: SecretBytes::new(MARKER.as_bytes().to_vec()),
        };
        let snapshot = Snapshot {
            generation: 3,
            certificates: vec![Arc::new(certificate_with_marker())],
            default_certificate: Some(Arc::new(certificate_with_marker())),
            ..Snapshot::default()
        };
        let debug = format!(
            "{snapshot:?} {credential:?} {:#?}",
            certificate_with_marker()
        );
        assert!(!debug.contains(MARKER), "Debug leaks the secret: {debug}");
        assert!(debug.contains("redacted"), "{debug}");

        let json = serde_json::to_string(&self::snapshot(&snapshot)).unwrap();
        assert!(
            !json.contains(MARKER),
            "/debug/routes leaks the secret: {json}"
        );
        assert!(
            json.contains("shop-tls"),
            "the view still says which Secret: {json}"
        );
    }

    #[test]
    fn listeners_show_address_protocol_hostname_and_certificate_sources_only() {
        let snapshot = Snapshot {
            listeners: vec![weir_contract::Listener {
                name: "gateway:web/public#https".into(),
                address: ([127, 0, 1, 1], 443).into(),
                protocol: ListenerProtocol::Https,
                hostname: Some("shop.example.com".into()),
                certificates: vec![Arc::new(certificate_with_marker())],
            }],
            ..Snapshot::default()
        };
        let json = serde_json::to_value(self::snapshot(&snapshot)).unwrap();
        assert_eq!(
            json["listeners"],
            serde_json::json!([{
                "name": "gateway:web/public#https",
                "address": "127.0.1.1:443",
                "protocol": "HTTPS",
                "hostname": "shop.example.com",
                "certificates": [{
                    "secret": {"namespace": "shop", "name": "shop-tls"},
                    "hosts": ["shop.example.com"],
                }],
            }])
        );
        assert!(!json.to_string().contains(MARKER));
    }

    #[test]
    fn an_invalid_backend_shows_its_reason_and_no_endpoints() {
        let route = Route {
            id: weir_contract::RouteId::http_route(
                NamespacedName::new("web", "shop"),
                "127.0.1.1:80",
            ),
            hosts: vec!["shop.example.com".into()],
            listeners: vec!["gateway:web/public#http".into()],
            rules: vec![Rule {
                matches: vec![RouteMatch::any()],
                filters: Vec::new(),
                backends: vec![RuleBackend {
                    weight: 3,
                    filters: Vec::new(),
                    backend: Backend::Invalid("Service web/gone not found".into()),
                }],
                policy: RulePolicy::default(),
            }],
        };
        let snapshot = Snapshot {
            routes: vec![Arc::new(route)],
            ..Snapshot::default()
        };
        let json = serde_json::to_value(self::snapshot(&snapshot)).unwrap();
        let route = &json["routes"][0];
        assert_eq!(route["kind"], "HTTPRoute");
        assert_eq!(route["section"], "127.0.1.1:80");
        assert_eq!(
            route["listeners"],
            serde_json::json!(["gateway:web/public#http"])
        );
        assert_eq!(
            route["rules"][0]["backends"][0],
            serde_json::json!({
                "weight": 3,
                "invalid": "Service web/gone not found",
                "endpoints": [],
            })
        );
    }
}
