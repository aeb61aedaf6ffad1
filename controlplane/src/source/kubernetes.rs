//! The Kubernetes source: every kind Weir reads ([`crate::kinds`]), from a live cluster,
//! through the shared informers, as the same [`SourceEvent`]s the file source emits.
//!
//! Each kind gets one informer and one task forwarding its events. A kind defined by a CRD
//! (Weir's Route) follows its CRD: its informer starts when the CRD is Established and stops
//! when the CRD goes (or stops being established), which deletes every object it held, so
//! their routes leave the table and no watch keeps failing on a type that is gone. The source
//! reports `Synced` once every running informer and every CRD watch has listed, so the
//! gateway's first table is complete.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use tokio::sync::mpsc;
use weir_contract::Origin;
use weir_informer::{InformerEvent, InformerFactory, WatchScope};

use crate::{
    kinds::{KINDS, Kind, KindVisitor, ObjectKey, Watched},
    source::SourceEvent,
};

/// The name this source reports itself under.
pub const SOURCE_NAME: &str = "kubernetes";

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct KubernetesScope {
    /// Watch one namespace only.
    pub namespace: Option<String>,
    /// Only Routes with these labels.
    pub route_selector: Option<String>,
}

/// Feeds `events` from the cluster until the receiver goes away.
pub async fn run(
    factory: Arc<InformerFactory>,
    scope: KubernetesScope,
    events: mpsc::Sender<SourceEvent>,
) {
    let (synced_tx, mut synced_rx) = mpsc::unbounded_channel();
    let (crd_tx, mut crd_rx) = mpsc::unbounded_channel();
    let mut starter = Starter {
        factory: factory.clone(),
        scope,
        events: events.clone(),
        synced: synced_tx,
    };
    let mut running: HashMap<Kind, StopInformer> = HashMap::new();
    let mut sync = SyncTracker::default();
    for info in KINDS {
        match info.crd {
            None => {
                sync.pending.insert(info.kind);
                running.insert(info.kind, info.kind.visit(&mut starter));
            }
            Some(crd) => {
                sync.crds_pending.insert(info.kind);
                follow_crd(&factory, info.kind, crd, crd_tx.clone());
            }
        }
    }

    loop {
        tokio::select! {
            Some(kind) = synced_rx.recv() => {
                sync.pending.remove(&kind);
            }
            Some(crd) = crd_rx.recv() => {
                let CrdEvent { kind, established } = crd;
                let name = kind.info().crd.unwrap_or_default();
                match (established, running.contains_key(&kind)) {
                    (Some(true), false) => {
                        tracing::info!(crd = name, "CRD established; starting the {:?} informer", kind);
                        if !sync.reported {
                            sync.pending.insert(kind);
                        }
                        running.insert(kind, kind.visit(&mut starter));
                    }
                    (Some(false), true) => {
                        tracing::info!(crd = name, "CRD gone; stopping the {:?} informer and dropping its objects", kind);
                        // The informer delivers a delete for each object it held, then closes.
                        if let Some(stop) = running.remove(&kind) {
                            stop();
                        }
                        sync.pending.remove(&kind);
                    }
                    (None, _) => {
                        sync.crds_pending.remove(&kind);
                    }
                    _ => {}
                }
            }
            () = events.closed() => return,
        }
        if !sync.reported && sync.pending.is_empty() && sync.crds_pending.is_empty() {
            sync.reported = true;
            tracing::info!("Kubernetes source synced");
            if events
                .send(SourceEvent::Synced {
                    source: SOURCE_NAME,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Stops a kind's informer (which deletes its objects downstream).
type StopInformer = Box<dyn FnOnce() + Send>;

/// Starts a kind's informer and the task that forwards its events.
struct Starter {
    factory: Arc<InformerFactory>,
    scope: KubernetesScope,
    events: mpsc::Sender<SourceEvent>,
    synced: mpsc::UnboundedSender<Kind>,
}

impl KindVisitor for Starter {
    type Output = StopInformer;

    fn visit<K: Watched>(&mut self, kind: Kind) -> StopInformer {
        let watch_scope = WatchScope {
            namespace: self.scope.namespace.clone(),
            // `--selector` narrows the objects Weir serves, not what they refer to.
            label_selector: match kind {
                Kind::Route => self.scope.route_selector.clone(),
                _ => kind.info().label_selector.map(str::to_owned),
            },
            field_selector: kind.info().field_selector.map(str::to_owned),
        };
        let informer = K::informer(&self.factory, watch_scope);
        let mut informer_events = informer.subscribe();
        let events = self.events.clone();
        let synced = self.synced.clone();
        tokio::spawn(async move {
            while let Some(event) = informer_events.recv().await {
                let forwarded = match event {
                    InformerEvent::Added(object) | InformerEvent::Updated { new: object, .. } => {
                        SourceEvent::Apply {
                            object: K::into_object(object, kind),
                            origin: Origin::Cluster,
                        }
                    }
                    InformerEvent::Deleted { object, .. } => {
                        SourceEvent::Delete(ObjectKey::new(kind, kind.object_id(object.meta())))
                    }
                    InformerEvent::Synced => {
                        let _ = synced.send(kind);
                        continue;
                    }
                };
                if events.send(forwarded).await.is_err() {
                    return;
                }
            }
        });
        let factory = self.factory.clone();
        Box::new(move || factory.stop(&informer))
    }
}

/// What a CRD watch says: the CRD is established (`Some(true)`), gone or not established
/// (`Some(false)`), or the watch has listed (`None`).
struct CrdEvent {
    kind: Kind,
    established: Option<bool>,
}

/// Watches the CRD that defines `kind` and reports whether it is established.
fn follow_crd(
    factory: &InformerFactory,
    kind: Kind,
    crd: &'static str,
    report: mpsc::UnboundedSender<CrdEvent>,
) {
    let informer = factory.cluster::<CustomResourceDefinition>(WatchScope {
        field_selector: Some(format!("metadata.name={crd}")),
        ..WatchScope::default()
    });
    let mut crd_events = informer.subscribe();
    tokio::spawn(async move {
        // Held so the watch lives as long as this task.
        let _informer = informer;
        while let Some(event) = crd_events.recv().await {
            let established = match &event {
                InformerEvent::Added(crd) | InformerEvent::Updated { new: crd, .. } => {
                    Some(is_established(crd))
                }
                InformerEvent::Deleted { .. } => Some(false),
                InformerEvent::Synced => None,
            };
            if report.send(CrdEvent { kind, established }).is_err() {
                return;
            }
        }
    });
}

/// Which informers have delivered their first list.
#[derive(Default)]
struct SyncTracker {
    /// Running informers that have not listed yet.
    pending: HashSet<Kind>,
    /// CRD watches that have not listed yet (until they have, whether the kind exists is unknown).
    crds_pending: HashSet<Kind>,
    reported: bool,
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.meta().deletion_timestamp.is_none()
        && crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
}
