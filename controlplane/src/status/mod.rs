//! The status writer: puts the reconciler's verdicts on the objects they are about, and the
//! data plane's ejections on the AIModels they concern.
//!
//! Each Route and AIModel from the cluster gets two conditions, in the shape Gateway API users
//! know: `Accepted` (is the spec valid and served) and `ResolvedRefs` (did every reference
//! resolve), both with `observedGeneration`; `lastTransitionTime` moves only when a condition's
//! status flips. What else each kind's status holds is its own module's ([`route`],
//! [`aimodel`], [`ingress`]); this one owns when and how a status is written. An Ingress of a
//! Weir class gets `status.loadBalancer` with the published address, when one is given.
//!
//! Writes go through one work queue keyed by kind and name: only objects whose verdict changed
//! (or, for an AIModel, whose ejected providers did) are written, an object is never written by
//! two workers at once, and a failed write is retried with per-object backoff. An ejection ends
//! by time alone, so a model showing one is queued again for the moment it ends. Status is
//! written with server-side apply, so Weir owns its fields and nothing else.
//!
//! With several replicas, only the one the election ([`crate::leader`]) makes leader writes.
//! Every replica keeps taking verdicts, so a follower knows what each status should be; a
//! write it would make is skipped (and counted as missed), not queued again. On becoming
//! leader, or when a skip happened while it led (its leadership ran out between renewals), it
//! queues every object again, so whatever the old leader did not write is written: no update
//! is lost. On losing leadership it stops before its next write; a write already in flight
//! may still land (a graceful stand-down waits for it before releasing the Lease). Such a
//! write is harmless: every replica applies the whole status with the same field manager
//! (`weir`, forced), computed from the same objects, so the new leader's apply of the same
//! object replaces it whole rather than merging with it, and the new leader writes every
//! object once on taking over.

mod aimodel;
mod gateway_api;
mod ingress;
mod route;

pub use ingress::{InvalidAddress, PublishedAddress};

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Debug,
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams},
};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;
use weir_contract::{
    AiModelReport, EjectedProviders, GatewayClassReport, GatewayReport, HttpRouteReport,
    NamespacedName, Origin, RouteReport, Snapshot,
};
use weir_crds::gateway_api::{Gateway, GatewayClass, HTTPRoute};
use weir_informer::queue::{QueueConfig, WorkQueue};

use crate::{
    kinds::{Kind, ObjectKey},
    leader::Leadership,
};

/// The field manager Weir's status writes are recorded under.
pub const FIELD_MANAGER: &str = "weir";
/// Status writes in flight at once.
const CONCURRENT_WRITES: usize = 4;

/// The queue status writes go through, keyed by kind and name; its metrics are
/// `workqueue_status_*`.
pub fn queue() -> Arc<WorkQueue<ObjectKey>> {
    WorkQueue::new("status", QueueConfig::default())
}

/// What an object's status is made from.
#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    Route(Arc<RouteReport>),
    AiModel(Arc<AiModelReport>),
    /// An Ingress Weir serves: its status is the published address alone.
    Ingress,
    GatewayClass(Arc<GatewayClassReport>),
    Gateway(Arc<GatewayReport>),
    HttpRoute(Arc<HttpRouteReport>),
}

/// Everything the writer knows, behind one lock that no `.await` holds.
#[derive(Default)]
struct StatusState {
    /// Written on the Ingresses Weir serves; none are written without it.
    published: Option<PublishedAddress>,
    /// The verdict to write, by object.
    desired: HashMap<ObjectKey, Verdict>,
    /// The providers the data plane skips, as it last said.
    ejected: EjectedProviders,
    /// Each object's conditions as last written.
    written: HashMap<ObjectKey, WrittenConditions>,
    /// A write was skipped for want of leadership since every object was last queued.
    missed_writes: bool,
}

impl StatusState {
    /// Takes a snapshot's verdicts; returns the objects whose status must be written again.
    fn take_verdicts(&mut self, snapshot: &Snapshot) -> Vec<ObjectKey> {
        // Only objects from the cluster have a status to write; files have none.
        let routes = snapshot
            .reports
            .iter()
            .filter(|report| report.origin == Origin::Cluster)
            .map(|report| {
                let key = ObjectKey::new(Kind::Route, report.id.clone());
                (key, Verdict::Route(report.clone()))
            });
        let models = snapshot
            .ai_reports
            .iter()
            .filter(|report| report.origin == Origin::Cluster)
            .map(|report| {
                let key = ObjectKey::new(Kind::AIModel, report.id.clone());
                (key, Verdict::AiModel(report.clone()))
            });
        let ingresses = snapshot
            .ingress_reports
            .iter()
            .filter(|report| report.origin == Origin::Cluster && self.published.is_some())
            .map(|report| {
                (
                    ObjectKey::new(Kind::Ingress, report.id.clone()),
                    Verdict::Ingress,
                )
            });
        let gateway_api = &snapshot.gateway_api;
        let classes = gateway_api
            .classes
            .iter()
            .filter(|report| report.origin == Origin::Cluster)
            .map(|report| {
                let key = ObjectKey::new(Kind::GatewayClass, NamespacedName::new("", &report.name));
                (key, Verdict::GatewayClass(report.clone()))
            });
        let gateways = gateway_api
            .gateways
            .iter()
            .filter(|report| report.origin == Origin::Cluster)
            .map(|report| {
                let key = ObjectKey::new(Kind::Gateway, report.id.clone());
                (key, Verdict::Gateway(report.clone()))
            });
        let http_routes = gateway_api
            .http_routes
            .iter()
            .filter(|report| report.origin == Origin::Cluster)
            .map(|report| {
                let key = ObjectKey::new(Kind::HTTPRoute, report.id.clone());
                (key, Verdict::HttpRoute(report.clone()))
            });
        let mut stale = Vec::new();
        let mut present = BTreeSet::new();
        for (key, verdict) in routes
            .chain(models)
            .chain(ingresses)
            .chain(classes)
            .chain(gateways)
            .chain(http_routes)
        {
            present.insert(key.clone());
            // An unchanged object keeps its report's `Arc` from one snapshot to the next, and
            // `Arc`'s equality tries the pointer first.
            if self.desired.get(&key) != Some(&verdict) {
                self.desired.insert(key.clone(), verdict);
                stale.push(key);
            }
        }
        self.desired.retain(|key, _| present.contains(key));
        let desired = &self.desired;
        self.written.retain(|key, _| desired.contains_key(key));
        stale
    }

    /// Takes the data plane's ejected providers; returns the models whose status must be
    /// written again.
    fn take_ejections(&mut self, ejected: EjectedProviders) -> Vec<ObjectKey> {
        let models: BTreeSet<&NamespacedName> =
            self.ejected.models().chain(ejected.models()).collect();
        let stale = models
            .into_iter()
            .filter(|model| !self.ejected.of_model(model).eq(ejected.of_model(model)))
            .map(|model| ObjectKey::new(Kind::AIModel, model.clone()))
            .filter(|key| self.desired.contains_key(key))
            .collect();
        self.ejected = ejected;
        stale
    }

    /// The status to apply for `key` now, if it still has one.
    fn status_of(&self, key: &ObjectKey, now: SystemTime) -> Option<(Verdict, Status)> {
        let verdict = self.desired.get(key)?.clone();
        let previous = self.written.get(key);
        let status = match &verdict {
            Verdict::Route(report) => route::status(report, previous, now),
            Verdict::AiModel(report) => aimodel::status(report, &self.ejected, previous, now),
            Verdict::Ingress => ingress::status(self.published.as_ref()?),
            Verdict::GatewayClass(report) => gateway_api::class_status(report, previous, now),
            Verdict::Gateway(report) => gateway_api::gateway_status(report, previous, now),
            Verdict::HttpRoute(report) => gateway_api::http_route_status(report, previous, now),
        };
        Some((verdict, status))
    }
}

/// A status to apply, and what to remember once it is written.
#[derive(Debug)]
struct Status {
    /// The `status` stanza.
    body: Value,
    conditions: WrittenConditions,
    /// When the status changes by time alone (an ejection ends), if it will.
    changes_at: Option<SystemTime>,
}

/// The status writer's metrics.
#[derive(Clone, Default)]
pub struct StatusMetrics {
    writes: Family<Vec<(&'static str, &'static str)>, Counter>,
}

impl StatusMetrics {
    /// Registers `status_writes_total{kind}`: statuses this replica applied.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "status_writes",
            "Statuses this replica applied to the API server (only the leader applies any)",
            self.writes.clone(),
        );
    }

    fn written(&self, kind: Kind) {
        let kind = match kind {
            Kind::Route => "Route",
            Kind::AIModel => "AIModel",
            Kind::Ingress => "Ingress",
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::HTTPRoute => "HTTPRoute",
            _ => "other",
        };
        self.writes.get_or_create(&vec![("kind", kind)]).inc();
    }
}

/// What the writer's workers share.
#[derive(Clone)]
struct Writer {
    client: Client,
    state: Arc<Mutex<StatusState>>,
    queue: Arc<WorkQueue<ObjectKey>>,
    leadership: Leadership,
    metrics: StatusMetrics,
}

/// Writes the status of every object of every snapshot, and the data plane's ejections on
/// their AIModels, while `leadership` says this replica leads, until `snapshots` closes.
/// Ingresses get `published` as their load balancer's address; without it, their status is
/// left alone.
pub async fn run(
    client: Client,
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    mut ejections: watch::Receiver<EjectedProviders>,
    queue: Arc<WorkQueue<ObjectKey>>,
    mut leadership: Leadership,
    metrics: StatusMetrics,
    published: Option<PublishedAddress>,
) {
    let state = Arc::new(Mutex::new(StatusState {
        published,
        ..StatusState::default()
    }));
    let writer = Writer {
        client,
        state: state.clone(),
        queue: queue.clone(),
        leadership: leadership.clone(),
        metrics,
    };
    let workers = tokio::spawn(queue.clone().run(CONCURRENT_WRITES, move |key: ObjectKey| {
        write_status(writer.clone(), key)
    }));

    // A data plane that goes away leaves its last word standing; statuses go on being written.
    let mut ejections_open = true;
    let mut was_leading = false;
    loop {
        let leading = leadership.is_leading();
        if leading {
            let every_object = {
                let mut state = lock(&state);
                let missed = std::mem::take(&mut state.missed_writes);
                if !was_leading || missed {
                    state.desired.keys().cloned().collect()
                } else {
                    Vec::new()
                }
            };
            if !was_leading {
                tracing::info!(
                    objects = every_object.len(),
                    "leading: writing every status"
                );
            }
            for key in every_object {
                queue.add(key);
            }
        }
        was_leading = leading;
        let snapshot = snapshots.borrow_and_update().clone();
        let ejected = ejections.borrow_and_update().clone();
        let stale = {
            let mut state = lock(&state);
            let mut stale = snapshot
                .map(|snapshot| state.take_verdicts(&snapshot))
                .unwrap_or_default();
            stale.extend(state.take_ejections(ejected));
            stale
        };
        for key in stale {
            queue.add(key);
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { break },
            changed = ejections.changed(), if ejections_open => ejections_open = changed.is_ok(),
            () = leadership.changed() => {}
        }
    }
    queue.shut_down();
    let _ = workers.await;
}

/// Writes one object's status if this replica leads; an object that is gone needs none.
async fn write_status(writer: Writer, key: ObjectKey) -> Result<(), kube::Error> {
    let Writer {
        client,
        state,
        queue,
        leadership,
        metrics,
    } = writer;
    let now = SystemTime::now();
    let (verdict, status, _permit) = {
        let mut state = lock(&state);
        let Some(permit) = leadership.permit() else {
            // Not queued again: whoever leads next queues every object on taking over.
            state.missed_writes = true;
            return Ok(());
        };
        let Some((verdict, status)) = state.status_of(&key, now) else {
            return Ok(());
        };
        (verdict, status, permit)
    };
    let applied = match &verdict {
        Verdict::Route(_) => {
            apply_status::<weir_crds::Route>(
                Api::namespaced(client, &key.id.namespace),
                &key.id,
                status.body,
            )
            .await
        }
        Verdict::AiModel(_) => {
            apply_status::<weir_crds::AIModel>(
                Api::namespaced(client, &key.id.namespace),
                &key.id,
                status.body,
            )
            .await
        }
        Verdict::Ingress => {
            apply_status::<k8s_openapi::api::networking::v1::Ingress>(
                Api::namespaced(client, &key.id.namespace),
                &key.id,
                status.body,
            )
            .await
        }
        Verdict::GatewayClass(_) => {
            apply_status::<GatewayClass>(Api::all(client), &key.id, status.body).await
        }
        Verdict::Gateway(_) => {
            apply_status::<Gateway>(
                Api::namespaced(client, &key.id.namespace),
                &key.id,
                status.body,
            )
            .await
        }
        Verdict::HttpRoute(_) => {
            apply_status::<HTTPRoute>(
                Api::namespaced(client, &key.id.namespace),
                &key.id,
                status.body,
            )
            .await
        }
    }?;
    if !applied {
        return Ok(());
    }
    tracing::debug!(object = %key, "status written");
    metrics.written(key.kind);
    lock(&state).written.insert(key.clone(), status.conditions);
    if let Some(at) = status.changes_at {
        queue.add_after(key, at.duration_since(now).unwrap_or_default());
    }
    Ok(())
}

/// Applies `status` to object `id` of kind `K` through `api`; `false` when the object is gone.
async fn apply_status<K>(api: Api<K>, id: &NamespacedName, status: Value) -> kube::Result<bool>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(&id.name, &params, &Patch::Apply(patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

fn lock(state: &Mutex<StatusState>) -> MutexGuard<'_, StatusState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// An object's conditions as last written: each one's status and since when it has had it.
#[derive(Clone, Debug, Default, PartialEq)]
struct WrittenConditions {
    /// `(scope and type, status, since)`: the scope tells apart the conditions of an object's
    /// parts (a Gateway's listeners, an HTTPRoute's parents).
    by_type: Vec<(String, &'static str, String)>,
}

impl WrittenConditions {
    /// When condition `type_` took status `status`, if that is the status last written.
    fn since(&self, type_: &str, status: &str) -> Option<&str> {
        self.by_type
            .iter()
            .find(|(t, s, _)| *t == type_ && *s == status)
            .map(|(.., since)| since.as_str())
    }
}

/// Builds an object's conditions, each keeping its `lastTransitionTime` while its status is
/// the one last written.
struct Conditions<'a> {
    /// Prefixed to each type in what is remembered: `listener/http/`.
    scope: String,
    generation: Option<i64>,
    previous: Option<&'a WrittenConditions>,
    now: String,
    list: Vec<Value>,
    written: WrittenConditions,
}

/// A condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConditionStatus {
    True,
    False,
    /// Not known: the condition could not be judged (an AIModel with no valid version has no
    /// providers whose references could be resolved).
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(ok: bool) -> Self {
        if ok { Self::True } else { Self::False }
    }
}

impl ConditionStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl<'a> Conditions<'a> {
    fn new(
        generation: Option<i64>,
        previous: Option<&'a WrittenConditions>,
        now: SystemTime,
    ) -> Self {
        Self {
            scope: String::new(),
            generation,
            previous,
            now: rfc3339(now),
            list: Vec::new(),
            written: WrittenConditions::default(),
        }
    }

    fn add(
        &mut self,
        type_: &'static str,
        status: impl Into<ConditionStatus>,
        reason: &str,
        message: &str,
    ) {
        let status = status.into().as_str();
        let key = format!("{}{type_}", self.scope);
        let since = self
            .previous
            .and_then(|previous| previous.since(&key, status))
            .unwrap_or(&self.now)
            .to_owned();
        self.list.push(json!({
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "observedGeneration": self.generation,
            "lastTransitionTime": since,
        }));
        self.written.by_type.push((key, status, since));
    }

    /// The conditions of one part of an object (a listener, a parent), remembered under
    /// `scope` among the object's.
    fn scoped(
        generation: Option<i64>,
        previous: Option<&'a WrittenConditions>,
        now: SystemTime,
        scope: String,
    ) -> Self {
        Self {
            scope,
            ..Self::new(generation, previous, now)
        }
    }

    /// The `conditions` list, what to remember of it added to `written`.
    fn finish_into(self, written: &mut WrittenConditions) -> Value {
        written.by_type.extend(self.written.by_type);
        Value::Array(self.list)
    }

    /// The `conditions` list, and what to remember of it.
    fn finish(self) -> (Value, WrittenConditions) {
        (Value::Array(self.list), self.written)
    }
}

/// A time as Kubernetes writes it (RFC 3339, whole seconds, UTC).
fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use weir_contract::{AcceptedReason, ProviderReport, ResolvedRefsReason};

    use super::*;

    fn route_report(name: &str, origin: Origin) -> Arc<RouteReport> {
        Arc::new(RouteReport {
            id: NamespacedName::new("default", name),
            origin,
            generation: Some(1),
            accepted: AcceptedReason::Accepted,
            resolved_refs: ResolvedRefsReason::ResolvedRefs,
            message: String::new(),
        })
    }

    fn model_report(name: &str) -> Arc<AiModelReport> {
        Arc::new(AiModelReport {
            id: NamespacedName::new("ai", name),
            origin: Origin::Cluster,
            generation: Some(1),
            invalid: None,
            serving_last_valid: false,
            providers: vec![ProviderReport {
                name: "primary".into(),
                unresolved: None,
            }],
        })
    }

    fn snapshot(reports: Vec<Arc<RouteReport>>, models: Vec<Arc<AiModelReport>>) -> Snapshot {
        Snapshot {
            reports,
            ai_reports: models,
            ..Snapshot::default()
        }
    }

    fn model_key(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::AIModel, NamespacedName::new("ai", name))
    }

    #[test]
    fn only_cluster_objects_whose_verdict_changed_are_queued() {
        let mut state = StatusState::default();
        let echo = route_report("echo", Origin::Cluster);
        let from_file = route_report("local", Origin::File("routes.yaml, document 1".into()));
        let chat = model_report("chat");
        let first =
            state.take_verdicts(&snapshot(vec![echo.clone(), from_file], vec![chat.clone()]));
        assert_eq!(
            first,
            [
                ObjectKey::new(Kind::Route, NamespacedName::new("default", "echo")),
                model_key("chat")
            ]
        );
        let mut edited = (*chat).clone();
        edited.generation = Some(2);
        let second = state.take_verdicts(&snapshot(vec![echo], vec![Arc::new(edited)]));
        assert_eq!(second, [model_key("chat")], "the Route did not change");
    }

    #[test]
    fn an_ejection_queues_only_the_model_it_concerns_and_only_when_it_changes() {
        let mut state = StatusState::default();
        state.take_verdicts(&snapshot(
            Vec::new(),
            vec![model_report("chat"), model_report("embed")],
        ));
        let until = UNIX_EPOCH + Duration::from_secs(60);
        let mut ejected = EjectedProviders::default();
        ejected.eject(&NamespacedName::new("ai", "chat"), "primary", until);
        assert_eq!(state.take_ejections(ejected.clone()), [model_key("chat")]);
        assert!(state.take_ejections(ejected).is_empty(), "nothing changed");
        assert_eq!(
            state.take_ejections(EjectedProviders::default()),
            [model_key("chat")],
            "an ejection the data plane forgot is shown no more"
        );
    }

    #[test]
    fn an_ejection_of_a_model_not_from_the_cluster_queues_nothing() {
        let mut state = StatusState::default();
        let mut ejected = EjectedProviders::default();
        ejected.eject(
            &NamespacedName::new("ai", "from-a-file"),
            "primary",
            UNIX_EPOCH + Duration::from_secs(60),
        );
        assert!(state.take_ejections(ejected).is_empty());
    }

    fn ingress_report(name: &str, origin: Origin) -> Arc<weir_contract::IngressReport> {
        Arc::new(weir_contract::IngressReport {
            id: NamespacedName::new("web", name),
            origin,
            generation: Some(1),
            problems: Vec::new(),
        })
    }

    #[test]
    fn ingresses_from_the_cluster_are_queued_only_with_a_published_address() {
        let snapshot = Snapshot {
            ingress_reports: vec![
                ingress_report("shop", Origin::Cluster),
                ingress_report("local", Origin::File("ingress.yaml, document 1".into())),
            ],
            ..Snapshot::default()
        };
        let mut unpublished = StatusState::default();
        assert!(unpublished.take_verdicts(&snapshot).is_empty());

        let mut published = StatusState {
            published: Some("10.0.0.7".parse().unwrap()),
            ..StatusState::default()
        };
        let shop = ObjectKey::new(Kind::Ingress, NamespacedName::new("web", "shop"));
        assert_eq!(
            published.take_verdicts(&snapshot),
            std::slice::from_ref(&shop)
        );
        assert!(
            published.take_verdicts(&snapshot).is_empty(),
            "nothing changed"
        );
        let (_, status) = published.status_of(&shop, UNIX_EPOCH).unwrap();
        assert_eq!(status.body["loadBalancer"]["ingress"][0]["ip"], "10.0.0.7");
    }

    #[test]
    fn a_gone_object_has_no_status_to_write() {
        let mut state = StatusState::default();
        state.take_verdicts(&snapshot(Vec::new(), vec![model_report("chat")]));
        state.take_verdicts(&snapshot(Vec::new(), Vec::new()));
        assert!(state.status_of(&model_key("chat"), UNIX_EPOCH).is_none());
    }
}
