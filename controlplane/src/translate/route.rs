//! Weir's `Route` (`weir.dev/v1alpha1`) into contract routes.
//!
//! Validation is the CRD crate's ([`weir_crds::validate_route`]); this module adds what needs
//! the control plane: compiling regular expressions, normalising prefixes and header names,
//! and resolving each backend to its Service's ready endpoints.

use http::{HeaderName, Method};
use weir_contract::{
    AcceptedReason, Backend, HeaderMatch, NamespacedName, PathMatch, Route, RouteId, RouteKind,
    RouteMatch, Rule, RuleBackend, RulePolicy, ServiceBackend, Timeouts, ValueMatch,
};
use weir_crds::{PathMatchType, RouteSpec, parse_timeout, validate_route};

use super::Rejected;
use crate::resolve::Lookup;

/// Compiled regexes larger than this are refused rather than slowing every request.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Translates a Route's spec, with its backends resolved through `lookup`.
pub fn translate(
    id: &NamespacedName,
    spec: &RouteSpec,
    lookup: &mut Lookup<'_>,
) -> Result<Route, Rejected> {
    validate_route(spec).map_err(|invalid| Rejected {
        reason: AcceptedReason::Invalid,
        message: invalid.to_string(),
    })?;
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (r, rule) in spec.rules.iter().enumerate() {
        let mut matches = Vec::with_capacity(rule.matches.len().max(1));
        for (m, route_match) in rule.matches.iter().enumerate() {
            let path = match &route_match.path {
                None => PathMatch::Prefix("/".into()),
                Some(path) => match path.kind {
                    PathMatchType::Exact => PathMatch::Exact(path.value.clone()),
                    PathMatchType::PathPrefix => PathMatch::Prefix(normalise_prefix(&path.value)),
                    PathMatchType::RegularExpression => PathMatch::RegularExpression(
                        anchored_regex(&path.value).map_err(|error| Rejected {
                            reason: AcceptedReason::InvalidRegex,
                            message: format!("spec.rules[{r}].matches[{m}].path.value: {error}"),
                        })?,
                    ),
                },
            };
            let headers = route_match
                .headers
                .iter()
                .map(|header| HeaderMatch {
                    // Validation checked the name is a token; lowercased it is a header name.
                    name: HeaderName::from_bytes(header.name.to_ascii_lowercase().as_bytes())
                        .expect("validated header name"),
                    value: ValueMatch::Exact(header.value.clone()),
                })
                .collect();
            matches.push(RouteMatch {
                path,
                method: route_match
                    .method
                    .map(|m| Method::from_bytes(m.as_str().as_bytes()).expect("standard method")),
                headers,
                query: Vec::new(),
            });
        }
        if matches.is_empty() {
            matches.push(RouteMatch::any());
        }
        let backends = rule
            .backends
            .iter()
            .map(|backend| {
                let service =
                    NamespacedName::new(id.namespace.clone(), backend.service.name.clone());
                let (protocol, endpoints, unresolved) =
                    match lookup.service_port(&service, &backend.service.port) {
                        Ok((protocol, endpoints)) => (protocol, endpoints, None),
                        Err(unresolved) => (Default::default(), Vec::new(), Some(unresolved)),
                    };
                RuleBackend {
                    weight: backend.weight,
                    filters: Vec::new(),
                    backend: Backend::Service(ServiceBackend {
                        service,
                        protocol,
                        endpoints,
                        unresolved,
                    }),
                }
            })
            .collect();
        // Validation accepted the text, so it parses; `0s` means no timeout.
        let backend_request = rule
            .timeout
            .as_deref()
            .and_then(|text| parse_timeout(text).ok().flatten());
        rules.push(Rule {
            matches,
            filters: Vec::new(),
            backends,
            policy: RulePolicy {
                timeouts: Timeouts { backend_request },
            },
        });
    }
    Ok(Route {
        id: RouteId::new(RouteKind::Route, id.clone()),
        hosts: spec.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        rules,
    })
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
fn normalise_prefix(prefix: &str) -> String {
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
