//! Validation of a Route's spec beyond what its types and schema can say.
//!
//! Every problem is reported with the field it sits in (`spec.rules[0].backends`), so a user
//! can find it; all problems are reported at once rather than one per edit. Regular
//! expressions are compiled by the control plane, which owns them, not here.

use std::{fmt, time::Duration};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{
    policy::{HeaderModifier, LoadBalancerType, PathModifier, PathModifierType, RouteFilter},
    route::{PathMatchType, RouteRule, RouteSpec, ValueMatchType},
};

/// Longest path or header value accepted, as in Gateway API.
const MAX_VALUE_LEN: usize = 1024;

/// One problem in a Route, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, e.g. `spec.rules[0].matches[1].path.value`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// All problems found in one Route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidRoute(pub Vec<FieldError>);

impl fmt::Display for InvalidRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_all(f, &self.0)
    }
}

/// Writes field errors on one line, separated by `; `.
pub(crate) fn write_all(f: &mut fmt::Formatter<'_>, errors: &[FieldError]) -> fmt::Result {
    for (i, error) in errors.iter().enumerate() {
        if i > 0 {
            f.write_str("; ")?;
        }
        write!(f, "{error}")?;
    }
    Ok(())
}

/// Checks a Route's spec; `Ok` means the control plane can compile it (regexes aside).
pub fn validate_route(spec: &RouteSpec) -> Result<(), InvalidRoute> {
    let mut errors = Vec::new();
    let mut fail = |field: String, reason: &str| {
        errors.push(FieldError {
            field,
            reason: reason.to_owned(),
        })
    };

    for (i, host) in spec.hosts.iter().enumerate() {
        if let Err(reason) = check_host(host) {
            fail(format!("spec.hosts[{i}]"), reason);
        }
    }
    if spec.rules.is_empty() {
        fail("spec.rules".into(), "at least one rule is required");
    }
    for (r, rule) in spec.rules.iter().enumerate() {
        let at = format!("spec.rules[{r}]");
        check_matches(rule, &at, &mut fail);
        let answers_itself = rule
            .filters
            .iter()
            .any(|filter| matches!(filter.kind.as_str(), "RequestRedirect" | "DirectResponse"));
        if rule.backends.is_empty() && !answers_itself {
            fail(
                format!("{at}.backends"),
                "at least one backend is required (unless a RequestRedirect or DirectResponse filter answers)",
            );
        }
        check_filters(rule, &at, &mut fail);
        check_policies(rule, &at, &mut fail);
        for (b, backend) in rule.backends.iter().enumerate() {
            let at = format!("{at}.backends[{b}]");
            if check_dns_label(&backend.service.name).is_err() {
                fail(
                    format!("{at}.service.name"),
                    "must be a Service name (lowercase letters, digits and '-')",
                );
            }
            match &backend.service.port {
                IntOrString::Int(port) if !(1..=65535).contains(port) => {
                    fail(format!("{at}.service.port"), "must be between 1 and 65535")
                }
                IntOrString::String(name) if check_dns_label(name).is_err() => fail(
                    format!("{at}.service.port"),
                    "must be a port number or a port name",
                ),
                _ => {}
            }
            if backend.weight > 1_000_000 {
                fail(format!("{at}.weight"), "must be at most 1000000");
            }
            for (f, filter) in backend.filters.iter().enumerate() {
                let at = format!("{at}.filters[{f}]");
                if !matches!(
                    filter.kind.as_str(),
                    "RequestHeaderModifier" | "ResponseHeaderModifier"
                ) {
                    fail(
                        format!("{at}.type"),
                        "a backend's filters may be RequestHeaderModifier or ResponseHeaderModifier",
                    );
                    continue;
                }
                check_filter(filter, &at, false, &mut fail);
            }
        }
        if let Some(timeout) = &rule.timeout
            && parse_timeout(timeout).is_err()
        {
            fail(
                format!("{at}.timeout"),
                "must be a duration such as 10s, 500ms or 1m30s",
            );
        }
        if let Some(timeouts) = &rule.timeouts {
            for (field, value) in [
                ("request", &timeouts.request),
                ("backendRequest", &timeouts.backend_request),
                ("requestBody", &timeouts.request_body),
            ] {
                if let Some(value) = value
                    && parse_timeout(value).is_err()
                {
                    fail(
                        format!("{at}.timeouts.{field}"),
                        "must be a duration such as 10s, 500ms or 1m30s",
                    );
                }
            }
            if rule.timeout.is_some() && timeouts.backend_request.is_some() {
                fail(
                    format!("{at}.timeouts.backendRequest"),
                    "set either timeout or timeouts.backendRequest, not both",
                );
            }
        }
        if let Some(size) = &rule.max_request_body_size
            && parse_size(size).is_err()
        {
            fail(
                format!("{at}.maxRequestBodySize"),
                "must be a size such as 1048576, 512Ki, 10Mi or 1Gi",
            );
        }
        for (b, backend) in rule.backends.iter().enumerate() {
            let Some(tls) = &backend.tls else { continue };
            let at = format!("{at}.backends[{b}].tls");
            if check_host(&tls.server_name).is_err() || tls.server_name.starts_with("*.") {
                fail(format!("{at}.serverName"), "must be a lowercase DNS name");
            }
            if let Some(ca) = &tls.ca_secret_name
                && check_subdomain(ca).is_err()
            {
                fail(format!("{at}.caSecretName"), "must be a Secret name");
            }
        }
    }
    for (i, tls) in spec.tls.iter().enumerate() {
        let at = format!("spec.tls[{i}]");
        if check_subdomain(&tls.secret_name).is_err() {
            fail(
                format!("{at}.secretName"),
                "must be a Secret name (lowercase letters, digits, '-' and '.')",
            );
        }
        if tls.hosts.is_empty() && spec.hosts.is_empty() {
            fail(
                format!("{at}.hosts"),
                "is required when the Route has no hosts: a certificate is chosen by host name",
            );
        }
        for (h, host) in tls.hosts.iter().enumerate() {
            if let Err(reason) = check_host(host) {
                fail(format!("{at}.hosts[{h}]"), reason);
            }
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(InvalidRoute(errors))
    }
}

/// Checks one rule's matches and filters, the parts a Route's rule shares with a Gateway API
/// HTTPRoute's; `at` names the rule (`spec.rules[0]`). The HTTPRoute translation calls it on
/// the rule it builds, since a manifest file has no CRD to check that for it.
pub fn validate_rule_matches_and_filters(rule: &RouteRule, at: &str) -> Result<(), InvalidRoute> {
    let mut errors = Vec::new();
    let mut fail = |field: String, reason: &str| {
        errors.push(FieldError {
            field,
            reason: reason.to_owned(),
        })
    };
    check_matches(rule, at, &mut fail);
    check_filters(rule, at, &mut fail);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InvalidRoute(errors))
    }
}

fn check_matches(rule: &RouteRule, at: &str, fail: &mut dyn FnMut(String, &str)) {
    for (m, route_match) in rule.matches.iter().enumerate() {
        let at = format!("{at}.matches[{m}]");
        if let Some(path) = &route_match.path {
            let checked = match path.kind {
                PathMatchType::PathPrefix | PathMatchType::Exact => check_path(&path.value),
                PathMatchType::RegularExpression if path.value.is_empty() => {
                    Err("must not be empty")
                }
                PathMatchType::RegularExpression => Ok(()),
            };
            if let Err(reason) = checked {
                fail(format!("{at}.path.value"), reason);
            }
        }
        for (h, header) in route_match.headers.iter().enumerate() {
            if !is_token(&header.name) {
                fail(
                    format!("{at}.headers[{h}].name"),
                    "must be a valid HTTP header name",
                );
            }
            if let Err(reason) = check_match_value(header.kind, &header.value) {
                fail(format!("{at}.headers[{h}].value"), reason);
            }
        }
        for (q, query) in route_match.query_params.iter().enumerate() {
            if query.name.is_empty() || query.name.len() > 256 {
                fail(
                    format!("{at}.queryParams[{q}].name"),
                    "must be 1 to 256 characters",
                );
            }
            if let Err(reason) = check_match_value(query.kind, &query.value) {
                fail(format!("{at}.queryParams[{q}].value"), reason);
            }
        }
    }
}

/// Parses a rule timeout. `Ok(None)` means no timeout (`0s`).
pub fn parse_timeout(text: &str) -> Result<Option<Duration>, humantime::DurationError> {
    let duration = humantime::parse_duration(text)?;
    Ok((!duration.is_zero()).then_some(duration))
}

/// What a value match needs: an exact value in header syntax, or a non-empty regex.
fn check_match_value(kind: ValueMatchType, value: &str) -> Result<(), &'static str> {
    match kind {
        ValueMatchType::RegularExpression if value.is_empty() => Err("must not be empty"),
        _ if value.len() > MAX_VALUE_LEN
            || value.bytes().any(|b| b.is_ascii_control() && b != b'\t') =>
        {
            Err("must be at most 1024 characters without control characters")
        }
        _ => Ok(()),
    }
}

/// Every filter of a rule, and the rules filters obey together.
fn check_filters(rule: &RouteRule, at: &str, fail: &mut dyn FnMut(String, &str)) {
    let count = |kind: &str| rule.filters.iter().filter(|f| f.kind == kind).count();
    for kind in ["RequestRedirect", "DirectResponse", "URLRewrite"] {
        if count(kind) > 1 {
            fail(
                format!("{at}.filters"),
                "at most one filter of each of RequestRedirect, DirectResponse and URLRewrite",
            );
            break;
        }
    }
    if count("RequestRedirect") + count("DirectResponse") > 1 {
        fail(
            format!("{at}.filters"),
            "RequestRedirect and DirectResponse cannot be combined: each answers the request",
        );
    }
    if count("RequestRedirect") > 0 && count("URLRewrite") > 0 {
        fail(
            format!("{at}.filters"),
            "RequestRedirect and URLRewrite cannot be combined",
        );
    }
    let all_prefixes = rule.matches.iter().all(|m| {
        m.path
            .as_ref()
            .is_none_or(|p| p.kind == PathMatchType::PathPrefix)
    });
    for (f, filter) in rule.filters.iter().enumerate() {
        check_filter(filter, &format!("{at}.filters[{f}]"), all_prefixes, fail);
    }
}

const FILTER_TYPES: &str = "RequestHeaderModifier, ResponseHeaderModifier, URLRewrite, RequestRedirect, RequestMirror or DirectResponse";

/// One filter: a known type, its own field and no other.
fn check_filter(
    filter: &RouteFilter,
    at: &str,
    prefix_matches_only: bool,
    fail: &mut dyn FnMut(String, &str),
) {
    let fields = [
        (
            "RequestHeaderModifier",
            "requestHeaderModifier",
            filter.request_header_modifier.is_some(),
        ),
        (
            "ResponseHeaderModifier",
            "responseHeaderModifier",
            filter.response_header_modifier.is_some(),
        ),
        ("URLRewrite", "urlRewrite", filter.url_rewrite.is_some()),
        (
            "RequestRedirect",
            "requestRedirect",
            filter.request_redirect.is_some(),
        ),
        (
            "RequestMirror",
            "requestMirror",
            filter.request_mirror.is_some(),
        ),
        (
            "DirectResponse",
            "directResponse",
            filter.direct_response.is_some(),
        ),
    ];
    let Some((_, own, present)) = fields.iter().find(|(kind, ..)| *kind == filter.kind) else {
        fail(
            format!("{at}.type"),
            &format!(
                "unknown filter type {:?}: one of {FILTER_TYPES}",
                filter.kind
            ),
        );
        return;
    };
    if !present {
        fail(
            format!("{at}.{own}"),
            &format!("is required for type {}", filter.kind),
        );
    }
    for (kind, field, set) in fields {
        if set && kind != filter.kind {
            fail(
                format!("{at}.{field}"),
                &format!("does not go with type {}", filter.kind),
            );
        }
    }
    let check_modifier =
        |modifier: &HeaderModifier, field: &str, fail: &mut dyn FnMut(String, &str)| {
            for (list, headers) in [("set", &modifier.set), ("add", &modifier.add)] {
                for (i, header) in headers.iter().enumerate() {
                    if !is_token(&header.name) {
                        fail(
                            format!("{at}.{field}.{list}[{i}].name"),
                            "must be a valid HTTP header name",
                        );
                    }
                    if header.value.len() > MAX_VALUE_LEN
                        || header
                            .value
                            .bytes()
                            .any(|b| b.is_ascii_control() && b != b'\t')
                    {
                        fail(
                            format!("{at}.{field}.{list}[{i}].value"),
                            "must be at most 1024 characters without control characters",
                        );
                    }
                }
            }
            for (i, name) in modifier.remove.iter().enumerate() {
                if !is_token(name) {
                    fail(
                        format!("{at}.{field}.remove[{i}]"),
                        "must be a valid HTTP header name",
                    );
                }
            }
        };
    if let Some(modifier) = &filter.request_header_modifier {
        check_modifier(modifier, "requestHeaderModifier", fail);
    }
    if let Some(modifier) = &filter.response_header_modifier {
        check_modifier(modifier, "responseHeaderModifier", fail);
    }
    let check_path_modifier =
        |path: &PathModifier, field: &str, fail: &mut dyn FnMut(String, &str)| {
            let (value, needed) = match path.kind {
                PathModifierType::ReplaceFullPath => (&path.replace_full_path, "replaceFullPath"),
                PathModifierType::ReplacePrefixMatch => {
                    (&path.replace_prefix_match, "replacePrefixMatch")
                }
            };
            match value {
                None => fail(
                    format!("{at}.{field}.{needed}"),
                    "is required for this type",
                ),
                Some(value) => {
                    if let Err(reason) = check_path(value) {
                        fail(format!("{at}.{field}.{needed}"), reason);
                    }
                }
            }
            if path.kind == PathModifierType::ReplacePrefixMatch && !prefix_matches_only {
                fail(
                    format!("{at}.{field}.type"),
                    "ReplacePrefixMatch needs every match of the rule to be a PathPrefix",
                );
            }
        };
    if let Some(rewrite) = &filter.url_rewrite {
        if let Some(host) = &rewrite.hostname
            && check_host(host).is_err()
        {
            fail(
                format!("{at}.urlRewrite.hostname"),
                "must be a lowercase DNS name",
            );
        }
        if let Some(path) = &rewrite.path {
            check_path_modifier(path, "urlRewrite.path", fail);
        }
    }
    if let Some(redirect) = &filter.request_redirect {
        if let Some(scheme) = &redirect.scheme
            && !matches!(scheme.as_str(), "http" | "https")
        {
            fail(
                format!("{at}.requestRedirect.scheme"),
                "must be http or https",
            );
        }
        if let Some(host) = &redirect.hostname
            && check_host(host).is_err()
        {
            fail(
                format!("{at}.requestRedirect.hostname"),
                "must be a lowercase DNS name",
            );
        }
        if let Some(port) = redirect.port
            && !(1..=65535).contains(&port)
        {
            fail(
                format!("{at}.requestRedirect.port"),
                "must be between 1 and 65535",
            );
        }
        if let Some(status) = redirect.status_code
            && ![301, 302, 303, 307, 308].contains(&status)
        {
            fail(
                format!("{at}.requestRedirect.statusCode"),
                "must be 301, 302, 303, 307 or 308",
            );
        }
        if let Some(path) = &redirect.path {
            check_path_modifier(path, "requestRedirect.path", fail);
        }
    }
    if let Some(mirror) = &filter.request_mirror {
        if check_dns_label(&mirror.backend.service.name).is_err() {
            fail(
                format!("{at}.requestMirror.backend.service.name"),
                "must be a Service name",
            );
        }
        if let IntOrString::Int(port) = mirror.backend.service.port
            && !(1..=65535).contains(&port)
        {
            fail(
                format!("{at}.requestMirror.backend.service.port"),
                "must be between 1 and 65535",
            );
        }
        if let Some(percent) = mirror.percent
            && percent > 100
        {
            fail(
                format!("{at}.requestMirror.percent"),
                "must be between 0 and 100",
            );
        }
    }
    if let Some(direct) = &filter.direct_response {
        if !(200..=599).contains(&direct.status) {
            fail(
                format!("{at}.directResponse.status"),
                "must be between 200 and 599",
            );
        }
        if direct
            .body
            .as_ref()
            .is_some_and(|body| body.len() > 64 * 1024)
        {
            fail(
                format!("{at}.directResponse.body"),
                "must be at most 64 KiB",
            );
        }
    }
}

/// The retry, rate limit, load balancer and outlier detection of a rule.
fn check_policies(rule: &RouteRule, at: &str, fail: &mut dyn FnMut(String, &str)) {
    let duration =
        |value: &str, field: String, fail: &mut dyn FnMut(String, &str)| match parse_timeout(value)
        {
            Ok(Some(_)) => {}
            Ok(None) => fail(field, "must be longer than 0s"),
            Err(_) => fail(field, "must be a duration such as 10s, 500ms or 1m30s"),
        };
    if let Some(retry) = &rule.retry {
        if retry.attempts.is_some_and(|attempts| attempts > 10) {
            fail(format!("{at}.retry.attempts"), "must be between 0 and 10");
        }
        for (i, when) in retry.when.iter().enumerate() {
            let known = matches!(
                when.as_str(),
                "connect-failure" | "reset" | "5xx" | "gateway-error" | "retriable-4xx"
            ) || when
                .parse::<u16>()
                .is_ok_and(|code| (100..=599).contains(&code));
            if !known {
                fail(
                    format!("{at}.retry.when[{i}]"),
                    "must be connect-failure, reset, 5xx, gateway-error, retriable-4xx or a status code",
                );
            }
        }
        if let Some(backoff) = &retry.backoff {
            if let Some(base) = &backoff.base {
                duration(base, format!("{at}.retry.backoff.base"), fail);
            }
            if let Some(max) = &backoff.max {
                duration(max, format!("{at}.retry.backoff.max"), fail);
            }
            if let (Some(base), Some(max)) = (&backoff.base, &backoff.max)
                && let (Ok(Some(base)), Ok(Some(max))) = (parse_timeout(base), parse_timeout(max))
                && base > max
            {
                fail(format!("{at}.retry.backoff.max"), "must be at least base");
            }
        }
        if let Some(budget) = &retry.budget
            && budget.percent.is_some_and(|percent| percent > 100)
        {
            fail(
                format!("{at}.retry.budget.percent"),
                "must be between 0 and 100",
            );
        }
    }
    if let Some(limit) = &rule.rate_limit {
        if limit.requests == 0 {
            fail(format!("{at}.rateLimit.requests"), "must be at least 1");
        }
        duration(&limit.per, format!("{at}.rateLimit.per"), fail);
        if let Some(key) = &limit.key {
            match (&key.client_ip, &key.header) {
                (Some(_), Some(_)) | (None, None) => fail(
                    format!("{at}.rateLimit.key"),
                    "must name exactly one of clientIP and header",
                ),
                (None, Some(header)) if !is_token(header) => fail(
                    format!("{at}.rateLimit.key.header"),
                    "must be a valid HTTP header name",
                ),
                _ => {}
            }
        }
    }
    if let Some(balancer) = &rule.load_balancer {
        match (balancer.kind, &balancer.consistent_hash) {
            (LoadBalancerType::ConsistentHash, None) => fail(
                format!("{at}.loadBalancer.consistentHash"),
                "is required for type ConsistentHash",
            ),
            (LoadBalancerType::ConsistentHash, Some(hash)) => {
                let keys = usize::from(hash.header.is_some())
                    + usize::from(hash.cookie.is_some())
                    + usize::from(hash.source_ip.is_some());
                if keys != 1 {
                    fail(
                        format!("{at}.loadBalancer.consistentHash"),
                        "must name exactly one of header, cookie and sourceIP",
                    );
                }
                if let Some(header) = &hash.header
                    && !is_token(header)
                {
                    fail(
                        format!("{at}.loadBalancer.consistentHash.header"),
                        "must be a valid HTTP header name",
                    );
                }
                if let Some(cookie) = &hash.cookie {
                    if !is_token(&cookie.name) {
                        fail(
                            format!("{at}.loadBalancer.consistentHash.cookie.name"),
                            "must be a valid cookie name",
                        );
                    }
                    if let Some(ttl) = &cookie.ttl {
                        duration(
                            ttl,
                            format!("{at}.loadBalancer.consistentHash.cookie.ttl"),
                            fail,
                        );
                    }
                }
            }
            (_, Some(_)) => fail(
                format!("{at}.loadBalancer.consistentHash"),
                "goes only with type ConsistentHash",
            ),
            (_, None) => {}
        }
    }
    if let Some(outlier) = &rule.outlier_detection {
        if outlier.consecutive_errors == Some(0) {
            fail(
                format!("{at}.outlierDetection.consecutiveErrors"),
                "must be at least 1",
            );
        }
        if let Some(interval) = &outlier.interval {
            duration(interval, format!("{at}.outlierDetection.interval"), fail);
        }
        if let Some(time) = &outlier.base_ejection_time {
            duration(
                time,
                format!("{at}.outlierDetection.baseEjectionTime"),
                fail,
            );
        }
        if outlier
            .max_ejection_percent
            .is_some_and(|percent| percent > 100)
        {
            fail(
                format!("{at}.outlierDetection.maxEjectionPercent"),
                "must be between 0 and 100",
            );
        }
    }
}

/// Parses a size: a number of bytes, or a Kubernetes quantity with a binary (`Ki`, `Mi`,
/// `Gi`) or decimal (`k`, `M`, `G`) suffix.
///
/// ```
/// assert_eq!(weir_crds::parse_size("10Mi"), Ok(10 << 20));
/// assert_eq!(weir_crds::parse_size("1500"), Ok(1500));
/// assert_eq!(weir_crds::parse_size("2k"), Ok(2000));
/// assert!(weir_crds::parse_size("ten").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, InvalidSize> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &text[digits.len()..];
    let number: u64 = digits.parse().map_err(|_| InvalidSize)?;
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(InvalidSize),
    };
    number.checked_mul(factor).ok_or(InvalidSize)
}

/// A size that is not a number of bytes or a quantity Weir reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a size such as 1048576, 512Ki, 10Mi or 1Gi")]
pub struct InvalidSize;

pub(crate) fn check_host(host: &str) -> Result<(), &'static str> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.len() > 253 {
        return Err("must be at most 253 characters");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("must be a host name, not an IP address");
    }
    if name.is_empty() || name.split('.').any(|label| check_dns_label(label).is_err()) {
        return Err("must be a lowercase DNS name, optionally starting with '*.'");
    }
    Ok(())
}

pub(crate) fn check_dns_label(label: &str) -> Result<(), ()> {
    let valid = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if valid { Ok(()) } else { Err(()) }
}

/// A DNS subdomain name (RFC 1123), as Kubernetes object names are.
pub(crate) fn check_subdomain(name: &str) -> Result<(), ()> {
    if name.len() > 253 || name.split('.').any(|label| check_dns_label(label).is_err()) {
        return Err(());
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with '/'");
    }
    if path.len() > MAX_VALUE_LEN {
        return Err("must be at most 1024 characters");
    }
    // Braces are the router's parameter syntax; '?' and '#' never reach a path match.
    if path.bytes().any(|b| {
        matches!(b, b'{' | b'}' | b'?' | b'#') || b.is_ascii_whitespace() || b.is_ascii_control()
    }) {
        return Err("must not contain '{', '}', '?', '#', spaces or control characters");
    }
    Ok(())
}

/// An HTTP token (RFC 9110 §5.6.2), the grammar of header names.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Backend, HeaderMatch, PathMatch, RouteMatch, RouteRule, ServiceRef};

    fn rule(path: &str) -> RouteRule {
        RouteRule {
            matches: vec![RouteMatch {
                path: Some(PathMatch {
                    kind: PathMatchType::PathPrefix,
                    value: path.into(),
                }),
                ..Default::default()
            }],
            backends: vec![Backend {
                service: ServiceRef {
                    name: "echo".into(),
                    port: IntOrString::Int(8080),
                },
                weight: 1,
                tls: None,
                filters: Vec::new(),
            }],
            ..RouteRule::default()
        }
    }

    fn spec(hosts: &[&str], rules: Vec<RouteRule>) -> RouteSpec {
        RouteSpec {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            rules,
            tls: Vec::new(),
        }
    }

    #[test]
    fn accepts_a_plain_route() {
        assert_eq!(
            validate_route(&spec(&["echo.local", "*.example.com"], vec![rule("/api")])),
            Ok(())
        );
    }

    #[test]
    fn names_the_field_of_every_problem() {
        let mut bad = rule("api");
        bad.backends[0].service.port = IntOrString::Int(0);
        bad.timeout = Some("soon".into());
        bad.matches[0].headers.push(HeaderMatch {
            name: "bad header".into(),
            kind: Default::default(),
            value: "1".into(),
        });
        let errors = validate_route(&spec(&["Echo.local"], vec![bad])).unwrap_err();
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.hosts[0]",
                "spec.rules[0].matches[0].path.value",
                "spec.rules[0].matches[0].headers[0].name",
                "spec.rules[0].backends[0].service.port",
                "spec.rules[0].timeout",
            ]
        );
    }

    #[test]
    fn names_tls_limit_and_backend_tls_fields() {
        let mut bad = rule("/");
        bad.timeouts = Some(crate::route::RuleTimeouts {
            request_body: Some("slowly".into()),
            ..Default::default()
        });
        bad.max_request_body_size = Some("10 megabytes".into());
        bad.backends[0].tls = Some(crate::route::BackendTls {
            server_name: "Not A Name".into(),
            ca_secret_name: None,
        });
        let mut route = spec(&[], vec![bad]);
        route.tls.push(crate::route::RouteTls {
            hosts: Vec::new(),
            secret_name: "Shop_TLS".into(),
        });
        let errors = validate_route(&route).unwrap_err();
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.rules[0].timeouts.requestBody",
                "spec.rules[0].maxRequestBodySize",
                "spec.rules[0].backends[0].tls.serverName",
                "spec.tls[0].secretName",
                "spec.tls[0].hosts",
            ]
        );
    }

    #[test]
    fn names_the_field_of_every_filter_and_policy_problem() {
        use crate::policy::*;
        let mut bad = rule("/api");
        bad.matches.push(crate::route::RouteMatch {
            path: Some(PathMatch {
                kind: PathMatchType::Exact,
                value: "/exact".into(),
            }),
            ..Default::default()
        });
        bad.filters = vec![
            RouteFilter {
                kind: "Teleport".into(),
                ..Default::default()
            },
            RouteFilter {
                kind: "RequestMirror".into(),
                request_mirror: Some(RequestMirror {
                    backend: MirrorBackend {
                        service: crate::route::ServiceRef {
                            name: "shadow".into(),
                            port: IntOrString::Int(80),
                        },
                    },
                    percent: Some(150),
                }),
                ..Default::default()
            },
            RouteFilter {
                kind: "URLRewrite".into(),
                url_rewrite: Some(UrlRewrite {
                    hostname: None,
                    path: Some(PathModifier {
                        kind: PathModifierType::ReplacePrefixMatch,
                        replace_full_path: None,
                        replace_prefix_match: Some("/v2".into()),
                    }),
                }),
                ..Default::default()
            },
            RouteFilter {
                kind: "RequestRedirect".into(),
                ..Default::default()
            },
        ];
        bad.retry = Some(RetryPolicy {
            attempts: Some(11),
            when: vec!["sometimes".into()],
            ..Default::default()
        });
        bad.rate_limit = Some(RateLimit {
            requests: 10,
            per: "0s".into(),
            burst: 0,
            key: Some(RateLimitKey::default()),
        });
        bad.load_balancer = Some(LoadBalancer {
            kind: LoadBalancerType::ConsistentHash,
            consistent_hash: None,
        });
        let errors = validate_route(&spec(&[], vec![bad])).unwrap_err();
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.rules[0].filters",
                "spec.rules[0].filters[0].type",
                "spec.rules[0].filters[1].requestMirror.percent",
                "spec.rules[0].filters[2].urlRewrite.path.type",
                "spec.rules[0].filters[3].requestRedirect",
                "spec.rules[0].retry.attempts",
                "spec.rules[0].retry.when[0]",
                "spec.rules[0].rateLimit.per",
                "spec.rules[0].rateLimit.key",
                "spec.rules[0].loadBalancer.consistentHash",
            ],
            "{errors}"
        );
    }

    #[test]
    fn a_rule_that_answers_itself_needs_no_backend() {
        let mut redirect = rule("/old");
        redirect.backends.clear();
        redirect.filters.push(crate::policy::RouteFilter {
            kind: "RequestRedirect".into(),
            request_redirect: Some(crate::policy::RequestRedirect {
                scheme: Some("https".into()),
                status_code: Some(301),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(validate_route(&spec(&[], vec![redirect])), Ok(()));
    }

    #[test]
    fn rejects_a_route_without_rules_or_backends() {
        let mut no_backends = rule("/");
        no_backends.backends.clear();
        assert!(validate_route(&spec(&[], vec![])).is_err());
        assert!(validate_route(&spec(&[], vec![no_backends])).is_err());
    }

    #[test]
    fn rejects_ip_addresses_and_inner_wildcards_as_hosts() {
        for host in ["10.0.0.1", "a.*.example.com", "*", "*.", "-a.example.com"] {
            assert!(check_host(host).is_err(), "{host} should be rejected");
        }
    }

    #[test]
    fn rejects_router_syntax_in_paths() {
        assert!(check_path("/users/{id}").is_err());
        assert!(check_path("/a b").is_err());
        assert!(check_path("/a?b").is_err());
    }

    #[test]
    fn zero_timeout_means_none() {
        assert_eq!(parse_timeout("0s").unwrap(), None);
        assert_eq!(
            parse_timeout("1m30s").unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_timeout("250ms").unwrap(),
            Some(Duration::from_millis(250))
        );
    }

    proptest::proptest! {
        #[test]
        fn every_path_of_plain_segments_is_accepted(segments in proptest::collection::vec("[a-z0-9._~-]{0,12}", 0..6)) {
            let path = format!("/{}", segments.join("/"));
            proptest::prop_assert_eq!(check_path(&path), Ok(()));
        }
    }
}
