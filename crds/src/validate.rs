//! Validation of a Route's spec beyond what its types and schema can say.
//!
//! Every problem is reported with the field it sits in (`spec.rules[0].backends`), so a user
//! can find it; all problems are reported at once rather than one per edit. Regular
//! expressions are compiled by the control plane, which owns them, not here.

use std::{fmt, time::Duration};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::route::{PathMatchType, RouteSpec};

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
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
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
                if header.value.len() > MAX_VALUE_LEN
                    || header
                        .value
                        .bytes()
                        .any(|b| b.is_ascii_control() && b != b'\t')
                {
                    fail(
                        format!("{at}.headers[{h}].value"),
                        "must be at most 1024 characters without control characters",
                    );
                }
            }
        }
        if rule.backends.is_empty() {
            fail(format!("{at}.backends"), "at least one backend is required");
        }
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
        }
        if let Some(timeout) = &rule.timeout
            && parse_timeout(timeout).is_err()
        {
            fail(
                format!("{at}.timeout"),
                "must be a duration such as 10s, 500ms or 1m30s",
            );
        }
        if let Some(timeouts) = &rule.timeouts
            && let Some(request_body) = &timeouts.request_body
            && parse_timeout(request_body).is_err()
        {
            fail(
                format!("{at}.timeouts.requestBody"),
                "must be a duration such as 10s, 500ms or 1m30s",
            );
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

/// Parses a rule timeout. `Ok(None)` means no timeout (`0s`).
pub fn parse_timeout(text: &str) -> Result<Option<Duration>, humantime::DurationError> {
    let duration = humantime::parse_duration(text)?;
    Ok((!duration.is_zero()).then_some(duration))
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

fn check_host(host: &str) -> Result<(), &'static str> {
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

fn check_dns_label(label: &str) -> Result<(), ()> {
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
fn check_subdomain(name: &str) -> Result<(), ()> {
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
            }],
            timeout: None,
            timeouts: None,
            max_request_body_size: None,
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
