//! One host level of the table: its rules' matches, ranked, behind a [`matchit`] router.
//!
//! Prefixes match whole segments: prefix `/api` is compiled to the router patterns `/api`,
//! `/api/` and `/api/{*rest}`, so `/apix` never reaches it. Each pattern's bucket also holds
//! the candidates of every shorter prefix above it, so a longer prefix whose method, headers
//! or query do not match falls back to the shorter one without a second lookup. Regular
//! expressions are tried after both.
//!
//! Precedence, best first, is Gateway API HTTPRoute's: Exact path, then the longest prefix,
//! then a method match, then the most header matches, then the most query matches, then route
//! order (`namespace/name`) and rule and match order.

use std::{collections::BTreeMap, sync::Arc};

use http::{HeaderMap, Method};
use weir_contract::{HeaderMatch, PathMatch, QueryMatch, Route, RouteMatch};

use super::{TableCompiler, target::RuleTarget};

/// What the matching of a request needs to know of it.
pub(super) struct RequestFacts<'r> {
    pub method: &'r Method,
    pub path: &'r str,
    pub query: Option<&'r str>,
    pub headers: &'r HeaderMap,
}

/// The rules reachable under one host level.
#[derive(Default)]
pub(super) struct HostRoutes {
    paths: matchit::Router<usize>,
    /// Candidates per router pattern, best first.
    buckets: Vec<Vec<Candidate>>,
    /// Regular-expression candidates, best first.
    regexes: Vec<(regex::Regex, Candidate)>,
    /// The routes it was built from, in order. The control plane hands an unchanged route
    /// over as the same `Arc`, so the next table reuses this level when the list is the same.
    built_from: Vec<Arc<Route>>,
}

/// One match of one rule: the checks left after the path, and the target.
#[derive(Clone)]
struct Candidate {
    method: Option<Method>,
    headers: Box<[HeaderMatch]>,
    query: Box<[QueryMatch]>,
    /// The prefix, for a prefix match: what a `ReplacePrefixMatch` replaces.
    prefix: Option<Arc<str>>,
    target: Arc<RuleTarget>,
}

/// The rule a request matched, and the prefix it matched by (if by a prefix).
pub struct Matched<'t> {
    pub target: &'t Arc<RuleTarget>,
    pub prefix: Option<&'t str>,
}

impl Candidate {
    fn new(route_match: &RouteMatch, target: Arc<RuleTarget>) -> Self {
        Self {
            method: route_match.method.clone(),
            headers: route_match.headers.clone().into(),
            query: route_match.query.clone().into(),
            prefix: match &route_match.path {
                PathMatch::Prefix(prefix) => Some(prefix.as_str().into()),
                _ => None,
            },
            target,
        }
    }

    fn matched(&self) -> Matched<'_> {
        Matched {
            target: &self.target,
            prefix: self.prefix.as_deref(),
        }
    }

    #[inline]
    fn accepts(&self, request: &RequestFacts<'_>) -> bool {
        self.method.as_ref().is_none_or(|m| m == request.method)
            && self.headers.iter().all(|header| {
                request
                    .headers
                    .get_all(&header.name)
                    .iter()
                    .any(|v| header.value.matches(v.as_bytes()))
            })
            && (self.query.is_empty() || query_accepts(&self.query, request.query))
    }
}

/// Whether every query match finds a parameter of its name whose (percent-decoded) value
/// matches. With a parameter given twice, the first counts, as Gateway API recommends.
fn query_accepts(matches: &[QueryMatch], query: Option<&str>) -> bool {
    let query = query.unwrap_or_default();
    matches.iter().all(|wanted| {
        query
            .split('&')
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(name) == wanted.name.as_bytes()).then(|| percent_decode(value))
            })
            .next()
            .is_some_and(|value| wanted.value.matches(&value))
    })
}

/// `%XX` escapes and `+` (a space in form encoding) decoded; anything malformed kept as is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    decoded.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => decoded.push(b'%'),
            },
            b'+' => decoded.push(b' '),
            other => decoded.push(other),
        }
        i += 1;
    }
    decoded
}

/// Path kind, path length (longer first), no method, header count (more first), query count
/// (more first), declaration order.
type Precedence = (
    u8,
    std::cmp::Reverse<usize>,
    bool,
    std::cmp::Reverse<usize>,
    std::cmp::Reverse<usize>,
    (usize, usize, usize),
);

/// A candidate with everything its precedence depends on.
#[derive(Clone)]
struct RankedMatch {
    path: PathMatch,
    candidate: Candidate,
    /// Ties after method, headers and query go to route order, then rule and match order.
    order: (usize, usize, usize),
}

impl RankedMatch {
    /// Sort key, smallest first.
    fn precedence(&self) -> Precedence {
        let (kind, length) = match &self.path {
            PathMatch::Exact(p) => (0, p.len()),
            PathMatch::Prefix(p) => (1, p.len()),
            PathMatch::RegularExpression(_) => (2, 0),
        };
        (
            kind,
            std::cmp::Reverse(length),
            self.candidate.method.is_none(),
            std::cmp::Reverse(self.candidate.headers.len()),
            std::cmp::Reverse(self.candidate.query.len()),
            self.order,
        )
    }
}

fn rank_route(route: &Route, route_order: usize, compiler: &TableCompiler) -> Vec<RankedMatch> {
    let mut ranked = Vec::new();
    for (rule_index, rule) in route.rules.iter().enumerate() {
        let target = Arc::new(RuleTarget::build(route, rule_index, rule, compiler));
        for (match_index, route_match) in rule.matches.iter().enumerate() {
            ranked.push(RankedMatch {
                path: route_match.path.clone(),
                candidate: Candidate::new(route_match, target.clone()),
                order: (route_order, rule_index, match_index),
            });
        }
    }
    ranked
}

impl HostRoutes {
    pub(super) fn build(routes: &[&Arc<Route>], compiler: &TableCompiler) -> Self {
        let mut matches: Vec<RankedMatch> = routes
            .iter()
            .enumerate()
            .flat_map(|(order, route)| rank_route(route, order, compiler))
            .collect();
        matches.sort_by_key(RankedMatch::precedence);
        let prefixes: Vec<(&str, &Candidate)> = matches
            .iter()
            .filter_map(|m| match &m.path {
                PathMatch::Prefix(p) => Some((p.as_str(), &m.candidate)),
                _ => None,
            })
            .collect();

        // Router pattern → (the literal path it stands for, exact candidates on it).
        let mut patterns: BTreeMap<String, (String, Vec<&Candidate>)> = BTreeMap::new();
        let mut regexes = Vec::new();
        for m in &matches {
            match &m.path {
                PathMatch::Exact(path) => patterns
                    .entry(path.clone())
                    .or_insert_with(|| (path.clone(), Vec::new()))
                    .1
                    .push(&m.candidate),
                PathMatch::Prefix(prefix) => {
                    for pattern in prefix_patterns(prefix) {
                        patterns
                            .entry(pattern)
                            .or_insert_with(|| (prefix.clone(), Vec::new()));
                    }
                }
                PathMatch::RegularExpression(regex) => {
                    regexes.push((regex.clone(), m.candidate.clone()))
                }
            }
        }

        let mut host_routes = Self {
            regexes,
            built_from: routes.iter().map(|route| Arc::clone(route)).collect(),
            ..Self::default()
        };
        for (pattern, (literal, exact)) in patterns {
            // Exact candidates come first (they sort first), then every prefix covering the path.
            let mut bucket: Vec<Candidate> = exact.into_iter().cloned().collect();
            bucket.extend(
                prefixes
                    .iter()
                    .filter(|(prefix, _)| covers(prefix, &literal))
                    .map(|(_, c)| (*c).clone()),
            );
            let index = host_routes.buckets.len();
            // Validation keeps router syntax out of paths, so an insert cannot fail; if it
            // ever did, the pattern is skipped rather than the whole table lost.
            if let Err(error) = host_routes.paths.insert(pattern.clone(), index) {
                tracing::error!(%pattern, %error, "path pattern skipped");
                continue;
            }
            host_routes.buckets.push(bucket);
        }
        host_routes
    }

    #[inline]
    pub(super) fn find(&self, request: &RequestFacts<'_>) -> Option<Matched<'_>> {
        if let Ok(matched) = self.paths.at(request.path)
            && let Some(candidate) = self.buckets[*matched.value]
                .iter()
                .find(|c| c.accepts(request))
        {
            return Some(candidate.matched());
        }
        self.regexes
            .iter()
            .find(|(regex, c)| regex.is_match(request.path) && c.accepts(request))
            .map(|(_, c)| c.matched())
    }

    /// The compiled target of rule `rule` of the route shown as `route`, if this level has it.
    pub(super) fn target(&self, route: &str, rule: usize) -> Option<&Arc<RuleTarget>> {
        self.buckets
            .iter()
            .flatten()
            .chain(self.regexes.iter().map(|(_, c)| c))
            .map(|c| &c.target)
            .find(|t| &*t.route == route && t.rule_index == rule)
    }

    /// How many routes this level was built from.
    #[cfg(test)]
    pub(super) fn routes_built_from(&self) -> usize {
        self.built_from.len()
    }

    /// Whether this level was built from exactly `routes`: the same route values, by
    /// pointer, in the same order.
    pub(super) fn built_from_same(&self, routes: &[&Arc<Route>]) -> bool {
        self.built_from.len() == routes.len()
            && self
                .built_from
                .iter()
                .zip(routes)
                .all(|(b, n)| Arc::ptr_eq(b, n))
    }
}

/// The router patterns that together match a prefix segment-wise.
fn prefix_patterns(prefix: &str) -> Vec<String> {
    if prefix == "/" {
        vec!["/".into(), "/{*rest}".into()]
    } else {
        vec![
            prefix.into(),
            format!("{prefix}/"),
            format!("{prefix}/{{*rest}}"),
        ]
    }
}

/// Whether prefix `prefix` (normalised, no trailing slash) matches `path` segment-wise.
pub fn covers(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_contract::ValueMatch;

    fn query_match(name: &str, value: ValueMatch) -> QueryMatch {
        QueryMatch {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn query_matches_decode_values_and_take_the_first_of_a_repeated_name() {
        let debug = [query_match("debug", ValueMatch::Exact("1".into()))];
        assert!(query_accepts(&debug, Some("a=2&debug=1")));
        assert!(query_accepts(&debug, Some("debug=%31")));
        assert!(!query_accepts(&debug, Some("debug=2&debug=1")));
        assert!(!query_accepts(&debug, Some("nodebug=1")));
        assert!(!query_accepts(&debug, None));
        let spaced = [query_match("q", ValueMatch::Exact("a b".into()))];
        assert!(query_accepts(&spaced, Some("q=a+b")));
        assert!(query_accepts(&spaced, Some("q=a%20b")));
        let present = [query_match("flag", ValueMatch::Present)];
        assert!(query_accepts(&present, Some("flag")));
    }

    #[test]
    fn malformed_escapes_are_kept_as_written() {
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz"), b"%zz");
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("%41"), b"A");
    }
}
