//! Configurations for the benchmarks, built as the control plane hands them over: contract
//! snapshots of `routes` Routes, each for its own host with a prefix `/` rule to one Service of
//! two endpoints.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use weir_contract::{
    Backend, Endpoint, NamespacedName, Protocol, Route, RouteId, RouteKind, RouteMatch, Rule,
    RuleBackend, RulePolicy, ServiceBackend, Snapshot,
};

/// The host of route `index`: `r{index}.bench.local`.
pub fn host(index: usize) -> String {
    format!("r{index}.bench.local")
}

/// Route `r{index}` for `host(index)`, prefix `/`, to Service `echo`.
pub fn route(index: usize) -> Arc<Route> {
    route_with(index, |_| {})
}

/// [`route`], its one rule changed by `edit` (filters, policy, matches).
pub fn route_with(index: usize, edit: impl FnOnce(&mut Rule)) -> Arc<Route> {
    let mut route = Route {
        listeners: Vec::new(),
        id: RouteId::new(
            RouteKind::Route,
            NamespacedName::new("default", format!("r{index}")),
        ),
        hosts: vec![host(index)],
        rules: vec![Rule {
            matches: vec![RouteMatch::any()],
            filters: Vec::new(),
            backends: vec![RuleBackend {
                weight: 1,
                filters: Vec::new(),
                backend: Backend::Service(ServiceBackend {
                    service: NamespacedName::new("default", "echo"),
                    protocol: Protocol::Http1,
                    tls: None,
                    endpoints: vec![
                        Endpoint {
                            address: ([127, 0, 0, 1], 8080).into(),
                        },
                        Endpoint {
                            address: ([127, 0, 0, 2], 8080).into(),
                        },
                    ],
                    unresolved: None,
                }),
            }],
            policy: RulePolicy::default(),
        }],
    };
    edit(&mut route.rules[0]);
    Arc::new(route)
}

/// The snapshot of `routes` Routes.
pub fn snapshot_with(routes: usize) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        generation: 1,
        routes: (0..routes).map(route).collect(),
        ..Snapshot::default()
    })
}
