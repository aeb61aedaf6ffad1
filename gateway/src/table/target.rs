//! What a matched request is sent to: one rule of one route, compiled for the proxy.
//!
//! A [`RuleTarget`] carries the rule's filters split by the phase that applies them, its
//! timeouts, a balancer over its backends' targets, and handles on the long-lived state of its
//! route (metrics) and rule (balancer cursor), resolved here once per table.

use std::sync::Arc;

use weir_contract::{Backend, Route, Rule, RulePolicy};

use super::TableCompiler;
use crate::{
    balance::{BackendEndpoints, Balancer},
    filters::RuleFilters,
    metrics::RouteMetrics,
    upstream::{Target, TargetAddress},
};

/// A route's state that outlives tables.
#[derive(Debug)]
pub struct RouteState {
    pub metrics: RouteMetrics,
}

/// What a matched request is sent to: one rule of one route.
#[derive(Debug)]
pub struct RuleTarget {
    /// `namespace/name` of the route.
    pub route: Arc<str>,
    pub rule_index: usize,
    pub filters: RuleFilters,
    pub policy: RulePolicy,
    pub balancer: Balancer,
    pub state: Arc<RouteState>,
}

impl RuleTarget {
    pub(super) fn build(
        route: &Route,
        rule_index: usize,
        rule: &Rule,
        compiler: &TableCompiler,
    ) -> Self {
        let backends = rule
            .backends
            .iter()
            .map(|rule_backend| {
                let Backend::Service(service) = &rule_backend.backend;
                let tls = match &service.tls {
                    None => Ok(None),
                    Some(tls) => compiler.tls_connector(tls, service.protocol).map(Some),
                };
                let targets = match tls {
                    Ok(tls) => service
                        .endpoints
                        .iter()
                        .map(|endpoint| {
                            Target::new(
                                TargetAddress::Socket(endpoint.address),
                                service.protocol,
                                tls.clone(),
                            )
                        })
                        .collect(),
                    Err(error) => {
                        // The control plane checked what it could; a backend TLS cannot be
                        // set up for gets no traffic rather than unverified traffic.
                        tracing::error!(route = %route.id, service = %service.service, %error, "backend TLS unusable; its endpoints get no traffic");
                        Vec::new()
                    }
                };
                let mut backend =
                    BackendEndpoints::new(service.service.to_string().into(), targets);
                backend.filters = rule_backend.filters.clone().into();
                (backend, rule_backend.weight)
            })
            .collect::<Vec<_>>();
        let cursor = compiler.cursor(&route.id, rule_index, backends.len());
        Self {
            route: route.id.display().clone(),
            rule_index,
            filters: RuleFilters::new(&rule.filters),
            policy: rule.policy.clone(),
            balancer: Balancer::new(backends, cursor),
            state: compiler.route_state(&route.id),
        }
    }

    pub fn metrics(&self) -> &RouteMetrics {
        &self.state.metrics
    }
}
