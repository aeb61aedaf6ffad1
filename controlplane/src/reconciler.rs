//! The reconciler: turns the store into one validated [`Snapshot`] and a report per Route.
//!
//! It is the one place that decides what a Route means: validation, regex compilation, and
//! resolving each backend to ready endpoints through its Service and EndpointSlices. A Route
//! that fails never touches the others; one whose new version is invalid keeps serving its
//! last valid version, so a bad edit never loses a working route.
//!
//! [`run`] drives it: events are applied as they arrive and a snapshot is published once the
//! stream goes quiet for a moment (debounced), and only after every source has synced.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{core::v1::ServicePort, discovery::v1::EndpointSlice},
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::sync::{mpsc, watch};
use weir_crds::{PathMatchType, Route, RouteSpec, parse_timeout, validate_route};

use crate::{
    snapshot::{
        BackendSnapshot, MatchSnapshot, PathRule, RouteReport, RouteSnapshot, RuleSnapshot,
        Snapshot, Unresolved,
    },
    store::{self, Kind, NamespacedName, Object, Origin, SourceEvent, SourceProblem, Store},
};

/// How long the event stream must be quiet before a snapshot is built.
const QUIET_PERIOD: Duration = Duration::from_millis(2);
/// The longest a change waits for the stream to go quiet.
const MAX_DELAY: Duration = Duration::from_millis(50);
/// Compiled regexes larger than this are refused rather than slowing every request.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Holds the store and what it needs to remember between snapshots.
///
/// Reconciling is incremental: a Route is compiled again only when its spec changed or a
/// Service its backends refer to (or one of that Service's EndpointSlices) did; every other
/// Route keeps its compiled snapshot, the very same `Arc`, which lets the data plane reuse
/// what it built from it too.
#[derive(Default)]
pub struct Reconciler {
    store: Store,
    /// The last version of each Route that compiled, served while a newer one is invalid.
    last_valid: HashMap<NamespacedName, Arc<Route>>,
    /// What the last snapshot made of each Route.
    compiled: HashMap<NamespacedName, CompiledRoute>,
    /// Services whose ports or endpoints changed since the last snapshot.
    dirty_services: HashSet<NamespacedName>,
    problems_by_source: HashMap<&'static str, Vec<SourceProblem>>,
    generation: u64,
}

/// One Route as the last snapshot had it.
struct CompiledRoute {
    /// The version it was compiled from.
    route: Arc<Route>,
    origin: Origin,
    served: Option<Arc<RouteSnapshot>>,
    report: Arc<RouteReport>,
    /// The Services the served version's backends refer to.
    services: Vec<NamespacedName>,
}

impl CompiledRoute {
    fn still_valid_for(
        &self,
        route: &Arc<Route>,
        origin: &Origin,
        dirty: &HashSet<NamespacedName>,
    ) -> bool {
        let same_version = Arc::ptr_eq(&self.route, route)
            || (self.route.spec == route.spec
                && self.route.metadata.generation == route.metadata.generation);
        same_version && self.origin == *origin && !self.services.iter().any(|s| dirty.contains(s))
    }
}

/// Why a Route's spec could not be compiled.
struct Rejected {
    reason: &'static str,
    message: String,
}

impl Reconciler {
    /// Applies one event; returns whether a new snapshot is needed.
    pub fn handle(&mut self, event: SourceEvent) -> bool {
        match event {
            SourceEvent::Apply { object, origin } => {
                let mut touched = Vec::new();
                match &object {
                    Object::Route(_) => {}
                    Object::Service(_) => touched.push(object.key().id),
                    Object::EndpointSlice(slice) => {
                        let id = object.key().id;
                        touched.extend(self.store.owner_of_slice(&id));
                        touched.extend(store::slice_owner(&id.namespace, slice));
                    }
                }
                let changed = self.store.apply(object, origin);
                if changed {
                    self.dirty_services.extend(touched);
                }
                changed
            }
            SourceEvent::Delete(key) => {
                let touched = match key.kind {
                    Kind::Route => None,
                    Kind::Service => Some(key.id.clone()),
                    Kind::EndpointSlice => self.store.owner_of_slice(&key.id),
                };
                let changed = self.store.delete(&key);
                if changed {
                    self.dirty_services.extend(touched);
                }
                changed
            }
            SourceEvent::Synced { .. } => false,
            SourceEvent::Problems { source, problems } => {
                let old = self.problems_by_source.insert(source, problems.clone());
                old.unwrap_or_default() != problems
            }
        }
    }

    /// The store, for sources and tests that need to look.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Builds the next snapshot from the store.
    pub fn snapshot(&mut self) -> Snapshot {
        let started = Instant::now();
        self.generation += 1;
        let mut routes = Vec::new();
        let mut reports = Vec::new();
        let mut present = HashSet::new();

        for (id, route, origin) in self.store.routes() {
            present.insert(id.clone());
            let reusable = self
                .compiled
                .get(id)
                .is_some_and(|c| c.still_valid_for(route, origin, &self.dirty_services));
            if !reusable {
                let compiled = compile_route(id, route, origin, &self.store, &mut self.last_valid);
                self.compiled.insert(id.clone(), compiled);
            }
            let compiled = &self.compiled[id];
            routes.extend(compiled.served.clone());
            reports.push(compiled.report.clone());
        }
        self.compiled.retain(|id, _| present.contains(id));
        self.dirty_services.clear();
        self.last_valid.retain(|id, _| present.contains(id));

        let mut source_problems: Vec<_> = self
            .problems_by_source
            .values()
            .flatten()
            .cloned()
            .collect();
        source_problems.sort();
        Snapshot {
            generation: self.generation,
            routes,
            reports,
            source_problems,
            reconcile_duration: started.elapsed(),
        }
    }
}

/// Compiles one Route: its current spec, or its last valid one if the current is invalid.
fn compile_route(
    id: &NamespacedName,
    route: &Arc<Route>,
    origin: &Origin,
    store: &Store,
    last_valid: &mut HashMap<NamespacedName, Arc<Route>>,
) -> CompiledRoute {
    let (served, accepted_reason, mut message) = match compile(id, &route.spec, store) {
        Ok(compiled) => {
            last_valid.insert(id.clone(), route.clone());
            (Some(compiled), "Accepted", String::new())
        }
        Err(rejected) => {
            let fallback = last_valid
                .get(id)
                .and_then(|last| compile(id, &last.spec, store).ok());
            let mut message = rejected.message;
            if fallback.is_some() {
                message.push_str(" (still serving the last valid version)");
            }
            (fallback, rejected.reason, message)
        }
    };
    let (resolved_refs_reason, refs_message) = served
        .as_ref()
        .map(resolution_problem)
        .unwrap_or(("ResolvedRefs", String::new()));
    if !refs_message.is_empty() {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&refs_message);
    }
    let mut services: Vec<NamespacedName> = served
        .iter()
        .flat_map(|s| &s.rules)
        .flat_map(|rule| &rule.backends)
        .map(|backend| backend.service.clone())
        .collect();
    services.sort();
    services.dedup();
    CompiledRoute {
        route: route.clone(),
        origin: origin.clone(),
        served: served.map(Arc::new),
        report: Arc::new(RouteReport {
            id: id.clone(),
            origin: origin.as_deref().map(str::to_owned),
            generation: route.metadata.generation,
            accepted: accepted_reason == "Accepted",
            accepted_reason,
            resolved_refs: resolved_refs_reason == "ResolvedRefs",
            resolved_refs_reason,
            message,
        }),
        services,
    }
}

/// Compiles a Route's spec with its backends resolved against the store.
fn compile(
    id: &NamespacedName,
    spec: &RouteSpec,
    store: &Store,
) -> Result<RouteSnapshot, Rejected> {
    validate_route(spec).map_err(|invalid| Rejected {
        reason: "Invalid",
        message: invalid.to_string(),
    })?;
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (r, rule) in spec.rules.iter().enumerate() {
        let mut matches = Vec::with_capacity(rule.matches.len().max(1));
        for (m, route_match) in rule.matches.iter().enumerate() {
            let path = match &route_match.path {
                None => PathRule::Prefix("/".into()),
                Some(path) => match path.kind {
                    PathMatchType::Exact => PathRule::Exact(path.value.clone()),
                    PathMatchType::PathPrefix => PathRule::Prefix(normalise_prefix(&path.value)),
                    PathMatchType::RegularExpression => {
                        let regex = regex::RegexBuilder::new(&format!("^(?:{})$", path.value))
                            .size_limit(REGEX_SIZE_LIMIT)
                            .build()
                            .map_err(|error| Rejected {
                                reason: "InvalidRegex",
                                message: format!(
                                    "spec.rules[{r}].matches[{m}].path.value: {}",
                                    one_line(&error.to_string())
                                ),
                            })?;
                        PathRule::RegularExpression(regex)
                    }
                },
            };
            let mut headers = route_match.headers.clone();
            for header in &mut headers {
                header.name.make_ascii_lowercase();
            }
            matches.push(MatchSnapshot {
                path,
                method: route_match.method,
                headers,
            });
        }
        if matches.is_empty() {
            matches.push(MatchSnapshot {
                path: PathRule::Prefix("/".into()),
                method: None,
                headers: Vec::new(),
            });
        }
        let backends = rule
            .backends
            .iter()
            .map(|backend| {
                let service =
                    NamespacedName::new(id.namespace.clone(), backend.service.name.clone());
                let (endpoints, unresolved) =
                    match resolve_endpoints(&service, &backend.service.port, store) {
                        Ok(endpoints) => (endpoints, None),
                        Err(unresolved) => (Vec::new(), Some(unresolved)),
                    };
                BackendSnapshot {
                    service,
                    weight: backend.weight,
                    endpoints,
                    unresolved,
                }
            })
            .collect();
        let timeout = rule
            .timeout
            .as_deref()
            .map(parse_timeout)
            .transpose()
            .ok()
            .flatten()
            .flatten();
        rules.push(RuleSnapshot {
            matches,
            backends,
            timeout,
        });
    }
    Ok(RouteSnapshot {
        id: id.clone(),
        hosts: spec.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        rules,
    })
}

/// The ready endpoints of a Service port, sorted and without duplicates.
fn resolve_endpoints(
    service_id: &NamespacedName,
    port: &IntOrString,
    store: &Store,
) -> Result<Vec<SocketAddr>, Unresolved> {
    let service = store
        .service(service_id)
        .ok_or(Unresolved::BackendNotFound)?;
    let service_port = service
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.as_ref())
        .into_iter()
        .flatten()
        .find(|p| match port {
            IntOrString::Int(number) => p.port == *number,
            IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
        })
        .ok_or(Unresolved::PortNotFound)?;
    let mut endpoints: Vec<SocketAddr> = store
        .endpoint_slices_of(service_id)
        .flat_map(|slice| ready_addresses(slice, service_port))
        .collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    Ok(endpoints)
}

/// The ready addresses of one slice, on the slice port named like the Service port.
fn ready_addresses<'a>(
    slice: &'a EndpointSlice,
    service_port: &ServicePort,
) -> impl Iterator<Item = SocketAddr> + 'a {
    let port_name = service_port.name.as_deref().unwrap_or_default();
    let target_port = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok());
    let usable = matches!(slice.address_type.as_str(), "IPv4" | "IPv6");
    slice
        .endpoints
        .iter()
        .filter(move |_| usable && target_port.is_some())
        // An endpoint whose readiness is unknown counts as ready, as kube-proxy does.
        .filter(|endpoint| endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|endpoint| endpoint.addresses.iter())
        .filter_map(move |address| {
            let ip: IpAddr = address.parse().ok()?;
            Some(SocketAddr::new(ip, target_port?))
        })
}

/// The first backend problem of a compiled Route, as a reason and a message.
fn resolution_problem(route: &RouteSnapshot) -> (&'static str, String) {
    for (r, rule) in route.rules.iter().enumerate() {
        for (b, backend) in rule.backends.iter().enumerate() {
            let service = &backend.service;
            let message = match backend.unresolved {
                None if !backend.endpoints.is_empty() => continue,
                None => format!("Service {service} has no ready endpoints"),
                Some(Unresolved::BackendNotFound) => format!("Service {service} not found"),
                Some(Unresolved::PortNotFound) => format!("Service {service} has no such port"),
            };
            let reason = backend
                .unresolved
                .map_or("NoReadyEndpoints", Unresolved::reason);
            return (reason, format!("spec.rules[{r}].backends[{b}]: {message}"));
        }
    }
    ("ResolvedRefs", String::new())
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

/// Applies source events and publishes a snapshot after each burst of changes.
///
/// Nothing is published until each of `sources` has sent [`SourceEvent::Synced`], so the data
/// plane never serves a half-loaded configuration. Returns when every event sender is gone.
pub async fn run(
    mut events: mpsc::Receiver<SourceEvent>,
    sources: usize,
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
) {
    let mut reconciler = Reconciler::default();
    let mut synced = HashSet::new();
    let mut dirty = false;
    while let Some(event) = events.recv().await {
        let burst_started = Instant::now();
        let mut next = Some(event);
        // Drain the burst: keep applying until the stream is quiet or the change has waited long enough.
        while let Some(event) = next.take() {
            if let SourceEvent::Synced { source } = &event {
                synced.insert(*source);
                dirty = true;
            }
            dirty |= reconciler.handle(event);
            let wait = QUIET_PERIOD.min(MAX_DELAY.saturating_sub(burst_started.elapsed()));
            if let Ok(Some(event)) = tokio::time::timeout(wait, events.recv()).await {
                next = Some(event);
            }
        }
        if dirty && synced.len() >= sources {
            dirty = false;
            let snapshot = reconciler.snapshot();
            log_report_changes(snapshots.borrow().as_deref(), &snapshot);
            tracing::debug!(
                generation = snapshot.generation,
                routes = snapshot.routes.len(),
                duration_us = snapshot.reconcile_duration.as_micros() as u64,
                "reconciled"
            );
            snapshots.send_replace(Some(Arc::new(snapshot)));
        }
    }
}

/// Logs each Route whose report changed, and each new source problem, once.
fn log_report_changes(previous: Option<&Snapshot>, next: &Snapshot) {
    let old_reports: HashMap<_, _> = previous
        .map(|p| p.reports.iter().map(|r| (&r.id, r)).collect())
        .unwrap_or_default();
    for report in &next.reports {
        // An unchanged Route's report is the same Arc; compare values only when it is not.
        if old_reports
            .get(&report.id)
            .is_some_and(|old| Arc::ptr_eq(old, report) || *old == report)
        {
            continue;
        }
        let origin = report.origin.as_deref().unwrap_or("-");
        if report.accepted && report.resolved_refs {
            tracing::info!(route = %report.id, origin, "route accepted");
        } else {
            tracing::warn!(
                route = %report.id,
                origin,
                accepted = report.accepted_reason,
                resolved_refs = report.resolved_refs_reason,
                message = %report.message,
                "route has problems"
            );
        }
    }
    let old_problems = previous
        .map(|p| p.source_problems.as_slice())
        .unwrap_or_default();
    for problem in &next.source_problems {
        if !old_problems.contains(problem) {
            tracing::warn!(origin = %problem.origin, reason = %problem.reason, "configuration not loaded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fixtures, store::Object};

    fn reconciler_with(objects: Vec<Object>) -> Reconciler {
        let mut reconciler = Reconciler::default();
        for object in objects {
            reconciler.handle(SourceEvent::Apply {
                object,
                origin: None,
            });
        }
        reconciler
    }

    /// Route `echo`: any host, prefix `/`, to Service `echo` port 8080.
    fn echo_route() -> Object {
        fixtures::route("default", "echo", &[], "/", IntOrString::Int(8080))
    }

    fn echo_backend() -> Vec<Object> {
        vec![
            fixtures::service("default", "echo", &[("http", 8080)]),
            fixtures::slice(
                "default",
                "echo-1",
                "echo",
                9001,
                &["127.0.0.1", "127.0.0.2"],
            ),
        ]
    }

    #[test]
    fn resolves_backends_to_ready_endpoints_by_port_name_and_number() {
        for port in [IntOrString::Int(8080), IntOrString::String("http".into())] {
            let mut objects = echo_backend();
            objects.push(fixtures::route(
                "default",
                "echo",
                &["echo.local"],
                "/api",
                port,
            ));
            let snapshot = reconciler_with(objects).snapshot();
            let endpoints = &snapshot.routes[0].rules[0].backends[0].endpoints;
            assert_eq!(
                endpoints,
                &[
                    "127.0.0.1:9001".parse::<SocketAddr>().unwrap(),
                    "127.0.0.2:9001".parse().unwrap()
                ]
            );
            assert!(
                snapshot.reports[0].resolved_refs,
                "{:?}",
                snapshot.reports[0]
            );
        }
    }

    #[test]
    fn leaves_out_endpoints_that_are_not_ready() {
        let mut slice = fixtures::slice(
            "default",
            "echo-1",
            "echo",
            9001,
            &["127.0.0.1", "127.0.0.2"],
        );
        if let Object::EndpointSlice(s) = &mut slice {
            let s = Arc::make_mut(s);
            s.endpoints[1].conditions = Some(k8s_openapi::api::discovery::v1::EndpointConditions {
                ready: Some(false),
                ..Default::default()
            });
        }
        let objects = vec![
            fixtures::service("default", "echo", &[("http", 8080)]),
            slice,
            echo_route(),
        ];
        let snapshot = reconciler_with(objects).snapshot();
        assert_eq!(snapshot.routes[0].rules[0].backends[0].endpoints.len(), 1);
    }

    #[test]
    fn reports_unknown_service_missing_port_and_no_endpoints() {
        let cases = [
            ("ghost", IntOrString::Int(8080), "BackendNotFound"),
            ("echo", IntOrString::Int(1234), "PortNotFound"),
            ("lonely", IntOrString::Int(8080), "NoReadyEndpoints"),
        ];
        for (service, port, reason) in cases {
            let mut objects = echo_backend();
            objects.push(fixtures::service("default", "lonely", &[("http", 8080)]));
            let mut route = fixtures::route("default", "r", &[], "/", port);
            if let Object::Route(r) = &mut route {
                Arc::make_mut(r).spec.rules[0].backends[0].service.name = service.into();
            }
            objects.push(route);
            let snapshot = reconciler_with(objects).snapshot();
            let report = &snapshot.reports[0];
            assert!(report.accepted, "the route itself is valid");
            assert_eq!(report.resolved_refs_reason, reason);
            assert_eq!(snapshot.routes.len(), 1, "still routed, answered with 503");
        }
    }

    #[test]
    fn a_bad_route_never_affects_the_others() {
        let mut objects = echo_backend();
        objects.push(fixtures::route(
            "default",
            "good",
            &[],
            "/good",
            IntOrString::Int(8080),
        ));
        let mut bad = fixtures::route("default", "bad", &[], "/bad", IntOrString::Int(8080));
        if let Object::Route(r) = &mut bad {
            let path = Arc::make_mut(r).spec.rules[0].matches[0]
                .path
                .as_mut()
                .unwrap();
            path.kind = PathMatchType::RegularExpression;
            path.value = "/bad/(".into();
        }
        objects.push(bad);
        let snapshot = reconciler_with(objects).snapshot();
        let ids: Vec<_> = snapshot.routes.iter().map(|r| r.id.name.as_str()).collect();
        assert_eq!(ids, ["good"]);
        let bad_report = snapshot
            .reports
            .iter()
            .find(|r| r.id.name == "bad")
            .unwrap();
        assert_eq!(bad_report.accepted_reason, "InvalidRegex");
        assert!(
            bad_report
                .message
                .starts_with("spec.rules[0].matches[0].path.value"),
            "{}",
            bad_report.message
        );
    }

    #[test]
    fn an_invalid_edit_keeps_the_last_valid_version_serving() {
        let mut reconciler = reconciler_with(echo_backend());
        let good = fixtures::route("default", "echo", &[], "/v1", IntOrString::Int(8080));
        reconciler.handle(SourceEvent::Apply {
            object: good,
            origin: None,
        });
        reconciler.snapshot();

        let mut bad = fixtures::route("default", "echo", &[], "/v2", IntOrString::Int(8080));
        if let Object::Route(r) = &mut bad {
            Arc::make_mut(r).spec.rules[0].backends.clear();
        }
        reconciler.handle(SourceEvent::Apply {
            object: bad,
            origin: None,
        });
        let snapshot = reconciler.snapshot();
        assert!(
            matches!(&snapshot.routes[0].rules[0].matches[0].path, PathRule::Prefix(p) if p == "/v1")
        );
        assert!(!snapshot.reports[0].accepted);
        assert!(
            snapshot.reports[0]
                .message
                .contains("still serving the last valid version")
        );
    }

    #[test]
    fn an_unrelated_change_reuses_the_compiled_route() {
        let mut objects = echo_backend();
        objects.push(echo_route());
        let mut reconciler = reconciler_with(objects);
        let first = reconciler.snapshot();
        reconciler.handle(SourceEvent::Apply {
            object: fixtures::service("default", "other", &[("http", 80)]),
            origin: None,
        });
        let second = reconciler.snapshot();
        assert!(Arc::ptr_eq(&first.routes[0], &second.routes[0]));
        assert!(Arc::ptr_eq(&first.reports[0], &second.reports[0]));
    }

    #[test]
    fn a_change_to_a_referenced_services_slices_recompiles_the_route() {
        let mut objects = echo_backend();
        objects.push(echo_route());
        let mut reconciler = reconciler_with(objects);
        let first = reconciler.snapshot();
        reconciler.handle(SourceEvent::Apply {
            object: fixtures::slice("default", "echo-1", "echo", 9001, &["127.0.0.9"]),
            origin: None,
        });
        let second = reconciler.snapshot();
        assert!(!Arc::ptr_eq(&first.routes[0], &second.routes[0]));
        let endpoints = &second.routes[0].rules[0].backends[0].endpoints;
        assert_eq!(
            endpoints,
            &["127.0.0.9:9001".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn a_slice_moving_to_another_service_updates_both() {
        let mut objects = echo_backend();
        objects.push(fixtures::service("default", "other", &[("http", 8080)]));
        objects.push(echo_route());
        let mut other_route = fixtures::route("default", "other", &[], "/", IntOrString::Int(8080));
        if let Object::Route(r) = &mut other_route {
            Arc::make_mut(r).spec.rules[0].backends[0].service.name = "other".into();
        }
        objects.push(other_route);
        let mut reconciler = reconciler_with(objects);
        reconciler.snapshot();
        reconciler.handle(SourceEvent::Apply {
            object: fixtures::slice(
                "default",
                "echo-1",
                "other",
                9001,
                &["127.0.0.1", "127.0.0.2"],
            ),
            origin: None,
        });
        let snapshot = reconciler.snapshot();
        let endpoints = |name: &str| {
            let route = snapshot.routes.iter().find(|r| r.id.name == name).unwrap();
            route.rules[0].backends[0].endpoints.len()
        };
        assert_eq!((endpoints("echo"), endpoints("other")), (0, 2));
    }

    #[test]
    fn prefixes_are_normalised_without_trailing_slash() {
        assert_eq!(normalise_prefix("/api/"), "/api");
        assert_eq!(normalise_prefix("/"), "/");
        assert_eq!(normalise_prefix("//"), "/");
    }

    #[tokio::test]
    async fn publishes_nothing_until_every_source_has_synced() {
        let (events, events_rx) = mpsc::channel(16);
        let (snapshots, mut snapshots_rx) = watch::channel(None);
        tokio::spawn(run(events_rx, 2, snapshots));
        for object in echo_backend() {
            events
                .send(SourceEvent::Apply {
                    object,
                    origin: None,
                })
                .await
                .unwrap();
        }
        events
            .send(SourceEvent::Synced { source: "a" })
            .await
            .unwrap();
        // One source synced: a published snapshot now would be a bug; the second sync must produce one.
        events
            .send(SourceEvent::Synced { source: "b" })
            .await
            .unwrap();
        snapshots_rx.wait_for(Option::is_some).await.unwrap();
        assert_eq!(snapshots_rx.borrow().as_ref().unwrap().generation, 1);
    }
}
