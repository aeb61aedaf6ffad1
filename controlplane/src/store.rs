//! The store: every object the sources have delivered, by kind and identity, with the
//! dependency index kept in step.
//!
//! Sources speak only [`SourceEvent`](crate::source::SourceEvent)s; the store is the one place
//! that holds what they said. Each apply or delete notes which objects it touched — the object
//! itself and, for a part such as an EndpointSlice, the whole it belongs to before and after —
//! for the reconciler to collect with [`Store::take_touched`]. A new version that changes
//! nothing Weir serves ([`Object::same_for_weir`]) is kept but touches nothing.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use k8s_openapi::api::{
    core::v1::{Secret, Service},
    discovery::v1::EndpointSlice,
    networking::v1::{Ingress, IngressClass},
};
use weir_contract::{NamespacedName, Origin};

use crate::{
    kinds::{Kind, Object, ObjectKey},
    refs::Refs,
};

/// An object and where it came from.
#[derive(Debug, Clone)]
pub struct Stored {
    pub object: Object,
    pub origin: Origin,
}

/// Every object the sources hold.
#[derive(Default, Debug)]
pub struct Store {
    objects: BTreeMap<ObjectKey, Stored>,
    refs: Refs,
    touched: BTreeSet<ObjectKey>,
}

impl Store {
    /// Stores the object; returns whether anything Weir serves may have changed.
    pub fn apply(&mut self, object: Object, origin: Origin) -> bool {
        let key = object.key();
        let changed = self
            .objects
            .get(&key)
            .is_none_or(|old| !old.object.same_for_weir(&object) || old.origin != origin);
        let whole = object.part_of();
        let whole_before = self.refs.set_whole(&key, whole.clone());
        self.objects.insert(key.clone(), Stored { object, origin });
        if changed {
            self.touched.extend(whole_before);
            self.touched.extend(whole);
            self.touched.insert(key);
        }
        changed
    }

    /// Removes the object; returns whether it was there.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        if self.objects.remove(key).is_none() {
            return false;
        }
        let whole = self.refs.set_whole(key, None);
        self.touched.extend(whole);
        self.touched.insert(key.clone());
        true
    }

    /// The objects touched by applies and deletes since the last call.
    pub fn take_touched(&mut self) -> BTreeSet<ObjectKey> {
        std::mem::take(&mut self.touched)
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Stored> {
        self.objects.get(key)
    }

    /// The objects of one kind, in `namespace/name` order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&ObjectKey, &Stored)> {
        let start = ObjectKey::new(kind, NamespacedName::new("", ""));
        self.objects
            .range(start..)
            .take_while(move |(key, _)| key.kind == kind)
    }

    /// Every Route with where it came from, in `namespace/name` order.
    pub fn routes(
        &self,
    ) -> impl Iterator<Item = (&NamespacedName, &Arc<weir_crds::Route>, &Origin)> {
        self.of_kind(Kind::Route)
            .filter_map(|(key, stored)| match &stored.object {
                Object::Route(route) => Some((&key.id, route, &stored.origin)),
                _ => None,
            })
    }

    /// Every AIModel with where it came from, in `namespace/name` order.
    pub fn ai_models(
        &self,
    ) -> impl Iterator<Item = (&NamespacedName, &Arc<weir_crds::AIModel>, &Origin)> {
        self.of_kind(Kind::AIModel)
            .filter_map(|(key, stored)| match &stored.object {
                Object::AIModel(model) => Some((&key.id, model, &stored.origin)),
                _ => None,
            })
    }

    /// Every Ingress with where it came from, in `namespace/name` order.
    pub fn ingresses(&self) -> impl Iterator<Item = (&NamespacedName, &Arc<Ingress>, &Origin)> {
        self.of_kind(Kind::Ingress)
            .filter_map(|(key, stored)| match &stored.object {
                Object::Ingress(ingress) => Some((&key.id, ingress, &stored.origin)),
                _ => None,
            })
    }

    /// Every IngressClass, in name order.
    pub fn ingress_classes(&self) -> impl Iterator<Item = &IngressClass> {
        self.of_kind(Kind::IngressClass)
            .filter_map(|(_, stored)| match &stored.object {
                Object::IngressClass(class) => Some(&**class),
                _ => None,
            })
    }

    /// Every client-key Secret, in `namespace/name` order.
    pub fn client_keys(&self) -> impl Iterator<Item = (&NamespacedName, &Arc<Secret>)> {
        self.of_kind(Kind::ClientKey)
            .filter_map(|(key, stored)| match &stored.object {
                Object::ClientKey(secret) => Some((&key.id, secret)),
                _ => None,
            })
    }

    pub fn service(&self, id: &NamespacedName) -> Option<&Arc<Service>> {
        match &self.get(&ObjectKey::new(Kind::Service, id.clone()))?.object {
            Object::Service(service) => Some(service),
            _ => None,
        }
    }

    /// The EndpointSlices labelled as belonging to the Service `id`.
    pub fn endpoint_slices_of(&self, id: &NamespacedName) -> impl Iterator<Item = &EndpointSlice> {
        self.refs
            .parts_of(&ObjectKey::new(Kind::Service, id.clone()))
            .filter_map(|key| match &self.objects.get(key)?.object {
                Object::EndpointSlice(slice) => Some(&**slice),
                _ => None,
            })
    }

    pub fn refs(&self) -> &Refs {
        &self.refs
    }

    pub fn refs_mut(&mut self) -> &mut Refs {
        &mut self.refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    const NONE: Origin = Origin::Cluster;

    #[test]
    fn indexes_endpoint_slices_by_their_service_label() {
        let mut store = Store::default();
        store.apply(
            fixtures::slice("default", "echo-a", "echo", 8080, &["127.0.0.1"]),
            NONE,
        );
        store.apply(
            fixtures::slice("default", "echo-b", "echo", 8080, &["127.0.0.2"]),
            NONE,
        );
        store.apply(
            fixtures::slice("other", "echo-c", "echo", 8080, &["127.0.0.3"]),
            NONE,
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
            NONE,
        );
        store.apply(
            fixtures::slice("default", "s", "new", 80, &["127.0.0.1"]),
            NONE,
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
        assert!(store.apply(route.clone(), NONE));
        let Object::Route(mut with_status) = route else {
            unreachable!()
        };
        let updated = Arc::make_mut(&mut with_status);
        updated.metadata.resource_version = Some("2".into());
        updated.status = Some(weir_crds::RouteStatus::default());
        assert!(!store.apply(Object::Route(with_status.clone()), NONE));
        Arc::make_mut(&mut with_status)
            .spec
            .hosts
            .push("echo.local".into());
        assert!(store.apply(Object::Route(with_status), NONE));
    }

    #[test]
    fn applying_the_same_object_twice_changes_nothing() {
        let mut store = Store::default();
        let service = fixtures::service("default", "echo", &[("http", 8080)]);
        assert!(store.apply(service.clone(), NONE));
        assert!(!store.apply(service, NONE));
    }

    #[test]
    fn a_slice_change_touches_its_service_before_and_after() {
        let mut store = Store::default();
        store.apply(
            fixtures::slice("default", "s", "old", 80, &["127.0.0.1"]),
            NONE,
        );
        store.take_touched();
        store.apply(
            fixtures::slice("default", "s", "new", 80, &["127.0.0.1"]),
            NONE,
        );
        let touched: Vec<String> = store.take_touched().iter().map(|k| k.to_string()).collect();
        assert_eq!(
            touched,
            [
                "Service default/new",
                "Service default/old",
                "EndpointSlice default/s"
            ]
        );
    }
}
