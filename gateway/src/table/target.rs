//! What a matched request is sent to: one rule of one route, compiled for the proxy.
//!
//! A [`RuleTarget`] carries the rule's filters sorted by step, its policy, a balancer over its
//! backends' endpoints, and handles on the long-lived state of its route (metrics) and rule
//! (balancer cursor, rate limiter, retry budget, each endpoint's load and health), resolved
//! here once per table. An invalid backend ([`Backend::Invalid`]) is balanced like the others,
//! by weight, and answered 500 by the proxy when picked.

use std::sync::{Arc, OnceLock};

use weir_contract::{Backend, HashKey, LoadBalancer, Route, Rule, RulePolicy, ServiceBackend};

use super::TableCompiler;
use crate::{
    balance::{Algorithm, BackendEndpoints, Balancer, Endpoint},
    filters::{BackendFilters, RuleFilters, mirror::Mirror},
    metrics::{PolicyMetrics, RouteMetrics},
    policy::{ratelimit::RuleRateLimiter, retry::RetryBudgetState},
    upstream::{Target, TargetAddress},
};

/// A route's state that outlives tables.
#[derive(Debug)]
pub struct RouteState {
    pub metrics: RouteMetrics,
    /// Made the first time one of the route's rules has a policy that counts.
    policy: OnceLock<PolicyMetrics>,
}

impl RouteState {
    pub fn new(metrics: RouteMetrics) -> Self {
        Self {
            metrics,
            policy: OnceLock::new(),
        }
    }
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
    pub rate_limiter: Option<Arc<RuleRateLimiter>>,
    pub retry_budget: Option<Arc<RetryBudgetState>>,
    /// The route's policy counters, when this rule has a policy that counts.
    pub policy_metrics: Option<PolicyMetrics>,
    /// Whether requests are counted in flight per endpoint (least-request needs it).
    pub tracks_load: bool,
}

impl RuleTarget {
    pub(super) fn build(
        route: &Route,
        rule_index: usize,
        rule: &Rule,
        compiler: &TableCompiler,
    ) -> Self {
        let policy = &rule.policy;
        let backends = rule
            .backends
            .iter()
            .enumerate()
            .map(|(b, rule_backend)| {
                let backend = match &rule_backend.backend {
                    Backend::Service(service) => {
                        let mut backend =
                            backend_endpoints(route, rule_index, b, service, policy, compiler);
                        backend.filters = BackendFilters::new(&rule_backend.filters);
                        backend
                    }
                    // Its share is answered 500 by the proxy: it needs no endpoints nor filters.
                    Backend::Invalid(reason) => BackendEndpoints::invalid(reason.clone()),
                };
                (backend, rule_backend.weight)
            })
            .collect::<Vec<_>>();
        let cursor = compiler.cursor(&route.id, rule_index, backends.len());
        let algorithm = match &policy.load_balancer {
            LoadBalancer::RoundRobin => Algorithm::RoundRobin,
            LoadBalancer::LeastRequest => Algorithm::LeastRequest,
            LoadBalancer::ConsistentHash(_) => Algorithm::ConsistentHash,
            LoadBalancer::Random => Algorithm::Random,
        };
        let state = compiler.route_state(&route.id);
        let counts = policy.retry.is_some()
            || policy.rate_limit.is_some()
            || policy.outlier_detection.is_some()
            || rule
                .filters
                .iter()
                .any(|f| matches!(f, weir_contract::Filter::RequestMirror(_)));
        let policy_metrics = counts.then(|| {
            state
                .policy
                .get_or_init(|| compiler.metrics().policy_metrics(route.id.display()))
                .clone()
        });
        let mut mirror_index = 0;
        let filters = RuleFilters::new(&rule.filters, |mirror| {
            mirror_index += 1;
            let backend = backend_endpoints(
                route,
                rule_index,
                usize::MAX - mirror_index,
                &mirror.backend,
                &RulePolicy::default(),
                compiler,
            );
            let cursor = compiler.mirror_cursor(&route.id, rule_index, mirror_index);
            let service = backend.service.clone();
            Mirror::new(
                service,
                Balancer::new(vec![(backend, 1)], Algorithm::RoundRobin, cursor),
                mirror.percent,
            )
        });
        Self {
            route: route.id.display().clone(),
            rule_index,
            rate_limiter: policy
                .rate_limit
                .as_ref()
                .map(|limit| compiler.rate_limiter(&route.id, rule_index, limit)),
            retry_budget: policy
                .retry
                .as_ref()
                .map(|retry| compiler.retry_budget(&route.id, rule_index, retry.budget)),
            tracks_load: matches!(policy.load_balancer, LoadBalancer::LeastRequest),
            filters,
            policy: policy.clone(),
            balancer: Balancer::new(backends, algorithm, cursor),
            state,
            policy_metrics,
        }
    }

    pub fn metrics(&self) -> &RouteMetrics {
        &self.state.metrics
    }

    /// What consistent hashing hashes, if the rule hashes.
    pub fn hash_key(&self) -> Option<&HashKey> {
        match &self.policy.load_balancer {
            LoadBalancer::ConsistentHash(key) => Some(key),
            _ => None,
        }
    }
}

/// A backend's endpoints, each with its long-lived load counter and (under outlier detection)
/// health.
fn backend_endpoints(
    route: &Route,
    rule_index: usize,
    backend_index: usize,
    service: &ServiceBackend,
    policy: &RulePolicy,
    compiler: &TableCompiler,
) -> BackendEndpoints {
    let tls = match &service.tls {
        None => Ok(None),
        Some(tls) => compiler.tls_connector(tls, service.protocol).map(Some),
    };
    let endpoints = match tls {
        Ok(tls) => service
            .endpoints
            .iter()
            .map(|endpoint| {
                let address = TargetAddress::Socket(endpoint.address);
                Endpoint {
                    load: compiler.endpoint_load(&address),
                    health: policy.outlier_detection.map(|config| {
                        compiler.endpoint_health(
                            &route.id,
                            rule_index,
                            backend_index,
                            &address,
                            config,
                        )
                    }),
                    target: Target::new(address, service.protocol, tls.clone()),
                }
            })
            .collect(),
        Err(error) => {
            // The control plane checked what it could; a backend TLS cannot be set up for
            // gets no traffic rather than unverified traffic.
            tracing::error!(route = %route.id, service = %service.service, %error, "backend TLS unusable; its endpoints get no traffic");
            Vec::new()
        }
    };
    BackendEndpoints {
        service: service.service.to_string().into(),
        endpoints: endpoints.into(),
        filters: BackendFilters::default(),
        invalid: None,
    }
}
