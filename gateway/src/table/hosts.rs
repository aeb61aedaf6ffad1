//! The routes of one scope (the command line's sockets, or one snapshot listener's socket) by
//! host: exact names, wildcard suffixes, and routes for any host, each a level of
//! [`HostRoutes`].
//!
//! Lookup is host first (exact name, then wildcard suffixes longest first, then routes for any
//! host); a level whose candidates all fail falls through to the next, less specific one. A
//! level built from the same routes (by pointer) as the previous table's is taken over as is.

use std::{collections::HashMap, sync::Arc};

use weir_contract::Route;

use super::{
    TableCompiler,
    paths::{HostRoutes, Matched, RequestFacts},
    target::RuleTarget,
};

/// One scope's routes by host level.
#[derive(Default)]
pub(super) struct HostTable {
    pub(super) exact_hosts: HashMap<Box<str>, Arc<HostRoutes>>,
    /// Keyed by the suffix with its leading dot: `*.example.com` → `.example.com`.
    pub(super) wildcard_hosts: HashMap<Box<str>, Arc<HostRoutes>>,
    pub(super) any_host: Option<Arc<HostRoutes>>,
}

impl HostTable {
    /// The table of `routes` (in precedence order), reusing the levels of `previous` whose
    /// routes are unchanged.
    pub(super) fn build(
        routes: &[&Arc<Route>],
        previous: Option<&HostTable>,
        compiler: &TableCompiler,
    ) -> Self {
        let mut exact: HashMap<&str, Vec<&Arc<Route>>> = HashMap::new();
        let mut wildcard: HashMap<&str, Vec<&Arc<Route>>> = HashMap::new();
        let mut any = Vec::new();
        for route in routes {
            if route.hosts.is_empty() {
                any.push(*route);
            }
            for host in &route.hosts {
                match host.strip_prefix('*') {
                    Some(suffix) => wildcard.entry(suffix).or_default().push(*route),
                    None => exact.entry(host.as_str()).or_default().push(*route),
                }
            }
        }
        let level = |routes: Vec<&Arc<Route>>, before: Option<&Arc<HostRoutes>>| match before {
            Some(before) if before.built_from_same(&routes) => before.clone(),
            _ => Arc::new(HostRoutes::build(&routes, compiler)),
        };
        Self {
            exact_hosts: exact
                .into_iter()
                .map(|(host, routes)| {
                    let before = previous.and_then(|p| p.exact_hosts.get(host));
                    (host.into(), level(routes, before))
                })
                .collect(),
            wildcard_hosts: wildcard
                .into_iter()
                .map(|(suffix, routes)| {
                    let before = previous.and_then(|p| p.wildcard_hosts.get(suffix));
                    (suffix.into(), level(routes, before))
                })
                .collect(),
            any_host: (!any.is_empty())
                .then(|| level(any, previous.and_then(|p| p.any_host.as_ref()))),
        }
    }

    /// The rule for a request for `host` (lowercase, without port or trailing dot).
    #[inline]
    pub(super) fn find(&self, host: &str, request: &RequestFacts<'_>) -> Option<Matched<'_>> {
        if let Some(found) = self.exact_hosts.get(host).and_then(|r| r.find(request)) {
            return Some(found);
        }
        if !self.wildcard_hosts.is_empty() {
            // Longest suffix first: for a.b.example.com try .b.example.com, then .example.com, ...
            for (dot, _) in host.match_indices('.') {
                let found = self
                    .wildcard_hosts
                    .get(&host[dot..])
                    .and_then(|r| r.find(request));
                if found.is_some() {
                    return found;
                }
            }
        }
        self.any_host.as_ref().and_then(|r| r.find(request))
    }

    /// The compiled target of one rule of a route, looked up in the level of its first host.
    pub(super) fn rule_target(&self, route: &Route, rule: usize) -> Option<&Arc<RuleTarget>> {
        let level = match route.hosts.first() {
            None => self.any_host.as_ref(),
            Some(host) => match host.strip_prefix('*') {
                Some(suffix) => self.wildcard_hosts.get(suffix),
                None => self.exact_hosts.get(host.as_str()),
            },
        };
        level?.target(route.id.display(), rule)
    }
}
