//! The Kubernetes source: Services, EndpointSlices and Routes from a live cluster, through the
//! shared informers, as the same [`SourceEvent`]s the file source emits.
//!
//! The Route informer follows the Route CRD: it starts when `routes.weir.dev` is Established
//! and stops when the CRD goes (or stops being established), which deletes every Route it
//! held, so their routes leave the table and no watch keeps failing on a type that is gone.
//! The source reports `Synced` once Services, EndpointSlices, the CRD and (when the CRD exists)
//! Routes have all been listed, so the gateway's first table is complete.

use std::{path::Path, sync::Arc};

use k8s_openapi::{
    api::{core::v1::Service, discovery::v1::EndpointSlice},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Client, Config, Resource,
    config::{KubeConfigOptions, Kubeconfig},
};
use tokio::sync::mpsc;
use weir_crds::Route;

use crate::{
    informer::{Informer, InformerEvent, InformerFactory, WatchScope},
    store::{Kind, NamespacedName, Object, ObjectKey, SourceEvent},
};

/// The name this source reports itself under.
pub const SOURCE_NAME: &str = "kubernetes";
/// The CRD whose presence turns the Route informer on and off.
pub const ROUTE_CRD_NAME: &str = "routes.weir.dev";

/// Why the Kubernetes source could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesSourceError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no cluster configuration (no --kubeconfig, KUBECONFIG or in-cluster service account): {0}"
    )]
    Infer(#[source] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct KubernetesScope {
    /// Watch one namespace only.
    pub namespace: Option<String>,
    /// Only Routes with these labels.
    pub route_selector: Option<String>,
}

/// A client from a kubeconfig file, or inferred (KUBECONFIG, then in-cluster).
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, KubernetesSourceError> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|source| {
                KubernetesSourceError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| KubernetesSourceError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?
        }
        None => Config::infer()
            .await
            .map_err(KubernetesSourceError::Infer)?,
    };
    Client::try_from(config).map_err(KubernetesSourceError::Client)
}

/// Feeds `events` from the cluster until the receiver goes away.
pub async fn run(
    factory: Arc<InformerFactory>,
    scope: KubernetesScope,
    events: mpsc::Sender<SourceEvent>,
) {
    let namespaced = WatchScope {
        namespace: scope.namespace.clone(),
        ..WatchScope::default()
    };
    let route_scope = WatchScope {
        namespace: scope.namespace.clone(),
        label_selector: scope.route_selector.clone(),
        field_selector: None,
    };
    let services = factory.namespaced::<Service>(namespaced.clone());
    let slices = factory.namespaced::<EndpointSlice>(namespaced);
    let crds = factory.cluster::<CustomResourceDefinition>(WatchScope {
        field_selector: Some(format!("metadata.name={ROUTE_CRD_NAME}")),
        ..WatchScope::default()
    });
    let mut service_events = services.subscribe();
    let mut slice_events = slices.subscribe();
    let mut crd_events = crds.subscribe();
    let mut routes: Option<Arc<Informer<Route>>> = None;
    let mut route_events: Option<mpsc::UnboundedReceiver<InformerEvent<Route>>> = None;
    let mut sync = SyncTracker::default();

    loop {
        let forwarded = tokio::select! {
            Some(event) = service_events.recv() => {
                sync.services |= matches!(event, InformerEvent::Synced);
                forward(event, Kind::Service, Object::Service)
            }
            Some(event) = slice_events.recv() => {
                sync.slices |= matches!(event, InformerEvent::Synced);
                forward(event, Kind::EndpointSlice, Object::EndpointSlice)
            }
            Some(event) = recv_routes(&mut route_events) => {
                sync.routes |= matches!(event, InformerEvent::Synced);
                forward(event, Kind::Route, Object::Route)
            }
            Some(event) = crd_events.recv() => {
                let established = match &event {
                    InformerEvent::Added(crd) | InformerEvent::Updated { new: crd, .. } => is_established(crd),
                    InformerEvent::Deleted { .. } => false,
                    InformerEvent::Synced => {
                        sync.crds = true;
                        routes.is_some()
                    }
                };
                match (established, &routes) {
                    (true, None) => {
                        tracing::info!(crd = ROUTE_CRD_NAME, "Route CRD established; starting the Route informer");
                        let informer = factory.namespaced::<Route>(route_scope.clone());
                        route_events = Some(informer.subscribe());
                        routes = Some(informer);
                        sync.routes = false;
                    }
                    (false, Some(informer)) => {
                        tracing::info!(crd = ROUTE_CRD_NAME, "Route CRD gone; stopping the Route informer and dropping its Routes");
                        // The informer delivers a delete for each Route it held, then closes.
                        factory.stop(informer);
                        routes = None;
                    }
                    _ => {}
                }
                None
            }
            else => return,
        };
        if let Some(event) = forwarded
            && events.send(event).await.is_err()
        {
            return;
        }
        if !sync.reported && sync.complete(routes.is_some()) {
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

/// Receives from the Route informer while there is one; pends forever otherwise, and drops
/// the receiver once a stopped informer has closed it.
async fn recv_routes(
    receiver: &mut Option<mpsc::UnboundedReceiver<InformerEvent<Route>>>,
) -> Option<InformerEvent<Route>> {
    let Some(events) = receiver else {
        return std::future::pending().await;
    };
    match events.recv().await {
        Some(event) => Some(event),
        None => {
            *receiver = None;
            std::future::pending().await
        }
    }
}

/// Which informers have delivered their first list.
#[derive(Default)]
struct SyncTracker {
    services: bool,
    slices: bool,
    crds: bool,
    routes: bool,
    reported: bool,
}

impl SyncTracker {
    fn complete(&self, route_informer_running: bool) -> bool {
        self.services && self.slices && self.crds && (self.routes || !route_informer_running)
    }
}

fn forward<K: Resource>(
    event: InformerEvent<K>,
    kind: Kind,
    wrap: fn(Arc<K>) -> Object,
) -> Option<SourceEvent> {
    match event {
        InformerEvent::Added(object) | InformerEvent::Updated { new: object, .. } => {
            Some(SourceEvent::Apply {
                object: wrap(object),
                origin: None,
            })
        }
        InformerEvent::Deleted { object, .. } => Some(SourceEvent::Delete(ObjectKey {
            kind,
            id: NamespacedName::new(
                object.meta().namespace.clone().unwrap_or_default(),
                object.meta().name.clone().unwrap_or_default(),
            ),
        })),
        InformerEvent::Synced => None,
    }
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
