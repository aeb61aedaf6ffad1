//! Weir's `Route` (`weir.dev/v1alpha1`) into contract routes.
//!
//! Validation is the CRD crate's ([`weir_crds::validate_route`]); this module adds what needs
//! the control plane: compiling regular expressions, normalising prefixes and header names,
//! resolving each backend to its Service's protocol and ready endpoints, and each TLS entry
//! to a checked certificate. A reference that does not resolve does not reject the Route; it
//! is a [`RefProblem`] on its report.

use std::sync::Arc;

use http::{HeaderName, Method};
use weir_contract::{
    AcceptedReason, Backend, BodyTimeout, HeaderMatch, NamespacedName, PathMatch, QueryMatch,
    ResolvedRefsReason, Route, RouteId, RouteKind, RouteMatch, Rule, RuleBackend, RulePolicy,
    ServiceBackend, Timeouts, TlsCertificate, Unresolved, UpstreamTls, ValueMatch,
};
use weir_crds::{
    PathMatchType, RouteSpec, ValueMatchType, parse_size, parse_timeout, validate_route,
};

use super::{RefProblem, Rejected, Translated, policy};
use crate::resolve::Lookup;

/// Compiled regexes larger than this are refused rather than slowing every request.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Translates a Route's spec, with its references resolved through `lookup`.
pub fn translate(
    id: &NamespacedName,
    spec: &RouteSpec,
    lookup: &mut Lookup<'_>,
) -> Result<Translated, Rejected> {
    validate_route(spec).map_err(|invalid| Rejected {
        reason: AcceptedReason::Invalid,
        message: invalid.to_string(),
    })?;
    let mut problems = Vec::new();
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (r, rule) in spec.rules.iter().enumerate() {
        let matches = rule_matches(&rule.matches, &format!("spec.rules[{r}]"))?;
        let mut backends = Vec::with_capacity(rule.backends.len());
        for (b, backend) in rule.backends.iter().enumerate() {
            let at = format!("spec.rules[{r}].backends[{b}]");
            let (mut rule_backend, problem) = translate_backend(id, backend, &at, lookup);
            problems.extend(problem);
            rule_backend.filters = policy::filters(
                id,
                &backend.filters,
                &format!("{at}.filters"),
                lookup,
                &mut problems,
            );
            backends.push(rule_backend);
        }
        let filters = policy::filters(
            id,
            &rule.filters,
            &format!("spec.rules[{r}].filters"),
            lookup,
            &mut problems,
        );
        // Validation accepted the texts, so they parse; `0s` means no timeout.
        let timeouts = rule.timeouts.as_ref();
        let backend_request = rule
            .timeout
            .as_deref()
            .or_else(|| timeouts.and_then(|t| t.backend_request.as_deref()))
            .and_then(|text| parse_timeout(text).ok().flatten());
        let request = timeouts
            .and_then(|t| t.request.as_deref())
            .and_then(|text| parse_timeout(text).ok().flatten());
        let request_body = match rule
            .timeouts
            .as_ref()
            .and_then(|t| t.request_body.as_deref())
        {
            None => BodyTimeout::GatewayDefault,
            Some(text) => match parse_timeout(text).ok().flatten() {
                Some(limit) => BodyTimeout::After(limit),
                None => BodyTimeout::Disabled,
            },
        };
        rules.push(Rule {
            matches,
            filters,
            backends,
            policy: RulePolicy {
                timeouts: Timeouts {
                    request,
                    backend_request,
                    request_body,
                },
                max_request_body_bytes: rule
                    .max_request_body_size
                    .as_deref()
                    .and_then(|size| parse_size(size).ok()),
                retry: rule.retry.as_ref().map(policy::retry),
                rate_limit: rule.rate_limit.as_ref().map(policy::rate_limit),
                load_balancer: rule
                    .load_balancer
                    .as_ref()
                    .map(policy::load_balancer)
                    .unwrap_or_default(),
                outlier_detection: rule
                    .outlier_detection
                    .as_ref()
                    .map(policy::outlier_detection),
            },
        });
    }

    let hosts: Vec<String> = spec.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
    let mut certificates = Vec::with_capacity(spec.tls.len());
    for (i, tls) in spec.tls.iter().enumerate() {
        let tls_hosts = if tls.hosts.is_empty() {
            hosts.clone()
        } else {
            tls.hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
        };
        let at = format!("spec.tls[{i}].secretName");
        let (certificate, problem) = certificate(id, &tls.secret_name, tls_hosts, &at, lookup);
        certificates.extend(certificate);
        problems.extend(problem);
    }
    Ok(Translated {
        route: Route {
            listeners: Vec::new(),
            id: RouteId::new(RouteKind::Route, id.clone()),
            hosts,
            rules,
        },
        certificates,
        problems,
    })
}

/// A rule's matches in the contract's form, `at` naming the rule (`spec.rules[0]`): regexes
/// compiled and anchored, prefixes normalised, header names lowercased; none written is
/// `PathPrefix /`. Route and HTTPRoute rules share this shape.
pub(crate) fn rule_matches(
    rule_matches: &[weir_crds::RouteMatch],
    at: &str,
) -> Result<Vec<RouteMatch>, Rejected> {
    let mut matches = Vec::with_capacity(rule_matches.len().max(1));
    for (m, route_match) in rule_matches.iter().enumerate() {
        let path =
            match &route_match.path {
                None => PathMatch::Prefix("/".into()),
                Some(path) => match path.kind {
                    PathMatchType::Exact => PathMatch::Exact(path.value.clone()),
                    PathMatchType::PathPrefix => PathMatch::Prefix(normalise_prefix(&path.value)),
                    PathMatchType::RegularExpression => PathMatch::RegularExpression(
                        anchored_regex(&path.value).map_err(|error| Rejected {
                            reason: AcceptedReason::InvalidRegex,
                            message: format!("{at}.matches[{m}].path.value: {error}"),
                        })?,
                    ),
                },
            };
        let value = |kind: ValueMatchType, value: &str, field: String| match kind {
            ValueMatchType::Exact => Ok(ValueMatch::Exact(value.to_owned())),
            ValueMatchType::RegularExpression => anchored_regex(value)
                .map(ValueMatch::RegularExpression)
                .map_err(|error| Rejected {
                    reason: AcceptedReason::InvalidRegex,
                    message: format!("{field}: {error}"),
                }),
        };
        let at = format!("{at}.matches[{m}]");
        let mut headers = Vec::with_capacity(route_match.headers.len());
        for (h, header) in route_match.headers.iter().enumerate() {
            // A Route's validation checked the name; an HTTPRoute's CRD did in a cluster,
            // but a manifest file has no CRD to check it.
            let name = HeaderName::from_bytes(header.name.to_ascii_lowercase().as_bytes())
                .map_err(|_| Rejected {
                    reason: AcceptedReason::Invalid,
                    message: format!(
                        "{at}.headers[{h}].name: {:?} is not a header name",
                        header.name
                    ),
                })?;
            headers.push(HeaderMatch {
                name,
                value: value(
                    header.kind,
                    &header.value,
                    format!("{at}.headers[{h}].value"),
                )?,
            });
        }
        let mut query = Vec::with_capacity(route_match.query_params.len());
        for (q, param) in route_match.query_params.iter().enumerate() {
            query.push(QueryMatch {
                name: param.name.clone(),
                value: value(
                    param.kind,
                    &param.value,
                    format!("{at}.queryParams[{q}].value"),
                )?,
            });
        }
        matches.push(RouteMatch {
            path,
            method: route_match
                .method
                .map(|m| Method::from_bytes(m.as_str().as_bytes()).expect("standard method")),
            headers,
            query,
        });
    }
    if matches.is_empty() {
        matches.push(RouteMatch::any());
    }
    Ok(matches)
}

/// The certificate for `hosts` in the `kubernetes.io/tls` Secret `secret_name` of the object's
/// namespace (or the last good one read from it), and the problem with it, if any, named
/// `at`. Route `spec.tls` and Ingress `spec.tls` both come here.
pub(crate) fn certificate(
    id: &NamespacedName,
    secret_name: &str,
    hosts: Vec<String>,
    at: &str,
    lookup: &mut Lookup<'_>,
) -> (Option<Arc<TlsCertificate>>, Option<RefProblem>) {
    let secret = NamespacedName::new(id.namespace.clone(), secret_name);
    let (served, problem) = lookup.tls_certificate(&secret);
    let problem = problem.map(|problem| {
        let kept = if served.is_some() {
            " (still serving the last good certificate from it)"
        } else {
            ""
        };
        RefProblem {
            reason: ResolvedRefsReason::InvalidCertificateRef,
            message: format!("{at}: Secret {secret} {problem}{kept}"),
        }
    });
    let certificate = served.map(|pair| {
        Arc::new(TlsCertificate {
            source: secret,
            hosts,
            chain_pem: pair.chain_pem,
            key_pem: pair.key_pem,
        })
    });
    (certificate, problem)
}

/// One backend of a rule: its Service port resolved, its TLS settings read; and the problem,
/// if its reference does not resolve.
pub(crate) fn translate_backend(
    id: &NamespacedName,
    backend: &weir_crds::Backend,
    at: &str,
    lookup: &mut Lookup<'_>,
) -> (RuleBackend, Option<RefProblem>) {
    let service = NamespacedName::new(id.namespace.clone(), backend.service.name.clone());
    let (protocol, mut endpoints, mut unresolved) =
        match lookup.service_port(&service, &backend.service.port) {
            Ok((protocol, endpoints)) => (protocol, endpoints, None),
            Err(unresolved) => (Default::default(), Vec::new(), Some(unresolved)),
        };
    let mut problem = match unresolved {
        None if endpoints.is_empty() => Some((
            ResolvedRefsReason::NoReadyEndpoints,
            format!("Service {service} has no ready endpoints"),
        )),
        None | Some(Unresolved::InvalidCertificateRef) => None,
        Some(Unresolved::BackendNotFound) => Some((
            ResolvedRefsReason::BackendNotFound,
            format!("Service {service} not found"),
        )),
        Some(Unresolved::PortNotFound) => Some((
            ResolvedRefsReason::PortNotFound,
            format!("Service {service} has no such port"),
        )),
    };
    let tls = backend.tls.as_ref().map(|tls| {
        let ca_pem = tls.ca_secret_name.as_ref().and_then(|name| {
            let secret = NamespacedName::new(id.namespace.clone(), name.clone());
            match lookup.ca_bundle(&secret) {
                Ok(pem) => Some(pem),
                Err(why) => {
                    // A backend that cannot be verified gets no request.
                    endpoints.clear();
                    unresolved = Some(Unresolved::InvalidCertificateRef);
                    problem = Some((
                        ResolvedRefsReason::InvalidCertificateRef,
                        format!("tls.caSecretName: Secret {secret} {why}"),
                    ));
                    None
                }
            }
        });
        Arc::new(UpstreamTls {
            server_name: tls.server_name.clone(),
            ca_pem,
        })
    });
    let rule_backend = RuleBackend {
        weight: backend.weight,
        filters: Vec::new(),
        backend: Backend::Service(ServiceBackend {
            service,
            protocol,
            tls,
            endpoints,
            unresolved,
        }),
    };
    let problem = problem.map(|(reason, message)| RefProblem {
        reason,
        message: format!("{at}: {message}"),
    });
    (rule_backend, problem)
}

/// Compiles a regex matched against a whole value; the error is one line.
pub fn anchored_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|error| one_line(&error.to_string()))
}

/// Folds a multi-line error (regex errors draw a caret diagram) into one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prefix `/api/` matches like `/api`; the root stays `/`.
pub(crate) fn normalise_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised_without_trailing_slash() {
        assert_eq!(normalise_prefix("/api/"), "/api");
        assert_eq!(normalise_prefix("/"), "/");
        assert_eq!(normalise_prefix("//"), "/");
    }

    #[test]
    fn regexes_are_anchored_and_their_errors_fit_on_one_line() {
        let regex = anchored_regex("/users/[0-9]+").unwrap();
        assert!(regex.is_match("/users/42"));
        assert!(!regex.is_match("/users/42/x"));
        let error = anchored_regex("/bad/(").unwrap_err();
        assert!(!error.contains('\n'), "{error}");
    }
}
