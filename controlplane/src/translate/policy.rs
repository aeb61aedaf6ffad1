//! Filters and policies of a rule, from the API's shapes into the contract's.
//!
//! Validation ([`weir_crds::validate_route`]) has already checked every value, so the
//! conversions here only fill in defaults and resolve what needs the store: a mirror's
//! backend Service.

use std::{sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue, StatusCode, uri::Scheme};
use weir_contract::{
    DirectResponse, Filter, HashKey, HeaderModifier, LoadBalancer, NamespacedName,
    OutlierDetection, PathModifier, RateLimit, RateLimitKey, RequestMirror, RequestRedirect,
    ResolvedRefsReason, RetryBudget, RetryOn, RetryPolicy, ServiceBackend, Unresolved, UrlRewrite,
};
use weir_crds::{LoadBalancerType, PathModifierType, RouteFilter, parse_timeout};

use super::RefProblem;
use crate::resolve::Lookup;

/// The default retry conditions: what failed before anything reached the application.
const DEFAULT_RETRY_ON: [&str; 2] = ["connect-failure", "gateway-error"];
/// Retries after the first try when `attempts` is not given (Envoy's default too).
const DEFAULT_RETRY_ATTEMPTS: u32 = 1;
const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(250);

fn header_name(name: &str) -> HeaderName {
    // Validation checked it is a token; lowercased it is a header name.
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).expect("validated header name")
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("validated header value")
}

/// A parsed duration; validation accepted the text.
fn duration(text: &str) -> Option<Duration> {
    parse_timeout(text).ok().flatten()
}

/// The contract's form of a rule's (or a backend's) filters. A mirror whose Service does not
/// resolve is dropped, with the problem named at `at`.
pub fn filters(
    id: &NamespacedName,
    filters: &[RouteFilter],
    at: &str,
    lookup: &mut Lookup<'_>,
    problems: &mut Vec<RefProblem>,
) -> Vec<Filter> {
    let mut converted = Vec::with_capacity(filters.len());
    for (f, filter) in filters.iter().enumerate() {
        let modifier = |m: &weir_crds::HeaderModifier| HeaderModifier {
            set: m
                .set
                .iter()
                .map(|h| (header_name(&h.name), header_value(&h.value)))
                .collect(),
            add: m
                .add
                .iter()
                .map(|h| (header_name(&h.name), header_value(&h.value)))
                .collect(),
            remove: m.remove.iter().map(|name| header_name(name)).collect(),
        };
        let path = |p: &weir_crds::PathModifier| match p.kind {
            PathModifierType::ReplaceFullPath => {
                PathModifier::ReplaceFullPath(p.replace_full_path.clone().unwrap_or_default())
            }
            PathModifierType::ReplacePrefixMatch => {
                PathModifier::ReplacePrefixMatch(p.replace_prefix_match.clone().unwrap_or_default())
            }
        };
        let filter = match filter.kind.as_str() {
            "RequestHeaderModifier" => filter
                .request_header_modifier
                .as_ref()
                .map(|m| Filter::RequestHeaderModifier(modifier(m))),
            "ResponseHeaderModifier" => filter
                .response_header_modifier
                .as_ref()
                .map(|m| Filter::ResponseHeaderModifier(modifier(m))),
            "URLRewrite" => filter.url_rewrite.as_ref().map(|rewrite| {
                Filter::UrlRewrite(UrlRewrite {
                    hostname: rewrite.hostname.as_deref().map(header_value),
                    path: rewrite.path.as_ref().map(path),
                })
            }),
            "RequestRedirect" => filter.request_redirect.as_ref().map(|redirect| {
                Filter::RequestRedirect(RequestRedirect {
                    scheme: redirect.scheme.as_deref().map(|s| {
                        if s == "https" {
                            Scheme::HTTPS
                        } else {
                            Scheme::HTTP
                        }
                    }),
                    hostname: redirect.hostname.clone(),
                    port: redirect.port.and_then(|p| u16::try_from(p).ok()),
                    path: redirect.path.as_ref().map(path),
                    status: redirect
                        .status_code
                        .and_then(|code| u16::try_from(code).ok())
                        .and_then(|code| StatusCode::from_u16(code).ok())
                        .unwrap_or(StatusCode::FOUND),
                })
            }),
            "DirectResponse" => filter.direct_response.as_ref().map(|direct| {
                Filter::DirectResponse(DirectResponse {
                    status: u16::try_from(direct.status)
                        .ok()
                        .and_then(|code| StatusCode::from_u16(code).ok())
                        .unwrap_or(StatusCode::OK),
                    body: direct.body.clone().unwrap_or_default(),
                })
            }),
            "RequestMirror" => filter.request_mirror.as_ref().and_then(|mirror| {
                let service =
                    NamespacedName::new(id.namespace.clone(), mirror.backend.service.name.clone());
                let (protocol, endpoints, unresolved) =
                    match lookup.service_port(&service, &mirror.backend.service.port) {
                        Ok((protocol, endpoints)) => (protocol, endpoints, None),
                        Err(unresolved) => (Default::default(), Vec::new(), Some(unresolved)),
                    };
                let problem = match unresolved {
                    Some(Unresolved::BackendNotFound) => {
                        Some((ResolvedRefsReason::BackendNotFound, "not found"))
                    }
                    Some(Unresolved::PortNotFound) => {
                        Some((ResolvedRefsReason::PortNotFound, "has no such port"))
                    }
                    _ => None,
                };
                if let Some((reason, what)) = problem {
                    problems.push(RefProblem {
                        reason,
                        message: format!(
                            "{at}[{f}].requestMirror.backend: Service {service} {what}"
                        ),
                    });
                    return None;
                }
                Some(Filter::RequestMirror(RequestMirror {
                    backend: Arc::new(ServiceBackend {
                        service,
                        protocol,
                        tls: None,
                        endpoints,
                        unresolved,
                    }),
                    percent: mirror.percent.unwrap_or(100).min(100) as u8,
                }))
            }),
            _ => None,
        };
        converted.extend(filter);
    }
    converted
}

/// A rule's retry policy, defaults filled in.
pub fn retry(retry: &weir_crds::RetryPolicy) -> RetryPolicy {
    let mut on = RetryOn::default();
    let conditions: Vec<&str> = if retry.when.is_empty() {
        DEFAULT_RETRY_ON.to_vec()
    } else {
        retry.when.iter().map(String::as_str).collect()
    };
    for condition in conditions {
        match condition {
            "connect-failure" => on.connect_failure = true,
            "reset" => on.reset = true,
            "5xx" => on.statuses.extend(500..=599),
            "gateway-error" => on.statuses.extend([502, 503, 504]),
            "retriable-4xx" => on.statuses.push(409),
            code => on.statuses.extend(code.parse::<u16>().ok()),
        }
    }
    on.statuses.sort_unstable();
    on.statuses.dedup();
    let backoff = retry.backoff.clone().unwrap_or_default();
    let backoff_base = backoff
        .base
        .as_deref()
        .and_then(duration)
        .unwrap_or(DEFAULT_BACKOFF_BASE);
    let backoff_max = backoff
        .max
        .as_deref()
        .and_then(duration)
        .unwrap_or(DEFAULT_BACKOFF_MAX.max(backoff_base));
    RetryPolicy {
        attempts: retry.attempts.unwrap_or(DEFAULT_RETRY_ATTEMPTS),
        on,
        backoff_base,
        backoff_max,
        budget: retry
            .budget
            .as_ref()
            .map(|b| {
                let default = RetryBudget::default();
                RetryBudget {
                    percent: b.percent.unwrap_or(default.percent),
                    min_per_second: b.min_per_second.unwrap_or(default.min_per_second),
                }
            })
            .unwrap_or_default(),
        non_idempotent: retry.non_idempotent,
    }
}

pub fn rate_limit(limit: &weir_crds::RateLimit) -> RateLimit {
    RateLimit {
        requests: limit.requests,
        per: duration(&limit.per).unwrap_or(Duration::from_secs(1)),
        burst: limit.burst,
        key: match &limit.key {
            Some(key) if key.client_ip.is_some() => RateLimitKey::ClientIp,
            Some(key) => key
                .header
                .as_deref()
                .map_or(RateLimitKey::Rule, |h| RateLimitKey::Header(header_name(h))),
            None => RateLimitKey::Rule,
        },
    }
}

pub fn load_balancer(balancer: &weir_crds::LoadBalancer) -> LoadBalancer {
    match balancer.kind {
        LoadBalancerType::RoundRobin => LoadBalancer::RoundRobin,
        LoadBalancerType::LeastRequest => LoadBalancer::LeastRequest,
        LoadBalancerType::Random => LoadBalancer::Random,
        LoadBalancerType::ConsistentHash => {
            let hash = balancer.consistent_hash.clone().unwrap_or_default();
            LoadBalancer::ConsistentHash(if let Some(header) = &hash.header {
                HashKey::Header(header_name(header))
            } else if let Some(cookie) = &hash.cookie {
                HashKey::Cookie {
                    name: cookie.name.clone(),
                    ttl: cookie.ttl.as_deref().and_then(duration),
                }
            } else {
                HashKey::SourceIp
            })
        }
    }
}

pub fn outlier_detection(outlier: &weir_crds::OutlierDetection) -> OutlierDetection {
    OutlierDetection {
        consecutive_errors: outlier.consecutive_errors.unwrap_or(5).max(1),
        interval: outlier
            .interval
            .as_deref()
            .and_then(duration)
            .unwrap_or(Duration::from_secs(10)),
        base_ejection_time: outlier
            .base_ejection_time
            .as_deref()
            .and_then(duration)
            .unwrap_or(Duration::from_secs(30)),
        max_ejection_percent: outlier.max_ejection_percent.unwrap_or(10).min(100),
    }
}
