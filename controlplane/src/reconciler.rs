//! The reconciler: turns the store into one validated [`Snapshot`] and a report per Route.
//!
//! It orchestrates; the work is elsewhere: the [`store`](crate::store) holds objects and the
//! dependency index, [`translate`](crate::translate) makes contract routes of them,
//! [`resolve`](crate::resolve) finds endpoints, and [`report`](crate::report) writes verdicts. A
//! Route that fails never touches the others; one whose new version is invalid keeps serving
//! its last valid version, so a bad edit never loses a working route.
//!
//! Reconciling is incremental: a Route is translated again only when it changed or an object
//! it looked up did (the dependency index says which); every other Route keeps its translated
//! value, the very same `Arc`, which lets the data plane reuse what it built from it too.
//!
//! Ingresses of a Weir IngressClass go the same way, after the Routes: each is translated
//! again when it, an object it looked up, or any IngressClass changed (a class change can make
//! any Ingress Weir's or not). Their routes follow the Routes' in the snapshot, so an exact
//! precedence tie between a Route and an Ingress goes to the Route; of the Ingresses' default
//! backends only the oldest Ingress's is served (creation time, then `namespace/name`), after
//! everything else.
//!
//! The Gateway API objects (GatewayClasses, Gateways, HTTPRoutes, ReferenceGrants and the
//! Namespaces whose labels they select) are translated together
//! ([`translate::gateway_api`]), again whenever any of them or an object they looked up
//! changed: what an HTTPRoute serves depends on every Gateway it names. Their routes are served
//! on the Gateways' own sockets ([`Snapshot::listeners`]), never on the command line's.
//!
//! [`run`] drives it: events are applied as they arrive and a snapshot is published once the
//! stream goes quiet for a moment (debounced), and only after every source has synced.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use prometheus_client::{
    metrics::histogram::{Histogram, exponential_buckets},
    registry::Registry,
};
use tokio::sync::{mpsc, watch};
use weir_contract::{
    AiConfig, AiModel, AiModelReport, GatewayApiReports, IngressReport, Listener, NamespacedName,
    Origin, ProviderReport, Route, RouteReport, Snapshot, SourceProblem, TlsCertificate,
};

use crate::{
    kinds::{Kind, ObjectKey},
    report,
    resolve::{Certificates, Lookup},
    source::SourceEvent,
    store::Store,
    translate::{self, Rejected, gateway_api::GatewayAddresses},
};

/// How long the event stream must be quiet before a snapshot is built.
const QUIET_PERIOD: Duration = Duration::from_millis(2);
/// The longest a change waits for the stream to go quiet.
const MAX_DELAY: Duration = Duration::from_millis(50);

/// Holds the store and what it needs to remember between snapshots.
#[derive(Default)]
pub struct Reconciler {
    store: Store,
    /// The last version of each Route that translated, served while a newer one is invalid.
    last_valid: HashMap<NamespacedName, Arc<weir_crds::Route>>,
    /// What the last snapshot made of each Route.
    translated: HashMap<NamespacedName, TranslatedRoute>,
    /// The last good certificate read from each Secret.
    certificates: Certificates,
    /// The Secret whose certificate is served to clients no other certificate is for.
    default_certificate: Option<DefaultCertificate>,
    problems_by_source: HashMap<&'static str, Vec<SourceProblem>>,
    generation: u64,
    /// What the last snapshot made of each AIModel.
    ai_translated: HashMap<NamespacedName, TranslatedModel>,
    /// The last version of each AIModel that translated.
    ai_last_valid: HashMap<NamespacedName, Arc<weir_crds::AIModel>>,
    /// The AI gateway's configuration as last published; the same `Arc` while no model or
    /// client key changed.
    ai: Arc<AiConfig>,
    /// What the last snapshot made of each Ingress; `None` for one whose class is not Weir's.
    ingresses: HashMap<NamespacedName, Option<TranslatedIngress>>,
    /// Where Gateways get their addresses.
    gateway_addresses: GatewayAddresses,
    /// What the last snapshot made of the Gateway API objects, all translated together.
    gateway_api: GatewayApiServed,
}

/// The Gateway API objects as the last snapshot had them.
#[derive(Default)]
struct GatewayApiServed {
    listeners: Vec<Listener>,
    routes: Vec<Arc<Route>>,
    reports: Arc<GatewayApiReports>,
}

/// The referrer under which the Gateway API translation's lookups are indexed: it translates
/// all Gateway API objects together, so any object one of them looked up concerns them all.
fn gateway_api_referrer() -> ObjectKey {
    ObjectKey::new(Kind::Gateway, NamespacedName::new("", ""))
}

/// One Ingress of a Weir class as the last snapshot had it.
struct TranslatedIngress {
    routes: Vec<Arc<Route>>,
    default_backend: Option<Arc<Route>>,
    certificates: Vec<Arc<TlsCertificate>>,
    report: Arc<IngressReport>,
    /// Orders default backends: the oldest Ingress's is served.
    created: Option<k8s_openapi::jiff::Timestamp>,
}

/// One AIModel as the last snapshot had it.
struct TranslatedModel {
    served: Option<Arc<AiModel>>,
    report: Arc<AiModelReport>,
}

/// One Route as the last snapshot had it.
struct TranslatedRoute {
    served: Option<Arc<Route>>,
    certificates: Vec<Arc<TlsCertificate>>,
    report: Arc<RouteReport>,
}

/// The default certificate's Secret, and what it last gave.
struct DefaultCertificate {
    secret: NamespacedName,
    served: Option<Arc<TlsCertificate>>,
    /// Read again when the Secret changes.
    stale: bool,
}

impl Reconciler {
    /// Applies one event; returns whether a new snapshot is needed.
    pub fn handle(&mut self, event: SourceEvent) -> bool {
        match event {
            SourceEvent::Apply { object, origin } => self.store.apply(object, origin),
            SourceEvent::Delete(key) => self.store.delete(&key),
            SourceEvent::Synced { .. } => false,
            SourceEvent::Problems { source, problems } => {
                let old = self.problems_by_source.insert(source, problems.clone());
                old.unwrap_or_default() != problems
            }
        }
    }

    /// Serves the certificate of Secret `secret` to clients that name no host, or a host no
    /// other certificate is for.
    pub fn with_default_certificate(mut self, secret: NamespacedName) -> Self {
        self.default_certificate = Some(DefaultCertificate {
            secret,
            served: None,
            stale: true,
        });
        self
    }

    /// Gives Gateways addresses from `addresses` (`--gateway-addresses`, `--publish-address`).
    pub fn with_gateway_addresses(mut self, addresses: GatewayAddresses) -> Self {
        self.gateway_addresses = addresses;
        self
    }

    /// The store, for sources and tests that need to look.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Builds the next snapshot from the store.
    pub fn snapshot(&mut self) -> Snapshot {
        let started = Instant::now();
        self.generation += 1;

        // Routes to translate again: those that changed, and those that looked up an object
        // that changed.
        let mut dirty: HashSet<NamespacedName> = HashSet::new();
        let mut ai_dirty: HashSet<NamespacedName> = HashSet::new();
        let mut keys_changed = false;
        let mut ingress_dirty: HashSet<NamespacedName> = HashSet::new();
        let mut classes_changed = false;
        let mut gateway_api_dirty = self.generation == 1;
        for key in self.store.take_touched() {
            gateway_api_dirty |= matches!(
                key.kind,
                Kind::GatewayClass
                    | Kind::Gateway
                    | Kind::HTTPRoute
                    | Kind::ReferenceGrant
                    | Kind::Namespace
            ) || self
                .store
                .refs()
                .referrers_of(&key)
                .any(|referrer| *referrer == gateway_api_referrer());
            ingress_dirty.extend(
                self.store
                    .refs()
                    .referrers_of(&key)
                    .filter(|referrer| referrer.kind == Kind::Ingress)
                    .map(|referrer| referrer.id.clone()),
            );
            match key.kind {
                Kind::IngressClass => classes_changed = true,
                Kind::Ingress => {
                    if self.store.get(&key).is_none() {
                        self.ingresses.remove(&key.id);
                        self.store.refs_mut().remove_referrer(&key);
                    }
                    ingress_dirty.insert(key.id.clone());
                }
                Kind::ClientKey => keys_changed = true,
                Kind::AIModel => {
                    if self.store.get(&key).is_none() {
                        self.ai_translated.remove(&key.id);
                        self.ai_last_valid.remove(&key.id);
                        self.store.refs_mut().remove_referrer(&key);
                    }
                    ai_dirty.insert(key.id.clone());
                }
                _ => {}
            }
            ai_dirty.extend(
                self.store
                    .refs()
                    .referrers_of(&key)
                    .filter(|referrer| referrer.kind == Kind::AIModel)
                    .map(|referrer| referrer.id.clone()),
            );
            if let Some(default) = &mut self.default_certificate
                && key.kind == Kind::Secret
                && key.id == default.secret
            {
                default.stale = true;
            }
            if key.kind == Kind::Route {
                if self.store.get(&key).is_none() {
                    self.translated.remove(&key.id);
                    self.last_valid.remove(&key.id);
                    self.store.refs_mut().remove_referrer(&key);
                    continue;
                }
                dirty.insert(key.id.clone());
            }
            dirty.extend(
                self.store
                    .refs()
                    .referrers_of(&key)
                    .filter(|referrer| referrer.kind == Kind::Route)
                    .map(|referrer| referrer.id.clone()),
            );
        }

        let mut routes = Vec::with_capacity(self.translated.len() + dirty.len());
        let mut reports = Vec::with_capacity(routes.capacity());
        let mut certificates = Vec::new();
        let mut references = Vec::new();
        for (id, route, origin) in self.store.routes() {
            if dirty.contains(id) || !self.translated.contains_key(id) {
                let mut lookup = Lookup::new(&self.store, &mut self.certificates);
                let translated =
                    translate_route(id, route, origin, &mut lookup, &mut self.last_valid);
                references.push((
                    ObjectKey::new(Kind::Route, id.clone()),
                    lookup.into_references(),
                ));
                self.translated.insert(id.clone(), translated);
            }
            let translated = &self.translated[id];
            routes.extend(translated.served.clone());
            certificates.extend(translated.certificates.iter().cloned());
            reports.push(translated.report.clone());
        }
        for (route, looked_up) in references {
            self.store.refs_mut().set_references(&route, looked_up);
        }
        let ingress_reports = self.ingresses(
            &ingress_dirty,
            classes_changed,
            &mut routes,
            &mut certificates,
        );
        if gateway_api_dirty {
            self.translate_gateway_api();
        }
        routes.extend(self.gateway_api.routes.iter().cloned());
        let (ai, ai_reports) = self.ai_config(&ai_dirty, keys_changed);
        let default_certificate = self.default_certificate();
        // A Secret's last good certificate is kept while something still refers to it.
        let (refs, default) = (self.store.refs(), &self.default_certificate);
        self.certificates.retain(|secret| {
            let key = ObjectKey::new(Kind::Secret, secret.clone());
            refs.referrers_of(&key).next().is_some()
                || default.as_ref().is_some_and(|d| d.secret == *secret)
        });

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
            certificates,
            default_certificate,
            reports,
            ingress_reports,
            ai,
            ai_reports,
            listeners: self.gateway_api.listeners.clone(),
            gateway_api: self.gateway_api.reports.clone(),
            source_problems,
            reconcile_duration: started.elapsed(),
        }
    }

    /// Translates every Gateway API object again; the reports keep their `Arc` when they did
    /// not change, so the status writer sees nothing new.
    fn translate_gateway_api(&mut self) {
        let translation = translate::gateway_api::translate(
            &self.store,
            &mut self.certificates,
            &self.gateway_addresses,
        );
        self.store
            .refs_mut()
            .set_references(&gateway_api_referrer(), translation.references);
        let reports = if *self.gateway_api.reports == translation.reports {
            self.gateway_api.reports.clone()
        } else {
            Arc::new(translation.reports)
        };
        self.gateway_api = GatewayApiServed {
            listeners: translation.listeners,
            routes: translation.routes,
            reports,
        };
    }

    /// The Ingresses of Weir's classes: their routes and certificates appended (after the
    /// Routes'), the oldest default backend last; returns their reports.
    fn ingresses(
        &mut self,
        dirty: &HashSet<NamespacedName>,
        classes_changed: bool,
        routes: &mut Vec<Arc<Route>>,
        certificates: &mut Vec<Arc<TlsCertificate>>,
    ) -> Vec<Arc<IngressReport>> {
        let classes: Vec<&k8s_openapi::api::networking::v1::IngressClass> =
            self.store.ingress_classes().collect();
        let mut references = Vec::new();
        let mut reports = Vec::new();
        let mut default_backends = Vec::new();
        for (id, ingress, origin) in self.store.ingresses() {
            if classes_changed || dirty.contains(id) || !self.ingresses.contains_key(id) {
                let key = ObjectKey::new(Kind::Ingress, id.clone());
                let translated = if translate::ingress::is_weirs(ingress, classes.iter().copied()) {
                    let mut lookup = Lookup::new(&self.store, &mut self.certificates);
                    let translated = translate::ingress::translate(id, ingress, &mut lookup);
                    references.push((key, lookup.into_references()));
                    Some(TranslatedIngress {
                        routes: translated.routes.into_iter().map(Arc::new).collect(),
                        default_backend: translated.default_backend.map(Arc::new),
                        certificates: translated.certificates,
                        report: Arc::new(IngressReport {
                            id: id.clone(),
                            origin: origin.clone(),
                            generation: ingress.metadata.generation,
                            problems: translated.problems,
                        }),
                        created: ingress.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    })
                } else {
                    // Not Weir's: it refers to nothing Weir needs to follow for it.
                    references.push((key, Default::default()));
                    None
                };
                self.ingresses.insert(id.clone(), translated);
            }
            let Some(translated) = &self.ingresses[id] else {
                continue;
            };
            routes.extend(translated.routes.iter().cloned());
            certificates.extend(translated.certificates.iter().cloned());
            if let Some(default) = &translated.default_backend {
                default_backends.push((translated.created, id.clone(), default.clone()));
            }
            reports.push(translated.report.clone());
        }
        // A missing creation time (a manifest file) sorts first: files are the operator's own.
        default_backends.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        if let Some((_, winner, default)) = default_backends.first() {
            routes.push(default.clone());
            for (_, id, _) in &default_backends[1..] {
                if let Some(report) = reports.iter_mut().find(|r| r.id == *id) {
                    let mut shadowed = (**report).clone();
                    shadowed.problems.push(format!(
                        "spec.defaultBackend: not served; Ingress {winner} is older and its \
                         default backend catches what no rule matches"
                    ));
                    *report = Arc::new(shadowed);
                }
            }
        }
        for (ingress, looked_up) in references {
            self.store.refs_mut().set_references(&ingress, looked_up);
        }
        reports
    }

    /// The AI gateway's models and keys: models translated again when they or what they
    /// looked up changed, keys read again when any key changed, and the previous `Arc` kept
    /// when nothing did.
    fn ai_config(
        &mut self,
        dirty: &HashSet<NamespacedName>,
        keys_changed: bool,
    ) -> (Arc<AiConfig>, Vec<Arc<AiModelReport>>) {
        let mut changed = keys_changed || self.generation == 1;
        let mut references = Vec::new();
        let mut models = Vec::new();
        let mut reports = Vec::new();
        for (id, model, origin) in self.store.ai_models() {
            if dirty.contains(id) || !self.ai_translated.contains_key(id) {
                changed = true;
                let mut lookup = Lookup::new(&self.store, &mut self.certificates);
                let translated =
                    translate_model(id, model, origin, &mut lookup, &mut self.ai_last_valid);
                references.push((
                    ObjectKey::new(Kind::AIModel, id.clone()),
                    lookup.into_references(),
                ));
                self.ai_translated.insert(id.clone(), translated);
            }
            let translated = &self.ai_translated[id];
            models.extend(translated.served.clone());
            reports.push(translated.report.clone());
        }
        for (model, looked_up) in references {
            self.store.refs_mut().set_references(&model, looked_up);
        }
        // A deleted model is in `dirty` but no longer in the store.
        changed |= dirty.iter().any(|id| !self.ai_translated.contains_key(id));
        if changed {
            let keys = self
                .store
                .client_keys()
                .filter_map(|(id, secret)| translate::aimodel::client_key(id, secret))
                .map(Arc::new)
                .collect();
            self.ai = Arc::new(AiConfig { models, keys });
        }
        (self.ai.clone(), reports)
    }

    /// The default certificate, read again if its Secret changed; a problem with it is a
    /// source problem (no Route owns it).
    fn default_certificate(&mut self) -> Option<Arc<TlsCertificate>> {
        let default = self.default_certificate.as_mut()?;
        if default.stale {
            default.stale = false;
            let mut lookup = Lookup::new(&self.store, &mut self.certificates);
            let (pair, problem) = lookup.tls_certificate(&default.secret);
            default.served = pair.map(|pair| {
                Arc::new(TlsCertificate {
                    source: default.secret.clone(),
                    hosts: Vec::new(),
                    chain_pem: pair.chain_pem,
                    key_pem: pair.key_pem,
                })
            });
            let problems = problem
                .map(|problem| {
                    vec![SourceProblem {
                        origin: "--default-certificate".into(),
                        reason: format!("Secret {} {problem}", default.secret),
                    }]
                })
                .unwrap_or_default();
            self.problems_by_source
                .insert("default-certificate", problems);
        }
        default.served.clone()
    }
}

/// Translates one Route: its current spec, or its last valid one if the current is invalid.
fn translate_route(
    id: &NamespacedName,
    route: &Arc<weir_crds::Route>,
    origin: &Origin,
    lookup: &mut Lookup<'_>,
    last_valid: &mut HashMap<NamespacedName, Arc<weir_crds::Route>>,
) -> TranslatedRoute {
    let (served, rejected) = match translate::route::translate(id, &route.spec, lookup) {
        Ok(served) => {
            last_valid.insert(id.clone(), route.clone());
            (Some(served), None)
        }
        Err(rejected) => {
            let fallback = last_valid
                .get(id)
                .and_then(|last| translate::route::translate(id, &last.spec, lookup).ok());
            (fallback, Some::<Rejected>(rejected))
        }
    };
    let report = report::route_report(
        id,
        origin,
        route.metadata.generation,
        served.as_ref(),
        rejected,
    );
    match served {
        Some(served) => TranslatedRoute {
            served: Some(Arc::new(served.route)),
            certificates: served.certificates,
            report: Arc::new(report),
        },
        None => TranslatedRoute {
            served: None,
            certificates: Vec::new(),
            report: Arc::new(report),
        },
    }
}

/// Translates one AIModel: its current spec, or its last valid one if the current is invalid.
fn translate_model(
    id: &NamespacedName,
    model: &Arc<weir_crds::AIModel>,
    origin: &Origin,
    lookup: &mut Lookup<'_>,
    last_valid: &mut HashMap<NamespacedName, Arc<weir_crds::AIModel>>,
) -> TranslatedModel {
    let (served, invalid) = match translate::aimodel::translate(id, &model.spec, lookup) {
        Ok(served) => {
            last_valid.insert(id.clone(), model.clone());
            (Some(served), None)
        }
        Err(invalid) => {
            let fallback = last_valid
                .get(id)
                .and_then(|last| translate::aimodel::translate(id, &last.spec, lookup).ok());
            (fallback, Some(invalid))
        }
    };
    let report = AiModelReport {
        id: id.clone(),
        origin: origin.clone(),
        generation: model.metadata.generation,
        serving_last_valid: invalid.is_some() && served.is_some(),
        invalid,
        providers: served
            .as_ref()
            .map(|served| {
                served
                    .model
                    .providers
                    .iter()
                    .map(|p| ProviderReport {
                        name: p.name.clone(),
                        unresolved: p.unresolved.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    TranslatedModel {
        served: served.map(|served| Arc::new(served.model)),
        report: Arc::new(report),
    }
}

/// The reconciler's metrics.
#[derive(Clone)]
pub struct ReconcilerMetrics {
    reconcile_duration: Histogram,
}

impl Default for ReconcilerMetrics {
    fn default() -> Self {
        Self {
            reconcile_duration: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
        }
    }
}

impl ReconcilerMetrics {
    /// Registers `reconcile_duration_seconds`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconcile_duration_seconds",
            "Time to build a snapshot from the store",
            self.reconcile_duration.clone(),
        );
    }
}

/// Applies source events to `reconciler` and publishes a snapshot after each burst of changes.
///
/// Nothing is published until each of `sources` has sent [`SourceEvent::Synced`], so the data
/// plane never serves a half-loaded configuration. Returns when every event sender is gone.
pub async fn run(
    mut events: mpsc::Receiver<SourceEvent>,
    sources: Vec<&'static str>,
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    metrics: ReconcilerMetrics,
    mut reconciler: Reconciler,
) {
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
        if dirty && sources.iter().all(|source| synced.contains(source)) {
            dirty = false;
            let snapshot = reconciler.snapshot();
            report::log_changes(snapshots.borrow().as_deref(), &snapshot);
            metrics
                .reconcile_duration
                .observe(snapshot.reconcile_duration.as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fixtures, kinds::Object};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::net::SocketAddr;
    use weir_contract::{
        AcceptedReason, Backend, PathMatch, ResolvedRefsReason, RuleBackend, ServiceBackend,
    };
    use weir_crds::PathMatchType;

    /// The Service behind a rule's backend.
    fn service(backend: &RuleBackend) -> &ServiceBackend {
        let Backend::Service(service) = &backend.backend else {
            panic!("not a Service: {backend:?}")
        };
        service
    }

    /// The ready endpoints of a Route's first rule's first backend.
    fn endpoints_of(route: &Route) -> Vec<SocketAddr> {
        service(&route.rules[0].backends[0])
            .endpoints
            .iter()
            .map(|e| e.address)
            .collect()
    }

    fn reconciler_with(objects: Vec<Object>) -> Reconciler {
        let mut reconciler = Reconciler::default();
        for object in objects {
            reconciler.handle(SourceEvent::Apply {
                object,
                origin: Origin::Cluster,
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
            let endpoints = &endpoints_of(&snapshot.routes[0]);
            assert_eq!(
                endpoints,
                &[
                    "127.0.0.1:9001".parse::<SocketAddr>().unwrap(),
                    "127.0.0.2:9001".parse().unwrap()
                ]
            );
            assert!(
                snapshot.reports[0].refs_resolved(),
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
        assert_eq!(endpoints_of(&snapshot.routes[0]).len(), 1);
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
            assert!(report.is_accepted(), "the route itself is valid");
            assert_eq!(report.resolved_refs.as_str(), reason);
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
        let ids: Vec<_> = snapshot
            .routes
            .iter()
            .map(|r| r.id.object.name.as_str())
            .collect();
        assert_eq!(ids, ["good"]);
        let bad_report = snapshot
            .reports
            .iter()
            .find(|r| r.id.name == "bad")
            .unwrap();
        assert_eq!(bad_report.accepted, AcceptedReason::InvalidRegex);
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
            origin: Origin::Cluster,
        });
        reconciler.snapshot();

        let mut bad = fixtures::route("default", "echo", &[], "/v2", IntOrString::Int(8080));
        if let Object::Route(r) = &mut bad {
            Arc::make_mut(r).spec.rules[0].backends.clear();
        }
        reconciler.handle(SourceEvent::Apply {
            object: bad,
            origin: Origin::Cluster,
        });
        let snapshot = reconciler.snapshot();
        assert!(
            matches!(&snapshot.routes[0].rules[0].matches[0].path, PathMatch::Prefix(p) if p == "/v1")
        );
        assert!(!snapshot.reports[0].is_accepted());
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
            origin: Origin::Cluster,
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
            origin: Origin::Cluster,
        });
        let second = reconciler.snapshot();
        assert!(!Arc::ptr_eq(&first.routes[0], &second.routes[0]));
        let endpoints = &endpoints_of(&second.routes[0]);
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
            origin: Origin::Cluster,
        });
        let snapshot = reconciler.snapshot();
        let endpoints = |name: &str| {
            let route = snapshot
                .routes
                .iter()
                .find(|r| r.id.object.name == name)
                .unwrap();
            endpoints_of(route).len()
        };
        assert_eq!((endpoints("echo"), endpoints("other")), (0, 2));
    }

    #[test]
    fn a_provider_whose_credentials_secret_is_missing_is_out_of_rotation_and_named() {
        let mut reconciler = reconciler_with(vec![fixtures::ai_model("ai", "chat", "openai-key")]);
        let snapshot = reconciler.snapshot();
        let report = &snapshot.ai_reports[0];
        assert!(report.is_accepted(), "the model itself is valid");
        let problem = report.providers[0].unresolved.as_ref().unwrap();
        assert_eq!(problem.reason, ResolvedRefsReason::InvalidCredentialsRef);
        assert!(
            problem
                .message
                .starts_with("Secret ai/openai-key not found"),
            "{}",
            problem.message
        );
        assert!(
            snapshot.ai.models[0].providers[0].unresolved.is_some(),
            "the data plane never tries it"
        );

        reconciler.handle(SourceEvent::Apply {
            object: fixtures::provider_key("ai", "openai-key", "sk-test"),
            origin: Origin::Cluster,
        });
        let snapshot = reconciler.snapshot();
        assert!(
            snapshot.ai_reports[0].refs_resolved(),
            "the Secret appearing resolves the provider: {:?}",
            snapshot.ai_reports[0]
        );
    }

    fn weir_class(default: bool) -> Object {
        let annotations = if default {
            serde_json::json!({"ingressclass.kubernetes.io/is-default-class": "true"})
        } else {
            serde_json::json!({})
        };
        Object::decode(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "weir", "annotations": annotations},
            "spec": {"controller": translate::ingress::CONTROLLER}
        }))
        .unwrap()
    }

    /// Ingress `name` (no class named) created at `created`, with a default backend `echo`.
    fn ingress_with_default_backend(name: &str, created: &str) -> Object {
        Object::decode(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"defaultBackend": {"service": {"name": "echo", "port": {"number": 8080}}}}
        }))
        .unwrap()
    }

    fn route_ids(snapshot: &Snapshot) -> Vec<String> {
        snapshot.routes.iter().map(|r| r.id.to_string()).collect()
    }

    #[test]
    fn of_several_default_backends_the_oldest_ingress_is_served_and_the_others_told() {
        let mut objects = echo_backend();
        objects.push(weir_class(true));
        objects.push(ingress_with_default_backend(
            "a-young",
            "2024-02-01T00:00:00Z",
        ));
        objects.push(ingress_with_default_backend(
            "b-old",
            "2024-01-01T00:00:00Z",
        ));
        let snapshot = reconciler_with(objects).snapshot();
        assert_eq!(
            route_ids(&snapshot),
            ["ingress:default/b-old#defaultBackend"]
        );
        let young = &snapshot.ingress_reports[0];
        assert_eq!(young.id.name, "a-young");
        assert!(
            young.problems[0].contains("Ingress default/b-old is older"),
            "{:?}",
            young.problems
        );
        assert!(snapshot.ingress_reports[1].problems.is_empty());
    }

    #[test]
    fn a_class_change_makes_ingresses_weirs_or_not() {
        let mut objects = echo_backend();
        objects.push(weir_class(false));
        objects.push(ingress_with_default_backend("shop", "2024-01-01T00:00:00Z"));
        let mut reconciler = reconciler_with(objects);
        let snapshot = reconciler.snapshot();
        assert!(
            snapshot.routes.is_empty(),
            "names no class and none is default"
        );
        assert!(snapshot.ingress_reports.is_empty());

        reconciler.handle(SourceEvent::Apply {
            object: weir_class(true),
            origin: Origin::Cluster,
        });
        let snapshot = reconciler.snapshot();
        assert_eq!(
            route_ids(&snapshot),
            ["ingress:default/shop#defaultBackend"]
        );

        reconciler.handle(SourceEvent::Delete(weir_class(true).key()));
        assert!(reconciler.snapshot().routes.is_empty());
    }

    #[test]
    fn routes_come_before_ingresses_so_a_route_wins_an_exact_tie() {
        let mut objects = echo_backend();
        objects.push(weir_class(true));
        objects.push(ingress_with_default_backend(
            "z-first-by-time",
            "2020-01-01T00:00:00Z",
        ));
        objects.push(
            Object::decode(serde_json::json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "a-shop"},
                "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "echo", "port": {"number": 8080}}}}]}}]}
            }))
            .unwrap(),
        );
        objects.push(fixtures::route(
            "zz",
            "echo",
            &[],
            "/",
            IntOrString::Int(8080),
        ));
        let snapshot = reconciler_with(objects).snapshot();
        assert_eq!(
            route_ids(&snapshot),
            [
                "zz/echo",
                "ingress:default/a-shop#*",
                "ingress:default/z-first-by-time#defaultBackend"
            ]
        );
    }

    #[tokio::test]
    async fn publishes_nothing_until_every_source_has_synced() {
        let (events, events_rx) = mpsc::channel(16);
        let (snapshots, mut snapshots_rx) = watch::channel(None);
        tokio::spawn(run(
            events_rx,
            vec!["a", "b"],
            snapshots,
            ReconcilerMetrics::default(),
            Reconciler::default(),
        ));
        for object in echo_backend() {
            events
                .send(SourceEvent::Apply {
                    object,
                    origin: Origin::Cluster,
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
