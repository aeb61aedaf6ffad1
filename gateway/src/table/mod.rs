//! The routing table: a compiled, immutable form of a [`Snapshot`], and the one place a
//! request is matched to a rule.
//!
//! Lookup is host first (exact name, then wildcard suffixes longest first, then Routes for any
//! host), then path through a [`matchit`] router per host, then method and header checks over
//! the few candidates that path leaves, in Gateway API precedence order: Exact path, longest
//! prefix, method, most header matches, then Route name and rule order. Regular-expression
//! paths are tried after both. A host level whose candidates all fail falls through to the
//! next, less specific level.
//!
//! Prefixes match whole segments: prefix `/api` is compiled to the router patterns `/api`,
//! `/api/` and `/api/{*rest}`, so `/apix` never reaches it. Each pattern's bucket also holds
//! the candidates of every shorter prefix above it, so a longer prefix whose method or
//! headers do not match falls back to the shorter one without a second lookup.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use weir_controlplane::snapshot::{MatchSnapshot, PathRule, RouteSnapshot, Snapshot};

use crate::{
    balance::{BackendEndpoints, Balancer},
    metrics::{Metrics, RouteMetrics},
};

/// What a matched request is sent to: one rule of one Route.
#[derive(Debug)]
pub struct RuleTarget {
    /// `namespace/name` of the Route.
    pub route: Arc<str>,
    pub rule_index: usize,
    pub timeout: Option<Duration>,
    pub balancer: Balancer,
    pub metrics: RouteMetrics,
}

/// A compiled table. Built once, read by many requests, never changed.
pub struct RoutingTable {
    pub generation: u64,
    /// The snapshot this table was compiled from, for `/debug/routes`.
    pub snapshot: Arc<Snapshot>,
    exact_hosts: HashMap<Box<str>, Arc<HostRoutes>>,
    /// Keyed by the suffix with its leading dot: `*.example.com` → `.example.com`.
    wildcard_hosts: HashMap<Box<str>, Arc<HostRoutes>>,
    any_host: Option<Arc<HostRoutes>>,
    /// Recorded for requests that match no rule.
    pub unmatched_metrics: RouteMetrics,
}

/// The rules reachable under one host level.
#[derive(Default)]
struct HostRoutes {
    paths: matchit::Router<usize>,
    /// Candidates per router pattern, best first.
    buckets: Vec<Vec<Candidate>>,
    /// Regular-expression candidates, best first.
    regexes: Vec<(regex::Regex, Candidate)>,
    /// The Routes it was built from, in order. The reconciler hands an unchanged Route over
    /// as the same `Arc`, so the next table reuses this level when the list is the same.
    built_from: Vec<Arc<RouteSnapshot>>,
}

/// One match of one rule: the checks left after the path, and the target.
#[derive(Clone)]
struct Candidate {
    method: Option<Method>,
    headers: Box<[(HeaderName, HeaderValue)]>,
    target: Arc<RuleTarget>,
}

impl Candidate {
    fn accepts(&self, method: &Method, headers: &HeaderMap) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self
                .headers
                .iter()
                .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
    }
}

impl RoutingTable {
    /// A table with no routes, served until the first snapshot arrives.
    pub fn empty(metrics: &Metrics) -> Self {
        Self {
            generation: 0,
            snapshot: Arc::default(),
            exact_hosts: HashMap::new(),
            wildcard_hosts: HashMap::new(),
            any_host: None,
            unmatched_metrics: metrics.route_metrics(""),
        }
    }

    /// Compiles a snapshot. Every value in it was validated by the control plane.
    ///
    /// Host levels whose Routes are unchanged since `previous` are taken over from it, so a
    /// change costs work in proportion to the hosts it touches, not to the table's size.
    pub fn compile(
        snapshot: Arc<Snapshot>,
        metrics: &Metrics,
        previous: Option<&RoutingTable>,
    ) -> Self {
        let mut exact: HashMap<&str, Vec<&Arc<RouteSnapshot>>> = HashMap::new();
        let mut wildcard: HashMap<&str, Vec<&Arc<RouteSnapshot>>> = HashMap::new();
        let mut any = Vec::new();
        for route in &snapshot.routes {
            if route.hosts.is_empty() {
                any.push(route);
            }
            for host in &route.hosts {
                match host.strip_prefix('*') {
                    Some(suffix) => wildcard.entry(suffix).or_default().push(route),
                    None => exact.entry(host.as_str()).or_default().push(route),
                }
            }
        }

        let level =
            |routes: Vec<&Arc<RouteSnapshot>>, before: Option<&Arc<HostRoutes>>| match before {
                Some(before) if same_routes(&before.built_from, &routes) => before.clone(),
                _ => Arc::new(HostRoutes::build(&routes, metrics)),
            };
        Self {
            generation: snapshot.generation,
            exact_hosts: exact
                .into_iter()
                .map(|(host, routes)| {
                    (
                        host.into(),
                        level(routes, previous.and_then(|p| p.exact_hosts.get(host))),
                    )
                })
                .collect(),
            wildcard_hosts: wildcard
                .into_iter()
                .map(|(suffix, routes)| {
                    (
                        suffix.into(),
                        level(routes, previous.and_then(|p| p.wildcard_hosts.get(suffix))),
                    )
                })
                .collect(),
            any_host: (!any.is_empty())
                .then(|| level(any, previous.and_then(|p| p.any_host.as_ref()))),
            unmatched_metrics: metrics.route_metrics(""),
            snapshot,
        }
    }

    /// Finds the rule for a request; `None` means 404.
    ///
    /// `host` is the Host header or authority as sent (any case, maybe with a port).
    pub fn find(
        &self,
        host: &str,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<&Arc<RuleTarget>> {
        let host = strip_port(host);
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let host = host.strip_suffix('.').unwrap_or(host);

        if let Some(found) = self
            .exact_hosts
            .get(host)
            .and_then(|r| r.find(method, path, headers))
        {
            return Some(found);
        }
        if !self.wildcard_hosts.is_empty() {
            // Longest suffix first: for a.b.example.com try .b.example.com, then .example.com, ...
            for (dot, _) in host.match_indices('.') {
                let found = self
                    .wildcard_hosts
                    .get(&host[dot..])
                    .and_then(|r| r.find(method, path, headers));
                if found.is_some() {
                    return found;
                }
            }
        }
        self.any_host
            .as_ref()
            .and_then(|r| r.find(method, path, headers))
    }

    /// How many rules the table serves, for logs.
    pub fn route_count(&self) -> usize {
        self.snapshot.routes.len()
    }
}

/// `Host` may carry a port (`example.com:8080`, `[::1]:8080`).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Path kind, path length (longer first), no method, header count (more first), declaration order.
type Precedence = (
    u8,
    std::cmp::Reverse<usize>,
    bool,
    std::cmp::Reverse<usize>,
    (usize, usize, usize),
);

/// A candidate with everything its precedence depends on.
#[derive(Clone)]
struct RankedMatch {
    path: PathRule,
    candidate: Candidate,
    /// Ties after method and headers go to Route order, then rule and match order.
    order: (usize, usize, usize),
}

impl RankedMatch {
    /// Sort key, smallest first: Exact before Prefix before regex, longer prefixes first,
    /// then method matches, then more header matches, then declaration order.
    fn precedence(&self) -> Precedence {
        let (kind, length) = match &self.path {
            PathRule::Exact(p) => (0, p.len()),
            PathRule::Prefix(p) => (1, p.len()),
            PathRule::RegularExpression(_) => (2, 0),
        };
        (
            kind,
            std::cmp::Reverse(length),
            self.candidate.method.is_none(),
            std::cmp::Reverse(self.candidate.headers.len()),
            self.order,
        )
    }
}

fn rank_route(route: &RouteSnapshot, route_order: usize, metrics: &Metrics) -> Vec<RankedMatch> {
    let route_name: Arc<str> = route.id.to_string().into();
    let mut ranked = Vec::new();
    for (rule_index, rule) in route.rules.iter().enumerate() {
        let backends = rule
            .backends
            .iter()
            .map(|b| {
                (
                    BackendEndpoints::new(b.service.to_string().into(), &b.endpoints),
                    b.weight,
                )
            })
            .collect();
        let target = Arc::new(RuleTarget {
            route: route_name.clone(),
            rule_index,
            timeout: rule.timeout,
            balancer: Balancer::new(backends),
            metrics: metrics.route_metrics(&route_name),
        });
        for (match_index, route_match) in rule.matches.iter().enumerate() {
            ranked.push(RankedMatch {
                path: route_match.path.clone(),
                candidate: candidate(route_match, target.clone()),
                order: (route_order, rule_index, match_index),
            });
        }
    }
    ranked
}

fn candidate(route_match: &MatchSnapshot, target: Arc<RuleTarget>) -> Candidate {
    Candidate {
        method: route_match
            .method
            .map(|m| Method::from_bytes(m.as_str().as_bytes()).expect("standard method")),
        headers: route_match
            .headers
            .iter()
            .filter_map(|h| {
                Some((
                    HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                    HeaderValue::from_str(&h.value).ok()?,
                ))
            })
            .collect(),
        target,
    }
}

impl HostRoutes {
    fn build(routes: &[&Arc<RouteSnapshot>], metrics: &Metrics) -> Self {
        let mut matches: Vec<RankedMatch> = routes
            .iter()
            .enumerate()
            .flat_map(|(order, route)| rank_route(route, order, metrics))
            .collect();
        matches.sort_by_key(RankedMatch::precedence);
        let prefixes: Vec<(&str, &Candidate)> = matches
            .iter()
            .filter_map(|m| match &m.path {
                PathRule::Prefix(p) => Some((p.as_str(), &m.candidate)),
                _ => None,
            })
            .collect();

        // Router pattern → (the literal path it stands for, exact candidates on it).
        let mut patterns: BTreeMap<String, (String, Vec<&Candidate>)> = BTreeMap::new();
        let mut regexes = Vec::new();
        for m in &matches {
            match &m.path {
                PathRule::Exact(path) => patterns
                    .entry(path.clone())
                    .or_insert_with(|| (path.clone(), Vec::new()))
                    .1
                    .push(&m.candidate),
                PathRule::Prefix(prefix) => {
                    for pattern in prefix_patterns(prefix) {
                        patterns
                            .entry(pattern)
                            .or_insert_with(|| (prefix.clone(), Vec::new()));
                    }
                }
                PathRule::RegularExpression(regex) => {
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

    fn find(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<&Arc<RuleTarget>> {
        if let Ok(matched) = self.paths.at(path)
            && let Some(candidate) = self.buckets[*matched.value]
                .iter()
                .find(|c| c.accepts(method, headers))
        {
            return Some(&candidate.target);
        }
        self.regexes
            .iter()
            .find(|(regex, c)| regex.is_match(path) && c.accepts(method, headers))
            .map(|(_, c)| &c.target)
    }
}

/// Whether a level built from `before` serves exactly `now`: the same Route snapshots, by
/// pointer, in the same order.
fn same_routes(before: &[Arc<RouteSnapshot>], now: &[&Arc<RouteSnapshot>]) -> bool {
    before.len() == now.len() && before.iter().zip(now).all(|(b, n)| Arc::ptr_eq(b, n))
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
    use proptest::prelude::*;
    use weir_controlplane::{
        NamespacedName,
        snapshot::{BackendSnapshot, RuleSnapshot},
    };
    use weir_crds::{HeaderMatch, HttpMethod};

    /// A rule whose single backend's port tells tests which rule answered.
    fn rule(
        path: PathRule,
        method: Option<HttpMethod>,
        headers: &[(&str, &str)],
        tag: u16,
    ) -> RuleSnapshot {
        RuleSnapshot {
            matches: vec![MatchSnapshot {
                path,
                method,
                headers: headers
                    .iter()
                    .map(|(n, v)| HeaderMatch {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
            }],
            backends: vec![BackendSnapshot {
                service: NamespacedName::new("default", "svc"),
                weight: 1,
                endpoints: vec![([127, 0, 0, 1], tag).into()],
                unresolved: None,
            }],
            timeout: None,
        }
    }

    fn prefix(p: &str) -> PathRule {
        PathRule::Prefix(p.into())
    }

    fn exact(p: &str) -> PathRule {
        PathRule::Exact(p.into())
    }

    fn table(routes: Vec<(&str, &[&str], Vec<RuleSnapshot>)>) -> RoutingTable {
        let routes = routes
            .into_iter()
            .map(|(name, hosts, rules)| RouteSnapshot {
                id: NamespacedName::new("default", name),
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                rules,
            })
            .map(Arc::new)
            .collect();
        let snapshot = Snapshot {
            generation: 1,
            routes,
            ..Default::default()
        };
        RoutingTable::compile(Arc::new(snapshot), &Metrics::default(), None)
    }

    /// The tag of the rule that answers, or 0 for 404.
    fn answer(
        table: &RoutingTable,
        host: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> u16 {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        table
            .find(host, &method, path, &map)
            .and_then(|t| t.balancer.pick())
            .map_or(0, |(_, e)| e.address.port())
    }

    fn get(table: &RoutingTable, host: &str, path: &str) -> u16 {
        answer(table, host, Method::GET, path, &[])
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        let t = table(vec![("r", &[], vec![rule(prefix("/api"), None, &[], 1)])]);
        for path in ["/api", "/api/", "/api/x", "/api/x/y"] {
            assert_eq!(get(&t, "h", path), 1, "{path}");
        }
        for path in ["/apix", "/ap", "/", "/other/api"] {
            assert_eq!(get(&t, "h", path), 0, "{path}");
        }
    }

    #[test]
    fn longest_prefix_wins_and_exact_beats_prefix() {
        let t = table(vec![(
            "r",
            &[],
            vec![
                rule(prefix("/"), None, &[], 1),
                rule(prefix("/api"), None, &[], 2),
                rule(prefix("/api/v1"), None, &[], 3),
                rule(exact("/api/v1"), None, &[], 4),
            ],
        )]);
        assert_eq!(get(&t, "h", "/"), 1);
        assert_eq!(get(&t, "h", "/apix"), 1);
        assert_eq!(get(&t, "h", "/api/v2"), 2);
        assert_eq!(get(&t, "h", "/api/v1x"), 2);
        assert_eq!(get(&t, "h", "/api/v1/"), 3);
        assert_eq!(get(&t, "h", "/api/v1"), 4);
    }

    #[test]
    fn exact_host_before_wildcard_before_any_host() {
        let t = table(vec![
            ("any", &[], vec![rule(prefix("/"), None, &[], 1)]),
            (
                "wild",
                &["*.example.com"],
                vec![rule(prefix("/"), None, &[], 2)],
            ),
            (
                "deep",
                &["*.b.example.com"],
                vec![rule(prefix("/"), None, &[], 3)],
            ),
            (
                "exact",
                &["a.example.com"],
                vec![rule(prefix("/"), None, &[], 4)],
            ),
        ]);
        assert_eq!(get(&t, "a.example.com", "/"), 4);
        assert_eq!(
            get(&t, "A.Example.COM:8080", "/"),
            4,
            "case and port are ignored"
        );
        assert_eq!(get(&t, "x.example.com", "/"), 2);
        assert_eq!(
            get(&t, "x.b.example.com", "/"),
            3,
            "longest wildcard suffix wins"
        );
        assert_eq!(
            get(&t, "example.com", "/"),
            1,
            "a wildcard never matches its own suffix"
        );
        assert_eq!(get(&t, "other", "/"), 1);
    }

    #[test]
    fn a_host_level_that_does_not_match_falls_through_to_the_next() {
        let t = table(vec![
            (
                "exact",
                &["echo.local"],
                vec![rule(prefix("/api"), None, &[], 1)],
            ),
            ("any", &[], vec![rule(prefix("/"), None, &[], 2)]),
        ]);
        assert_eq!(get(&t, "echo.local", "/api/x"), 1);
        assert_eq!(get(&t, "echo.local", "/other"), 2);
    }

    #[test]
    fn method_then_header_count_break_ties_on_the_same_path() {
        let t = table(vec![(
            "r",
            &[],
            vec![
                rule(prefix("/p"), None, &[], 1),
                rule(prefix("/p"), None, &[("x-canary", "1")], 2),
                rule(prefix("/p"), None, &[("x-canary", "1"), ("x-user", "a")], 3),
                rule(prefix("/p"), Some(HttpMethod::Post), &[], 4),
            ],
        )]);
        assert_eq!(answer(&t, "h", Method::GET, "/p", &[]), 1);
        assert_eq!(answer(&t, "h", Method::GET, "/p", &[("x-canary", "1")]), 2);
        assert_eq!(
            answer(
                &t,
                "h",
                Method::GET,
                "/p",
                &[("x-canary", "1"), ("x-user", "a")]
            ),
            3
        );
        assert_eq!(
            answer(&t, "h", Method::POST, "/p", &[("x-canary", "1")]),
            4,
            "method before headers"
        );
        assert_eq!(answer(&t, "h", Method::GET, "/p", &[("x-canary", "2")]), 1);
    }

    #[test]
    fn a_longer_prefix_that_rejects_the_method_falls_back_to_a_shorter_one() {
        let t = table(vec![(
            "r",
            &[],
            vec![
                rule(prefix("/api"), None, &[], 1),
                rule(prefix("/api/admin"), Some(HttpMethod::Get), &[], 2),
            ],
        )]);
        assert_eq!(answer(&t, "h", Method::GET, "/api/admin/x", &[]), 2);
        assert_eq!(answer(&t, "h", Method::DELETE, "/api/admin/x", &[]), 1);
    }

    #[test]
    fn regular_expressions_match_the_whole_path_after_exact_and_prefix() {
        let regex = PathRule::RegularExpression(regex::Regex::new("^(?:/users/[0-9]+)$").unwrap());
        let t = table(vec![(
            "r",
            &[],
            vec![
                rule(regex, None, &[], 1),
                rule(prefix("/users/admin"), None, &[], 2),
            ],
        )]);
        assert_eq!(get(&t, "h", "/users/42"), 1);
        assert_eq!(get(&t, "h", "/users/42/x"), 0);
        assert_eq!(get(&t, "h", "/users/admin"), 2);
    }

    #[test]
    fn equal_rules_go_to_the_first_route_in_name_order() {
        let t = table(vec![
            ("a", &[], vec![rule(prefix("/"), None, &[], 1)]),
            ("b", &[], vec![rule(prefix("/"), None, &[], 2)]),
        ]);
        assert_eq!(get(&t, "h", "/"), 1);
    }

    #[test]
    fn unchanged_host_levels_are_reused_by_the_next_table() {
        let route = |name: &str, host: &str, tag| {
            Arc::new(RouteSnapshot {
                id: NamespacedName::new("default", name),
                hosts: vec![host.to_string()],
                rules: vec![rule(prefix("/"), None, &[], tag)],
            })
        };
        let snapshot = |routes: Vec<Arc<RouteSnapshot>>| {
            Arc::new(Snapshot {
                generation: 1,
                routes,
                ..Default::default()
            })
        };
        let metrics = Metrics::default();
        let (a, b) = (route("a", "a.local", 1), route("b", "b.local", 2));
        let first = RoutingTable::compile(snapshot(vec![a.clone(), b.clone()]), &metrics, None);
        let b_changed = route("b", "b.local", 3);
        let second = RoutingTable::compile(snapshot(vec![a, b_changed]), &metrics, Some(&first));
        assert!(Arc::ptr_eq(
            &first.exact_hosts["a.local"],
            &second.exact_hosts["a.local"]
        ));
        assert!(!Arc::ptr_eq(
            &first.exact_hosts["b.local"],
            &second.exact_hosts["b.local"]
        ));
        assert_eq!(get(&second, "b.local", "/"), 3);
    }

    #[test]
    fn strips_ports_from_hosts() {
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    /// The reference: the best-ranked rule whose path matches, found by brute force.
    fn reference(rules: &[(PathRule, u16)], path: &str) -> u16 {
        let mut ranked: Vec<(u8, std::cmp::Reverse<usize>, usize, u16)> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, (rule, tag))| match rule {
                PathRule::Exact(p) if p == path => Some((0, std::cmp::Reverse(p.len()), i, *tag)),
                PathRule::Prefix(p) if covers(p, path) => {
                    Some((1, std::cmp::Reverse(p.len()), i, *tag))
                }
                _ => None,
            })
            .collect();
        ranked.sort();
        ranked.first().map_or(0, |r| r.3)
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("ab".to_string()),
            Just("b".to_string()),
            Just("".to_string())
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        proptest::collection::vec(segment(), 0..4).prop_map(|s| format!("/{}", s.join("/")))
    }

    fn path_rule() -> impl Strategy<Value = PathRule> {
        (path(), any::<bool>()).prop_map(|(p, is_exact)| {
            if is_exact {
                PathRule::Exact(p)
            } else {
                let trimmed = p.trim_end_matches('/');
                PathRule::Prefix(if trimmed.is_empty() {
                    "/".into()
                } else {
                    trimmed.into()
                })
            }
        })
    }

    proptest! {
        /// Whatever the mix of Exact and Prefix rules, the router picks what brute force picks.
        #[test]
        fn router_agrees_with_brute_force(rules in proptest::collection::vec(path_rule(), 1..8), paths in proptest::collection::vec(path(), 1..16)) {
            let tagged: Vec<(PathRule, u16)> = rules.into_iter().enumerate().map(|(i, r)| (r, i as u16 + 1)).collect();
            let t = table(vec![("r", &[], tagged.iter().map(|(r, tag)| rule(r.clone(), None, &[], *tag)).collect())]);
            for path in paths {
                prop_assert_eq!(get(&t, "h", &path), reference(&tagged, &path), "path {}", path);
            }
        }

        /// A prefix covers exactly the paths equal to it or below it by whole segments.
        #[test]
        fn covers_is_segment_wise(prefix in path(), rest in path()) {
            let prefix = prefix.trim_end_matches('/').to_string();
            prop_assume!(!prefix.is_empty());
            let below = format!("{prefix}{rest}");
            prop_assert!(covers(&prefix, &below));
            let glued = format!("{prefix}x");
            prop_assert!(!covers(&prefix, &glued));
        }
    }
}
