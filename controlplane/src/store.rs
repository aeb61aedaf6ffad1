//! The store: every object the sources have delivered, by kind, and the events that change it.
//!
//! Sources (files now, Kubernetes informers next) speak only [`SourceEvent`]; the store is the
//! one place that holds what they said. It keeps one index, EndpointSlices by Service, in step
//! with its maps, so the reconciler never scans every slice to resolve a backend.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    sync::Arc,
};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use serde::Serialize;
use weir_crds::Route;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A namespaced object's identity, printed as `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The kinds of object Weir reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    Route,
    Service,
    EndpointSlice,
}

/// An object's kind and identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub id: NamespacedName,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.kind, self.id)
    }
}

/// An object as a source delivered it. Shared, never mutated.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Route(Arc<Route>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
}

impl Object {
    /// The object's kind and `namespace/name`; a missing namespace reads as `default`.
    pub fn key(&self) -> ObjectKey {
        let (kind, meta) = match self {
            Object::Route(o) => (Kind::Route, &o.metadata),
            Object::Service(o) => (Kind::Service, &o.metadata),
            Object::EndpointSlice(o) => (Kind::EndpointSlice, &o.metadata),
        };
        ObjectKey {
            kind,
            id: NamespacedName::new(
                meta.namespace.as_deref().unwrap_or("default"),
                meta.name.as_deref().unwrap_or_default(),
            ),
        }
    }
}

/// Where an object came from, for reports users read (`routes/echo.yaml#1`).
pub type Origin = Option<Arc<str>>;

/// A problem a source found that no object carries (a file that does not parse, say).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SourceProblem {
    /// Where: a file and document index, or an object.
    pub origin: String,
    pub reason: String,
}

/// What a source tells the store. The Kubernetes informers emit the same events.
#[derive(Clone, Debug)]
pub enum SourceEvent {
    /// The object exists with this content (created or changed).
    Apply { object: Object, origin: Origin },
    /// The object is gone.
    Delete(ObjectKey),
    /// The source has delivered everything it held when it started.
    Synced { source: &'static str },
    /// The source's current problems, replacing those it reported before.
    Problems {
        source: &'static str,
        problems: Vec<SourceProblem>,
    },
}

/// Every object the sources hold, by kind and identity.
#[derive(Default, Debug)]
pub struct Store {
    routes: BTreeMap<NamespacedName, (Arc<Route>, Origin)>,
    services: HashMap<NamespacedName, Arc<Service>>,
    endpoint_slices: HashMap<NamespacedName, Arc<EndpointSlice>>,
    /// Slice names by the Service (namespace/name) their label names.
    slices_by_service: HashMap<NamespacedName, BTreeSet<String>>,
}

impl Store {
    /// Stores the object; returns whether anything routing depends on changed.
    ///
    /// The newest version is always kept, but a change only Weir's own status write makes
    /// (a new resourceVersion, new conditions) is not a change: reconciling for it would double
    /// the work of every Route update and feed back on itself.
    pub fn apply(&mut self, object: Object, origin: Origin) -> bool {
        let id = object.key().id;
        match object {
            Object::Route(route) => {
                let changed = self.routes.get(&id).is_none_or(|(old, old_origin)| {
                    old.spec != route.spec
                        || old.metadata.generation != route.metadata.generation
                        || *old_origin != origin
                });
                self.routes.insert(id, (route, origin));
                changed
            }
            Object::Service(service) => {
                let ports = |s: &Service| s.spec.as_ref().map(|spec| spec.ports.clone());
                let changed = self
                    .services
                    .get(&id)
                    .is_none_or(|old| ports(old) != ports(&service));
                self.services.insert(id, service);
                changed
            }
            Object::EndpointSlice(slice) => {
                let changed = self.endpoint_slices.get(&id).is_none_or(|old| {
                    old.endpoints != slice.endpoints
                        || old.ports != slice.ports
                        || old.address_type != slice.address_type
                        || slice_service(old) != slice_service(&slice)
                });
                self.unindex_slice(&id);
                if let Some(service) = slice_service(&slice) {
                    self.slices_by_service
                        .entry(NamespacedName::new(id.namespace.clone(), service))
                        .or_default()
                        .insert(id.name.clone());
                }
                self.endpoint_slices.insert(id, slice);
                changed
            }
        }
    }

    /// Removes the object; returns whether it was there.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        match key.kind {
            Kind::Route => self.routes.remove(&key.id).is_some(),
            Kind::Service => self.services.remove(&key.id).is_some(),
            Kind::EndpointSlice => {
                self.unindex_slice(&key.id);
                self.endpoint_slices.remove(&key.id).is_some()
            }
        }
    }

    /// Every Route with where it came from, in `namespace/name` order.
    pub fn routes(&self) -> impl Iterator<Item = (&NamespacedName, &Arc<Route>, &Origin)> {
        self.routes
            .iter()
            .map(|(id, (route, origin))| (id, route, origin))
    }

    pub fn service(&self, id: &NamespacedName) -> Option<&Arc<Service>> {
        self.services.get(id)
    }

    /// The Service the stored EndpointSlice `id` belongs to.
    pub fn owner_of_slice(&self, id: &NamespacedName) -> Option<NamespacedName> {
        slice_owner(&id.namespace, self.endpoint_slices.get(id)?)
    }

    /// The EndpointSlices labelled as belonging to the Service `id`.
    pub fn endpoint_slices_of(&self, id: &NamespacedName) -> impl Iterator<Item = &EndpointSlice> {
        self.slices_by_service
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|name| {
                self.endpoint_slices
                    .get(&NamespacedName::new(id.namespace.clone(), name.clone()))
                    .map(|slice| &**slice)
            })
    }

    fn unindex_slice(&mut self, id: &NamespacedName) {
        let Some(service) = self.endpoint_slices.get(id).and_then(|s| slice_service(s)) else {
            return;
        };
        let service = NamespacedName::new(id.namespace.clone(), service);
        if let Some(names) = self.slices_by_service.get_mut(&service) {
            names.remove(&id.name);
            if names.is_empty() {
                self.slices_by_service.remove(&service);
            }
        }
    }
}

/// The Service (namespace/name) an EndpointSlice in `namespace` belongs to, by its label.
pub fn slice_owner(namespace: &str, slice: &EndpointSlice) -> Option<NamespacedName> {
    slice_service(slice).map(|service| NamespacedName::new(namespace, service))
}

fn slice_service(slice: &EndpointSlice) -> Option<String> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn indexes_endpoint_slices_by_their_service_label() {
        let mut store = Store::default();
        store.apply(
            fixtures::slice("default", "echo-a", "echo", 8080, &["127.0.0.1"]),
            None,
        );
        store.apply(
            fixtures::slice("default", "echo-b", "echo", 8080, &["127.0.0.2"]),
            None,
        );
        store.apply(
            fixtures::slice("other", "echo-c", "echo", 8080, &["127.0.0.3"]),
            None,
        );
        let echo = NamespacedName::new("default", "echo");
        assert_eq!(store.endpoint_slices_of(&echo).count(), 2);

        store.delete(&ObjectKey {
            kind: Kind::EndpointSlice,
            id: NamespacedName::new("default", "echo-a"),
        });
        assert_eq!(store.endpoint_slices_of(&echo).count(), 1);
    }

    #[test]
    fn relabelled_slice_moves_to_its_new_service() {
        let mut store = Store::default();
        store.apply(
            fixtures::slice("default", "s", "old", 80, &["127.0.0.1"]),
            None,
        );
        store.apply(
            fixtures::slice("default", "s", "new", 80, &["127.0.0.1"]),
            None,
        );
        assert_eq!(
            store
                .endpoint_slices_of(&NamespacedName::new("default", "old"))
                .count(),
            0
        );
        assert_eq!(
            store
                .endpoint_slices_of(&NamespacedName::new("default", "new"))
                .count(),
            1
        );
    }

    #[test]
    fn a_status_only_update_is_not_a_routing_change() {
        let mut store = Store::default();
        let route = fixtures::route("default", "echo", &[], "/", IntOrString::Int(8080));
        assert!(store.apply(route.clone(), None));
        let Object::Route(mut with_status) = route else {
            unreachable!()
        };
        let updated = Arc::make_mut(&mut with_status);
        updated.metadata.resource_version = Some("2".into());
        updated.status = Some(weir_crds::RouteStatus::default());
        assert!(!store.apply(Object::Route(with_status.clone()), None));
        Arc::make_mut(&mut with_status)
            .spec
            .hosts
            .push("echo.local".into());
        assert!(store.apply(Object::Route(with_status), None));
    }

    #[test]
    fn applying_the_same_object_twice_changes_nothing() {
        let mut store = Store::default();
        let service = fixtures::service("default", "echo", &[("http", 8080)]);
        assert!(store.apply(service.clone(), None));
        assert!(!store.apply(service, None));
    }
}
