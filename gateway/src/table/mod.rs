//! The routing table: a compiled, immutable form of a [`Snapshot`], and the one place a
//! request is matched to a rule.
//!
//! A table holds one `HostTable` (`hosts`) per scope ([`RouteScope`]): the routes of the
//! command line's sockets (those that name no listener: Routes and Ingresses), and, for each
//! address among the snapshot's listeners, the routes attached to a listener there. A
//! connection knows its scope from the socket it came in on, so a request is only ever matched
//! among the routes of its own socket; the command line's scope is a field of the table, not an
//! entry of a map, so its lookups cost what they did before listeners existed.
//!
//! Within a scope, lookup is host first (exact name, then wildcard suffixes longest first, then
//! routes for any host), then path through a [`matchit`] router per host ([`paths`]), then
//! method, header and query checks over the few candidates that path leaves, in Gateway API
//! precedence order. A host level whose candidates all fail falls through to the next, less
//! specific level. What a matched request is sent to is a [`RuleTarget`] ([`target`]): one
//! rule's filters, policy and balancer, and handles on its long-lived state.
//!
//! Tables are built by a [`TableCompiler`], which owns the state that outlives them
//! ([`crate::state`]): metric series and balancer cursors are looked up by route and rule
//! identity, so a swap for an unrelated change neither resets nor duplicates them.

mod hosts;
mod paths;
mod target;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::Arc,
};

use http::{HeaderMap, Method};
use tokio::sync::watch;
use weir_contract::{
    EjectedProviders, OutlierDetection, Protocol, RateLimit, RetryBudget, Route, RouteId, Snapshot,
    UpstreamTls,
};

use crate::{
    ai::{AiIndex, AiState, TlsConnectors},
    balance::{BalancerCursor, EndpointLoad},
    metrics::{Metrics, RouteMetrics},
    policy::{outlier::EndpointHealth, ratelimit::RuleRateLimiter, retry::RetryBudgetState},
    state::StateMap,
    upstream::{
        TargetAddress,
        tls::{TlsConnectorConfig, UpstreamTlsError},
    },
};
use hosts::HostTable;
pub use paths::{Matched, covers};
pub use target::{RouteState, RuleTarget};

/// Which routes a connection is served: fixed when it is accepted, by the socket it came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteScope {
    /// The command line's sockets: routes that name no listener (Routes, Ingresses), and the
    /// AI gateway.
    CommandLine,
    /// The socket of the snapshot's listeners on this address: the routes attached to them.
    Socket(SocketAddr),
}

/// A compiled table. Built once, read by many requests, never changed.
pub struct RoutingTable {
    pub generation: u64,
    /// The snapshot this table was compiled from, for `/debug/routes`.
    pub snapshot: Arc<Snapshot>,
    /// The routes of the command line's sockets.
    command_line: HostTable,
    /// The routes of each snapshot listener socket, sorted by address: a handful, searched
    /// only by requests that came in on one.
    sockets: Box<[(SocketAddr, HostTable)]>,
    /// Recorded for requests that match no rule.
    unmatched: Arc<RouteState>,
    /// The AI gateway's models and keys; `None` when there are no models.
    ai: Option<Arc<AiIndex>>,
}

/// Builds routing tables, and keeps the state that outlives each of them.
pub struct TableCompiler {
    metrics: Metrics,
    routes: StateMap<RouteId, RouteState>,
    cursors: StateMap<(RouteId, usize), BalancerCursor>,
    mirror_cursors: StateMap<(RouteId, usize, usize), BalancerCursor>,
    /// TLS connectors by what they are made of, so equal backends share one (and its
    /// sessions) across tables.
    tls_connectors: StateMap<(UpstreamTls, Protocol), TlsConnectorConfig>,
    /// Requests in flight per endpoint, shared by every rule.
    endpoint_loads: StateMap<TargetAddress, EndpointLoad>,
    /// Endpoint health per rule and backend under outlier detection.
    endpoint_healths: StateMap<(RouteId, usize, usize, TargetAddress), EndpointHealth>,
    rate_limiters: StateMap<(RouteId, usize), RuleRateLimiter>,
    retry_budgets: StateMap<(RouteId, usize), RetryBudgetState>,
    unmatched: Arc<RouteState>,
    ai_state: AiState,
}

impl TableCompiler {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            unmatched: Arc::new(RouteState::new(metrics.route_metrics(""))),
            metrics,
            routes: StateMap::default(),
            cursors: StateMap::default(),
            mirror_cursors: StateMap::default(),
            tls_connectors: StateMap::default(),
            endpoint_loads: StateMap::default(),
            endpoint_healths: StateMap::default(),
            rate_limiters: StateMap::default(),
            retry_budgets: StateMap::default(),
            ai_state: AiState::default(),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The AI providers ejected after consecutive failures, now and as they change.
    pub fn ejected_providers(&self) -> watch::Receiver<EjectedProviders> {
        self.ai_state.ejected_providers()
    }

    /// A table with no routes, served until the first snapshot arrives.
    pub fn empty(&self) -> RoutingTable {
        RoutingTable {
            generation: 0,
            snapshot: Arc::default(),
            command_line: HostTable::default(),
            sockets: Box::default(),
            unmatched: self.unmatched.clone(),
            ai: None,
        }
    }

    /// Compiles a snapshot. Every value in it was validated by the control plane.
    ///
    /// Host levels whose routes are unchanged since `previous` are taken over from it, so a
    /// change costs work in proportion to the hosts it touches, not to the table's size.
    pub fn compile(
        &self,
        snapshot: Arc<Snapshot>,
        previous: Option<&RoutingTable>,
    ) -> RoutingTable {
        let routes = routes_by_scope(&snapshot);
        let ai = if snapshot.ai.models.is_empty() {
            None
        } else {
            match previous.and_then(|p| p.ai.as_ref()) {
                Some(before) if Arc::ptr_eq(&before.config, &snapshot.ai) => Some(before.clone()),
                _ => Some(Arc::new(AiIndex::compile(
                    snapshot.ai.clone(),
                    &self.ai_state,
                    self,
                    self.metrics.ai().clone(),
                ))),
            }
        };
        RoutingTable {
            ai,
            generation: snapshot.generation,
            command_line: HostTable::build(
                &routes.command_line,
                previous.map(|p| &p.command_line),
                self,
            ),
            sockets: routes
                .sockets
                .into_iter()
                .map(|(address, routes)| {
                    let before = previous.and_then(|p| p.socket_routes(&address));
                    (address, HostTable::build(&routes, before, self))
                })
                .collect(),
            unmatched: self.unmatched.clone(),
            snapshot,
        }
    }

    /// Forgets state no table holds any more, and the metric series of routes that are gone.
    /// Returns how many routes were forgotten.
    pub fn sweep(&self) -> usize {
        self.cursors.sweep();
        self.mirror_cursors.sweep();
        self.tls_connectors.sweep();
        self.endpoint_loads.sweep();
        self.endpoint_healths.sweep();
        self.retry_budgets.sweep();
        self.rate_limiters.sweep();
        self.rate_limiters
            .for_each_live(RuleRateLimiter::forget_idle);
        let gone = self.routes.sweep();
        for route in &gone {
            self.metrics.forget_route(route.display());
        }
        gone.len()
    }

    /// The long-lived state of a route.
    fn route_state(&self, route: &RouteId) -> Arc<RouteState> {
        self.routes.get_or_insert_with(
            route,
            |_| true,
            || RouteState::new(self.metrics.route_metrics(route.display())),
        )
    }

    fn mirror_cursor(&self, route: &RouteId, rule: usize, mirror: usize) -> Arc<BalancerCursor> {
        self.mirror_cursors.get_or_insert_with(
            &(route.clone(), rule, mirror),
            |cursor| cursor.fits(1),
            || BalancerCursor::new(1),
        )
    }

    fn endpoint_load(&self, address: &TargetAddress) -> Arc<EndpointLoad> {
        self.endpoint_loads
            .get_or_insert_with(address, |_| true, EndpointLoad::default)
    }

    fn endpoint_health(
        &self,
        route: &RouteId,
        rule: usize,
        backend: usize,
        address: &TargetAddress,
        config: OutlierDetection,
    ) -> Arc<EndpointHealth> {
        self.endpoint_healths.get_or_insert_with(
            &(route.clone(), rule, backend, address.clone()),
            |health| health.config == config,
            || EndpointHealth::new(config),
        )
    }

    fn rate_limiter(
        &self,
        route: &RouteId,
        rule: usize,
        limit: &RateLimit,
    ) -> Arc<RuleRateLimiter> {
        self.rate_limiters.get_or_insert_with(
            &(route.clone(), rule),
            |limiter| limiter.config == *limit,
            || RuleRateLimiter::new(limit.clone()),
        )
    }

    fn retry_budget(
        &self,
        route: &RouteId,
        rule: usize,
        budget: RetryBudget,
    ) -> Arc<RetryBudgetState> {
        self.retry_budgets.get_or_insert_with(
            &(route.clone(), rule),
            |state| state.config == budget,
            || RetryBudgetState::new(budget),
        )
    }

    /// The TLS connector for backends with `tls` speaking `protocol`.
    fn tls_connector(
        &self,
        tls: &UpstreamTls,
        protocol: Protocol,
    ) -> Result<Arc<TlsConnectorConfig>, UpstreamTlsError> {
        self.tls_connectors.try_get_or_insert_with(
            &(tls.clone(), protocol),
            |_| true,
            || TlsConnectorConfig::new(tls, protocol),
        )
    }

    /// The balancer cursor of one rule of a route with `backends` backends.
    fn cursor(&self, route: &RouteId, rule: usize, backends: usize) -> Arc<BalancerCursor> {
        self.cursors.get_or_insert_with(
            &(route.clone(), rule),
            |cursor| cursor.fits(backends),
            || BalancerCursor::new(backends),
        )
    }
}

impl TlsConnectors for TableCompiler {
    fn connector(&self, tls: &UpstreamTls) -> Option<Arc<TlsConnectorConfig>> {
        match self.tls_connector(tls, Protocol::Http1) {
            Ok(connector) => Some(connector),
            Err(error) => {
                tracing::warn!(server_name = %tls.server_name, %error, "no TLS connector for an AI provider");
                None
            }
        }
    }
}

impl RoutingTable {
    /// The AI gateway's index, when any model is configured.
    #[inline]
    pub fn ai(&self) -> Option<&AiIndex> {
        self.ai.as_deref()
    }

    /// Finds the rule for a request that came in on a socket of `scope`; `None` means 404.
    ///
    /// `host` is the Host header or authority as sent (any case, maybe with a port); `query`
    /// the raw query string, if any.
    #[inline]
    pub fn find(
        &self,
        scope: &RouteScope,
        host: &str,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<Matched<'_>> {
        let hosts = match scope {
            RouteScope::CommandLine => &self.command_line,
            RouteScope::Socket(address) => self.socket_routes(address)?,
        };
        let host = strip_port(host);
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        let request = paths::RequestFacts {
            method,
            path,
            query,
            headers,
        };
        hosts.find(host, &request)
    }

    /// The routes of the snapshot listener socket at `address`.
    fn socket_routes(&self, address: &SocketAddr) -> Option<&HostTable> {
        self.sockets
            .binary_search_by(|(socket, _)| socket.cmp(address))
            .ok()
            .map(|index| &self.sockets[index].1)
    }

    /// The compiled target of one rule of a route, for the operator's view of live state
    /// (endpoint health). Looked up in the scope of the route's first listener, and there in
    /// the host level of its first host.
    pub fn rule_target(&self, route: &Route, rule: usize) -> Option<&Arc<RuleTarget>> {
        let hosts = match route.listeners.first() {
            None => &self.command_line,
            Some(name) => {
                let listener = self.snapshot.listeners.iter().find(|l| l.name == *name)?;
                self.socket_routes(&listener.address)?
            }
        };
        hosts.rule_target(route, rule)
    }

    /// The series requests that match no rule are recorded in.
    pub fn unmatched_metrics(&self) -> &RouteMetrics {
        &self.unmatched.metrics
    }

    /// How many routes the table serves, for logs.
    pub fn route_count(&self) -> usize {
        self.snapshot.routes.len()
    }
}

/// A snapshot's routes split by scope, each list in snapshot order (precedence ties are broken
/// by it).
struct RoutesByScope<'s> {
    command_line: Vec<&'s Arc<Route>>,
    /// By the address of the snapshot's listeners they are attached to.
    sockets: BTreeMap<SocketAddr, Vec<&'s Arc<Route>>>,
}

/// The snapshot's routes split by scope: those of the command line's sockets, and those of each
/// address among the snapshot's listeners. A route attached to several listeners on one
/// address is listed there once.
fn routes_by_scope(snapshot: &Snapshot) -> RoutesByScope<'_> {
    let mut command_line = Vec::new();
    // Every listener's address gets a scope, with routes or not: a request on a socket whose
    // listeners have no route yet is a 404 of its own, never one of another socket's.
    let mut by_socket: BTreeMap<SocketAddr, Vec<&Arc<Route>>> = snapshot
        .listeners
        .iter()
        .map(|listener| (listener.address, Vec::new()))
        .collect();
    let addresses: HashMap<&str, SocketAddr> = snapshot
        .listeners
        .iter()
        .map(|listener| (&*listener.name, listener.address))
        .collect();
    for route in &snapshot.routes {
        if route.listeners.is_empty() {
            command_line.push(route);
            continue;
        }
        for name in &route.listeners {
            let Some(address) = addresses.get(&**name) else {
                tracing::warn!(route = %route.id, listener = %name, "route attached to a listener the snapshot does not have; not served there");
                continue;
            };
            let routes = by_socket.entry(*address).or_default();
            // This route's own earlier listener on the same address put it there already.
            if !routes.last().is_some_and(|last| Arc::ptr_eq(last, route)) {
                routes.push(route);
            }
        }
    }
    RoutesByScope {
        command_line,
        sockets: by_socket,
    }
}

/// `Host` may carry a port (`example.com:8080`, `[::1]:8080`). Public for the fuzz targets.
///
/// ```
/// use weir_gateway::table::strip_port;
/// assert_eq!(strip_port("example.com:8080"), "example.com");
/// assert_eq!(strip_port("[::1]:8080"), "[::1]");
/// ```
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::TargetAddress;
    use http::{HeaderName, HeaderValue};
    use proptest::prelude::*;
    use weir_contract::{
        Backend, Endpoint, HeaderMatch, NamespacedName, PathMatch as PathRule, Protocol,
        QueryMatch, RouteKind, RouteMatch, Rule as RuleSnapshot, RuleBackend, RulePolicy,
        ServiceBackend, ValueMatch,
    };

    /// The methods rules in these tests name.
    #[derive(Clone, Copy)]
    enum HttpMethod {
        Get,
        Post,
    }

    impl HttpMethod {
        fn method(self) -> Method {
            match self {
                HttpMethod::Get => Method::GET,
                HttpMethod::Post => Method::POST,
            }
        }
    }

    fn route_id(name: &str) -> RouteId {
        RouteId::new(RouteKind::Route, NamespacedName::new("default", name))
    }

    /// A rule whose single backend's port tells tests which rule answered.
    fn rule(
        path: PathRule,
        method: Option<HttpMethod>,
        headers: &[(&str, &str)],
        tag: u16,
    ) -> RuleSnapshot {
        rule_with(
            RouteMatch {
                path,
                method: method.map(HttpMethod::method),
                headers: headers
                    .iter()
                    .map(|(n, v)| HeaderMatch {
                        name: HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        value: ValueMatch::Exact(v.to_string()),
                    })
                    .collect(),
                query: Vec::new(),
            },
            tag,
        )
    }

    /// A rule with one match, whose single backend's port is `tag`.
    fn rule_with(route_match: RouteMatch, tag: u16) -> RuleSnapshot {
        RuleSnapshot {
            matches: vec![route_match],
            filters: Vec::new(),
            backends: vec![RuleBackend {
                weight: 1,
                filters: Vec::new(),
                backend: Backend::Service(ServiceBackend {
                    service: NamespacedName::new("default", "svc"),
                    protocol: Protocol::Http1,
                    tls: None,
                    endpoints: vec![Endpoint {
                        address: ([127, 0, 0, 1], tag).into(),
                    }],
                    unresolved: None,
                }),
            }],
            policy: RulePolicy::default(),
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
            .map(|(name, hosts, rules)| Route {
                listeners: Vec::new(),
                id: route_id(name),
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
        TableCompiler::new(Metrics::default()).compile(Arc::new(snapshot), None)
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
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        table
            .find(&RouteScope::CommandLine, host, &method, path, query, &map)
            .and_then(|m| m.target.balancer.pick())
            .map_or(0, |(_, endpoint)| match endpoint.target.address() {
                TargetAddress::Socket(address) => address.port(),
                TargetAddress::Host { port, .. } => *port,
            })
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
            Arc::new(Route {
                listeners: Vec::new(),
                id: route_id(name),
                hosts: vec![host.to_string()],
                rules: vec![rule(prefix("/"), None, &[], tag)],
            })
        };
        let snapshot = |routes: Vec<Arc<Route>>| {
            Arc::new(Snapshot {
                generation: 1,
                routes,
                ..Default::default()
            })
        };
        let compiler = TableCompiler::new(Metrics::default());
        let (a, b) = (route("a", "a.local", 1), route("b", "b.local", 2));
        let first = compiler.compile(snapshot(vec![a.clone(), b.clone()]), None);
        let b_changed = route("b", "b.local", 3);
        let second = compiler.compile(snapshot(vec![a, b_changed]), Some(&first));
        assert!(Arc::ptr_eq(
            &first.command_line.exact_hosts["a.local"],
            &second.command_line.exact_hosts["a.local"]
        ));
        assert!(!Arc::ptr_eq(
            &first.command_line.exact_hosts["b.local"],
            &second.command_line.exact_hosts["b.local"]
        ));
        assert_eq!(get(&second, "b.local", "/"), 3);
    }

    /// A route named `name` attached to `listeners`, for any host, answering with `tag`.
    fn attached(name: &str, listeners: &[&str], tag: u16) -> Arc<Route> {
        Arc::new(Route {
            listeners: listeners.iter().map(|l| Arc::from(*l)).collect(),
            id: route_id(name),
            hosts: Vec::new(),
            rules: vec![rule(prefix("/"), None, &[], tag)],
        })
    }

    fn plain_listener(name: &str, address: SocketAddr) -> weir_contract::Listener {
        weir_contract::Listener {
            name: name.into(),
            address,
            protocol: weir_contract::ListenerProtocol::Http,
            hostname: None,
            certificates: Vec::new(),
        }
    }

    /// The tag of the rule a GET / for any host gets on a socket of `scope`, 0 for 404.
    fn in_scope(table: &RoutingTable, scope: RouteScope) -> u16 {
        table
            .find(&scope, "h", &Method::GET, "/", None, &HeaderMap::new())
            .and_then(|m| m.target.balancer.pick())
            .map_or(0, |(_, endpoint)| match endpoint.target.address() {
                TargetAddress::Socket(address) => address.port(),
                TargetAddress::Host { port, .. } => *port,
            })
    }

    #[test]
    fn each_socket_routes_only_among_the_routes_attached_to_its_listeners() {
        let (one, two, idle): (SocketAddr, SocketAddr, SocketAddr) = (
            ([127, 0, 1, 1], 80).into(),
            ([127, 0, 1, 2], 80).into(),
            ([127, 0, 1, 3], 80).into(),
        );
        let snapshot = Snapshot {
            generation: 1,
            listeners: vec![
                plain_listener("gw#one", one),
                plain_listener("gw#two", two),
                plain_listener("gw#idle", idle),
            ],
            routes: vec![
                attached("command-line", &[], 1),
                attached("on-one", &["gw#one"], 2),
                attached("on-two", &["gw#two"], 3),
            ],
            ..Default::default()
        };
        let t = TableCompiler::new(Metrics::default()).compile(Arc::new(snapshot), None);
        assert_eq!(in_scope(&t, RouteScope::CommandLine), 1);
        assert_eq!(in_scope(&t, RouteScope::Socket(one)), 2);
        assert_eq!(in_scope(&t, RouteScope::Socket(two)), 3);
        assert_eq!(
            in_scope(&t, RouteScope::Socket(idle)),
            0,
            "a socket whose listeners have no route answers 404, not another socket's routes"
        );
        assert_eq!(
            in_scope(&t, RouteScope::Socket(([127, 0, 1, 9], 80).into())),
            0
        );
    }

    #[test]
    fn listeners_sharing_an_address_pool_their_routes_in_snapshot_order() {
        let shared: SocketAddr = ([127, 0, 1, 1], 80).into();
        let snapshot = Snapshot {
            generation: 1,
            listeners: vec![
                plain_listener("gw#a", shared),
                plain_listener("gw#b", shared),
            ],
            routes: vec![
                // Attached to both: listed once, and first.
                attached("both", &["gw#a", "gw#b"], 1),
                attached("on-b", &["gw#b"], 2),
                attached("nowhere", &["gw#missing"], 3),
            ],
            ..Default::default()
        };
        let t = TableCompiler::new(Metrics::default()).compile(Arc::new(snapshot), None);
        let hosts = t.socket_routes(&shared).unwrap();
        let any = hosts.any_host.as_ref().unwrap();
        assert_eq!(any.routes_built_from(), 2);
        assert_eq!(in_scope(&t, RouteScope::Socket(shared)), 1);
        assert_eq!(in_scope(&t, RouteScope::CommandLine), 0);
        let route = &t.snapshot.routes[1];
        assert!(
            t.rule_target(route, 0).is_some(),
            "found in its socket's scope"
        );
    }

    #[test]
    fn unchanged_socket_levels_are_reused_by_the_next_table() {
        let socket: SocketAddr = ([127, 0, 1, 1], 80).into();
        let kept = attached("kept", &["gw#a"], 1);
        let snapshot = |routes: Vec<Arc<Route>>| {
            Arc::new(Snapshot {
                generation: 1,
                listeners: vec![plain_listener("gw#a", socket)],
                routes,
                ..Default::default()
            })
        };
        let compiler = TableCompiler::new(Metrics::default());
        let first = compiler.compile(snapshot(vec![kept.clone()]), None);
        let second = compiler.compile(
            snapshot(vec![kept, attached("other", &[], 2)]),
            Some(&first),
        );
        assert!(Arc::ptr_eq(
            first
                .socket_routes(&socket)
                .unwrap()
                .any_host
                .as_ref()
                .unwrap(),
            second
                .socket_routes(&socket)
                .unwrap()
                .any_host
                .as_ref()
                .unwrap(),
        ));
    }

    #[test]
    fn strips_ports_from_hosts() {
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn query_and_regex_header_matches_rank_after_plain_header_counts() {
        let user = HeaderMatch {
            name: HeaderName::from_static("x-user"),
            value: ValueMatch::RegularExpression(regex::Regex::new("^(?:u-[0-9]+)$").unwrap()),
        };
        let debug = QueryMatch {
            name: "debug".into(),
            value: ValueMatch::Exact("1".into()),
        };
        let with = |headers: Vec<HeaderMatch>, query: Vec<QueryMatch>| RouteMatch {
            path: prefix("/"),
            method: None,
            headers,
            query,
        };
        let t = table(vec![(
            "r",
            &[],
            vec![
                rule(prefix("/"), None, &[], 1),
                rule_with(with(vec![], vec![debug.clone()]), 2),
                rule_with(with(vec![user.clone()], vec![]), 3),
                rule_with(with(vec![user], vec![debug]), 4),
            ],
        )]);
        assert_eq!(get(&t, "h", "/x"), 1);
        assert_eq!(get(&t, "h", "/x?debug=1"), 2);
        assert_eq!(answer(&t, "h", Method::GET, "/x", &[("x-user", "u-7")]), 3);
        assert_eq!(answer(&t, "h", Method::GET, "/x", &[("x-user", "bob")]), 1);
        assert_eq!(
            answer(&t, "h", Method::GET, "/x?debug=1", &[("x-user", "u-7")]),
            4,
            "more matches win"
        );
    }

    #[test]
    fn a_route_gone_from_every_table_loses_its_metric_series() {
        let compiler = TableCompiler::new(Metrics::default());
        let one = |name: &str| {
            Arc::new(Snapshot {
                generation: 1,
                routes: vec![Arc::new(Route {
                    listeners: Vec::new(),
                    id: route_id(name),
                    hosts: Vec::new(),
                    rules: vec![rule(prefix("/"), None, &[], 1)],
                })],
                ..Default::default()
            })
        };
        let first = compiler.compile(one("old"), None);
        let second = compiler.compile(one("new"), Some(&first));
        assert_eq!(compiler.sweep(), 0, "the first table still holds route old");
        drop(first);
        assert_eq!(compiler.sweep(), 1);
        drop(second);
    }

    #[test]
    fn the_balancer_rotation_survives_a_swap_for_another_route() {
        let compiler = TableCompiler::new(Metrics::default());
        let two_endpoints = |name: &str| {
            let mut rule = rule(prefix("/"), None, &[], 1);
            let Backend::Service(service) = &mut rule.backends[0].backend else {
                unreachable!("the fixture's backend is a Service")
            };
            service.endpoints.push(Endpoint {
                address: ([127, 0, 0, 1], 2).into(),
            });
            Arc::new(Route {
                listeners: Vec::new(),
                id: route_id(name),
                hosts: vec![format!("{name}.local")],
                rules: vec![rule],
            })
        };
        let kept = two_endpoints("kept");
        let snapshot = |routes: Vec<Arc<Route>>| {
            Arc::new(Snapshot {
                generation: 1,
                routes,
                ..Default::default()
            })
        };
        let first = compiler.compile(snapshot(vec![kept.clone()]), None);
        assert_eq!(get(&first, "kept.local", "/"), 1);
        // A new Route value (as after its own edit) still shares the rule's cursor.
        let second = compiler.compile(
            snapshot(vec![two_endpoints("kept"), two_endpoints("other")]),
            Some(&first),
        );
        assert_eq!(get(&second, "kept.local", "/"), 2);
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

    /// A request as the full property test sends it.
    #[derive(Debug, Clone)]
    struct Asked {
        method: HttpMethod,
        path: String,
        headers: Vec<(&'static str, &'static str)>,
        query: Vec<(&'static str, &'static str)>,
    }

    impl std::fmt::Debug for HttpMethod {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.method())
        }
    }

    fn anchored(pattern: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{pattern})$")).unwrap()
    }

    fn value_match() -> impl Strategy<Value = ValueMatch> {
        prop_oneof![
            Just(ValueMatch::Exact("1".into())),
            Just(ValueMatch::Exact("2".into())),
            Just(ValueMatch::RegularExpression(anchored("[12]"))),
            Just(ValueMatch::RegularExpression(anchored("2|x"))),
            Just(ValueMatch::Present),
        ]
    }

    fn full_match() -> impl Strategy<Value = RouteMatch> {
        let path = prop_oneof![
            4 => path_rule(),
            1 => prop_oneof![Just("/a.*"), Just("/(a|b)/.*"), Just("/ab?")]
                .prop_map(|p| PathRule::RegularExpression(anchored(p))),
        ];
        let method =
            proptest::option::of(prop_oneof![Just(HttpMethod::Get), Just(HttpMethod::Post)]);
        let headers =
            proptest::collection::vec((prop_oneof![Just("x-a"), Just("x-b")], value_match()), 0..3);
        let query =
            proptest::collection::vec((prop_oneof![Just("q"), Just("r")], value_match()), 0..3);
        (path, method, headers, query).prop_map(|(path, method, headers, query)| RouteMatch {
            path,
            method: method.map(HttpMethod::method),
            headers: headers
                .into_iter()
                .map(|(name, value)| HeaderMatch {
                    name: HeaderName::from_static(name),
                    value,
                })
                .collect(),
            query: query
                .into_iter()
                .map(|(name, value)| QueryMatch {
                    name: name.into(),
                    value,
                })
                .collect(),
        })
    }

    fn asked() -> impl Strategy<Value = Asked> {
        let value = prop_oneof![Just("1"), Just("2"), Just("3"), Just("x")];
        let pairs = |names: [&'static str; 2]| {
            proptest::collection::vec(
                (proptest::sample::select(names.to_vec()), value.clone()),
                0..3,
            )
        };
        (
            prop_oneof![Just(HttpMethod::Get), Just(HttpMethod::Post)],
            path(),
            pairs(["x-a", "x-b"]),
            pairs(["q", "r"]),
        )
            .prop_map(|(method, path, headers, query)| Asked {
                method,
                path,
                headers,
                query,
            })
    }

    /// Whether `value` matches, by the plain meaning of each match type.
    fn value_accepts(wanted: &ValueMatch, value: &str) -> bool {
        match wanted {
            ValueMatch::Exact(exact) => exact == value,
            ValueMatch::RegularExpression(regex) => regex.is_match(value),
            ValueMatch::Present => true,
        }
    }

    /// The reference for full matches: every condition checked one by one, then Gateway API
    /// precedence by sorting.
    fn reference_full(rules: &[(RouteMatch, u16)], asked: &Asked) -> u16 {
        let mut ranked: Vec<_> = rules
            .iter()
            .enumerate()
            .filter(|(_, (m, _))| {
                let path = match &m.path {
                    PathRule::Exact(p) => *p == asked.path,
                    PathRule::Prefix(p) => covers(p, &asked.path),
                    PathRule::RegularExpression(r) => r.is_match(&asked.path),
                };
                let method = m
                    .method
                    .as_ref()
                    .is_none_or(|wanted| *wanted == asked.method.method());
                let headers = m.headers.iter().all(|h| {
                    asked
                        .headers
                        .iter()
                        .any(|(n, v)| *n == h.name.as_str() && value_accepts(&h.value, v))
                });
                // Of a parameter given twice, the first counts.
                let query = m.query.iter().all(|q| {
                    asked
                        .query
                        .iter()
                        .find(|(n, _)| *n == q.name)
                        .is_some_and(|(_, v)| value_accepts(&q.value, v))
                });
                path && method && headers && query
            })
            .map(|(i, (m, tag))| {
                let (kind, length) = match &m.path {
                    PathRule::Exact(p) => (0, p.len()),
                    PathRule::Prefix(p) => (1, p.len()),
                    PathRule::RegularExpression(_) => (2, 0),
                };
                (
                    (
                        kind,
                        std::cmp::Reverse(length),
                        m.method.is_none(),
                        std::cmp::Reverse(m.headers.len()),
                        std::cmp::Reverse(m.query.len()),
                        i,
                    ),
                    *tag,
                )
            })
            .collect();
        ranked.sort_by_key(|(rank, _)| *rank);
        ranked.first().map_or(0, |(_, tag)| *tag)
    }

    proptest! {
        /// With methods, header and query matches (exact, regex, present) and regex paths
        /// in the mix, the router still picks what checking every rule by hand picks.
        #[test]
        fn router_agrees_with_brute_force_on_every_kind_of_match(
            matches in proptest::collection::vec(full_match(), 1..10),
            requests in proptest::collection::vec(asked(), 1..24),
        ) {
            let tagged: Vec<(RouteMatch, u16)> = matches.into_iter().enumerate().map(|(i, m)| (m, i as u16 + 1)).collect();
            let t = table(vec![("r", &[], tagged.iter().map(|(m, tag)| rule_with(m.clone(), *tag)).collect())]);
            for asked in requests {
                let query: Vec<String> = asked.query.iter().map(|(n, v)| format!("{n}={v}")).collect();
                let target = if query.is_empty() { asked.path.clone() } else { format!("{}?{}", asked.path, query.join("&")) };
                let got = answer(&t, "h", asked.method.method(), &target, &asked.headers);
                prop_assert_eq!(got, reference_full(&tagged, &asked), "{:?}", asked);
            }
        }

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
