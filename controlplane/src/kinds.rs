//! The kinds of object Weir reads: the one place each kind is known.
//!
//! For every kind this module says how it is named in a manifest (apiVersion and kind), whether
//! it is namespaced (a cluster-scoped kind, IngressClass, is filed under namespace `""`) and
//! how a missing namespace reads, which CRD (if any) must exist before it
//! can be watched, what counts as a change to it (a status-only write does not), and which
//! other object a change to it stands for (an EndpointSlice's change is its Service's). The
//! file source decodes documents with [`Object::decode`], the Kubernetes source starts one
//! informer per kind through [`Kind::visit`], and the store files objects by [`ObjectKey`].
//!
//! Adding a kind means a variant in [`Kind`] and [`Object`], an entry in [`KINDS`], an arm in
//! each `match` below, a [`Watched`] impl, and a translation module if it is served.

use std::{fmt, sync::Arc};

use k8s_openapi::{
    api::{
        core::v1::{Namespace, Secret, Service},
        discovery::v1::EndpointSlice,
        networking::v1::{Ingress, IngressClass},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::Resource;
use serde::de::DeserializeOwned;
use weir_contract::NamespacedName;
use weir_crds::gateway_api::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use weir_informer::{Informer, InformerFactory, WatchScope};

/// The label that makes a Secret a provider API key the AI gateway may read (value `"true"`).
pub const AI_CREDENTIALS_LABEL: &str = "weir.dev/ai-credentials";

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The kinds of object Weir reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Route,
    Service,
    EndpointSlice,
    Secret,
    AIModel,
    /// A Secret labelled `weir.dev/ai-key: "true"`: a client key of the AI gateway.
    ClientKey,
    /// A Secret labelled `weir.dev/ai-credentials: "true"`: a provider's API key.
    ProviderKey,
    /// `networking.k8s.io/v1` IngressClass: cluster-scoped, filed under namespace `""`.
    IngressClass,
    /// `networking.k8s.io/v1` Ingress; served when its class is Weir's.
    Ingress,
    /// A Namespace (cluster-scoped): its labels decide which Gateway listeners admit routes
    /// from it (`allowedRoutes.namespaces.from: Selector`).
    Namespace,
    /// Gateway API GatewayClass (cluster-scoped); Weir implements those of its controller.
    GatewayClass,
    /// Gateway API Gateway; served when its class is Weir's.
    Gateway,
    /// Gateway API HTTPRoute; served on the Weir Gateways it attaches to.
    HTTPRoute,
    /// Gateway API ReferenceGrant: lets routes and Gateways refer across namespaces.
    ReferenceGrant,
}

/// What Weir knows about a kind.
#[derive(Debug)]
pub struct KindInfo {
    pub kind: Kind,
    /// As written in manifests: `weir.dev/v1alpha1`.
    pub api_version: &'static str,
    /// As written in manifests: `Route`.
    pub name: &'static str,
    /// The CRD that must be Established before the kind can be watched; `None` for built-in kinds.
    pub crd: Option<&'static str>,
    /// In a cluster, only objects matching this field selector are watched.
    pub field_selector: Option<&'static str>,
    /// In a cluster, only objects matching this label selector are watched.
    pub label_selector: Option<&'static str>,
    /// Cluster-scoped (no namespace): its identity's namespace is `""`.
    pub cluster_scoped: bool,
}

/// Every kind, in the order the store files them.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: Kind::Route,
        api_version: "weir.dev/v1alpha1",
        name: "Route",
        crd: Some("routes.weir.dev"),
        field_selector: None,
        label_selector: None,
        cluster_scoped: false,
    },
    KindInfo {
        kind: Kind::Service,
        api_version: "v1",
        name: "Service",
        crd: None,
        field_selector: None,
        label_selector: None,
        cluster_scoped: false,
    },
    KindInfo {
        kind: Kind::EndpointSlice,
        api_version: "discovery.k8s.io/v1",
        name: "EndpointSlice",
        crd: None,
        field_selector: None,
        label_selector: None,
        cluster_scoped: false,
    },
    KindInfo {
        kind: Kind::Secret,
        api_version: "v1",
        name: "Secret",
        crd: None,
        // Weir reads certificates; other Secrets it neither needs nor should see.
        field_selector: Some("type=kubernetes.io/tls"),
        label_selector: None,
        cluster_scoped: false,
    },
    KindInfo {
        kind: Kind::AIModel,
        api_version: "weir.dev/v1alpha1",
        name: "AIModel",
        crd: Some("aimodels.weir.dev"),
        field_selector: None,
        label_selector: None,
        cluster_scoped: false,
    },
    // Client keys and provider keys are Secrets too, but only those labelled for the AI
    // gateway: Weir never lists the rest. A manifest `Secret` is filed by its labels.
    KindInfo {
        kind: Kind::ClientKey,
        api_version: "v1",
        name: "Secret",
        crd: None,
        field_selector: None,
        label_selector: Some("weir.dev/ai-key=true"),
        cluster_scoped: false,
    },
    KindInfo {
        kind: Kind::ProviderKey,
        api_version: "v1",
        name: "Secret",
        crd: None,
        field_selector: None,
        // Disjoint from client keys, so no Secret is two objects of one informer's kind.
        label_selector: Some("weir.dev/ai-credentials=true,!weir.dev/ai-key"),
        cluster_scoped: false,
    },
    KindInfo {
        kind: Kind::IngressClass,
        api_version: "networking.k8s.io/v1",
        name: "IngressClass",
        crd: None,
        field_selector: None,
        label_selector: None,
        cluster_scoped: true,
    },
    KindInfo {
        kind: Kind::Ingress,
        api_version: "networking.k8s.io/v1",
        name: "Ingress",
        crd: None,
        field_selector: None,
        label_selector: None,
        cluster_scoped: false,
    },
    KindInfo {
        kind: Kind::Namespace,
        api_version: "v1",
        name: "Namespace",
        crd: None,
        field_selector: None,
        label_selector: None,
        cluster_scoped: true,
    },
    KindInfo {
        kind: Kind::GatewayClass,
        api_version: "gateway.networking.k8s.io/v1",
        name: "GatewayClass",
        crd: Some("gatewayclasses.gateway.networking.k8s.io"),
        field_selector: None,
        label_selector: None,
        cluster_scoped: true,
    },
    KindInfo {
        kind: Kind::Gateway,
        api_version: "gateway.networking.k8s.io/v1",
        name: "Gateway",
        crd: Some("gateways.gateway.networking.k8s.io"),
        field_selector: None,
        label_selector: None,
        cluster_scoped: false,
    },
    KindInfo {
        kind: Kind::HTTPRoute,
        api_version: "gateway.networking.k8s.io/v1",
        name: "HTTPRoute",
        crd: Some("httproutes.gateway.networking.k8s.io"),
        field_selector: None,
        label_selector: None,
        cluster_scoped: false,
    },
    KindInfo {
        kind: Kind::ReferenceGrant,
        api_version: "gateway.networking.k8s.io/v1beta1",
        name: "ReferenceGrant",
        crd: Some("referencegrants.gateway.networking.k8s.io"),
        field_selector: None,
        label_selector: None,
        cluster_scoped: false,
    },
];

impl Kind {
    pub fn info(self) -> &'static KindInfo {
        KINDS
            .iter()
            .find(|info| info.kind == self)
            .expect("every kind has an entry in KINDS")
    }

    /// Calls `visitor` with the Rust type of this kind, for code generic over kinds.
    pub fn visit<V: KindVisitor>(self, visitor: &mut V) -> V::Output {
        match self {
            Kind::Route => visitor.visit::<weir_crds::Route>(self),
            Kind::Service => visitor.visit::<Service>(self),
            Kind::EndpointSlice => visitor.visit::<EndpointSlice>(self),
            Kind::Secret | Kind::ClientKey | Kind::ProviderKey => visitor.visit::<Secret>(self),
            Kind::AIModel => visitor.visit::<weir_crds::AIModel>(self),
            Kind::IngressClass => visitor.visit::<IngressClass>(self),
            Kind::Ingress => visitor.visit::<Ingress>(self),
            Kind::Namespace => visitor.visit::<Namespace>(self),
            Kind::GatewayClass => visitor.visit::<GatewayClass>(self),
            Kind::Gateway => visitor.visit::<Gateway>(self),
            Kind::HTTPRoute => visitor.visit::<HTTPRoute>(self),
            Kind::ReferenceGrant => visitor.visit::<ReferenceGrant>(self),
        }
    }

    /// The identity of an object of this kind: a cluster-scoped object's namespace is `""`,
    /// a namespaced object's missing namespace reads as [`DEFAULT_NAMESPACE`].
    pub fn object_id(self, meta: &ObjectMeta) -> NamespacedName {
        if self.info().cluster_scoped {
            NamespacedName::new("", meta.name.as_deref().unwrap_or_default())
        } else {
            object_id(meta)
        }
    }
}

/// Code that runs once per kind with its type, as [`Kind::visit`] calls it.
pub trait KindVisitor {
    type Output;
    fn visit<K: Watched>(&mut self, kind: Kind) -> Self::Output;
}

/// A kind as a Rust type that can be watched in a cluster.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static
{
    /// The object, as `kind` (one Rust type may serve several kinds, as Secret does).
    fn into_object(self: Arc<Self>, kind: Kind) -> Object;

    /// The shared informer of this type (namespaced, or cluster-scoped for IngressClass).
    fn informer(factory: &InformerFactory, scope: WatchScope) -> Arc<Informer<Self>>;
}

/// [`Watched::informer`] for a namespaced type.
macro_rules! namespaced_informer {
    () => {
        fn informer(factory: &InformerFactory, scope: WatchScope) -> Arc<Informer<Self>> {
            factory.namespaced::<Self>(scope)
        }
    };
}

impl Watched for weir_crds::Route {
    fn into_object(self: Arc<Self>, _: Kind) -> Object {
        Object::Route(self)
    }
    namespaced_informer!();
}

impl Watched for Service {
    fn into_object(self: Arc<Self>, _: Kind) -> Object {
        Object::Service(self)
    }
    namespaced_informer!();
}

impl Watched for EndpointSlice {
    fn into_object(self: Arc<Self>, _: Kind) -> Object {
        Object::EndpointSlice(self)
    }
    namespaced_informer!();
}

impl Watched for Ingress {
    fn into_object(self: Arc<Self>, _: Kind) -> Object {
        Object::Ingress(self)
    }
    namespaced_informer!();
}

impl Watched for IngressClass {
    fn into_object(self: Arc<Self>, _: Kind) -> Object {
        Object::IngressClass(self)
    }

    /// IngressClasses are cluster-scoped: watched cluster-wide even with `--namespace`.
    fn informer(factory: &InformerFactory, scope: WatchScope) -> Arc<Informer<Self>> {
        factory.cluster::<Self>(scope)
    }
}

/// [`Watched`] for a Gateway API kind: `$object` is its [`Object`] variant; `$informer` is
/// `namespaced` or `cluster`.
macro_rules! watched {
    ($type:ty, $object:ident, namespaced) => {
        impl Watched for $type {
            fn into_object(self: Arc<Self>, _: Kind) -> Object {
                Object::$object(self)
            }
            namespaced_informer!();
        }
    };
    ($type:ty, $object:ident, cluster) => {
        impl Watched for $type {
            fn into_object(self: Arc<Self>, _: Kind) -> Object {
                Object::$object(self)
            }

            /// Cluster-scoped: watched cluster-wide even with `--namespace`.
            fn informer(factory: &InformerFactory, scope: WatchScope) -> Arc<Informer<Self>> {
                factory.cluster::<Self>(scope)
            }
        }
    };
}

watched!(Namespace, Namespace, cluster);
watched!(GatewayClass, GatewayClass, cluster);
watched!(Gateway, Gateway, namespaced);
watched!(HTTPRoute, HTTPRoute, namespaced);
watched!(ReferenceGrant, ReferenceGrant, namespaced);

impl Watched for Secret {
    namespaced_informer!();

    fn into_object(self: Arc<Self>, kind: Kind) -> Object {
        match kind {
            Kind::ClientKey => Object::ClientKey(self),
            Kind::ProviderKey => Object::ProviderKey(self),
            _ => Object::Secret(self),
        }
    }
}

impl Watched for weir_crds::AIModel {
    fn into_object(self: Arc<Self>, _: Kind) -> Object {
        Object::AIModel(self)
    }
    namespaced_informer!();
}

/// An object's kind and identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub id: NamespacedName,
}

impl ObjectKey {
    pub fn new(kind: Kind, id: NamespacedName) -> Self {
        Self { kind, id }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.kind, self.id)
    }
}

/// The namespace an object without one is in: a manifest applied without `-n`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// An object's identity from its metadata, a missing namespace read as [`DEFAULT_NAMESPACE`]:
/// the one place that decides it, for files and the cluster alike.
pub fn object_id(meta: &ObjectMeta) -> NamespacedName {
    NamespacedName::new(
        meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// An object as a source delivered it. Shared, never mutated.
///
/// Its `Debug` never shows a Secret's data: only its name, type and keys.
#[derive(Clone, PartialEq)]
pub enum Object {
    Route(Arc<weir_crds::Route>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Secret(Arc<Secret>),
    AIModel(Arc<weir_crds::AIModel>),
    ClientKey(Arc<Secret>),
    ProviderKey(Arc<Secret>),
    IngressClass(Arc<IngressClass>),
    Ingress(Arc<Ingress>),
    Namespace(Arc<Namespace>),
    GatewayClass(Arc<GatewayClass>),
    Gateway(Arc<Gateway>),
    HTTPRoute(Arc<HTTPRoute>),
    ReferenceGrant(Arc<ReferenceGrant>),
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Route(o) => f.debug_tuple("Route").field(o).finish(),
            Object::Service(o) => f.debug_tuple("Service").field(o).finish(),
            Object::EndpointSlice(o) => f.debug_tuple("EndpointSlice").field(o).finish(),
            Object::AIModel(o) => f.debug_tuple("AIModel").field(o).finish(),
            Object::IngressClass(o) => f.debug_tuple("IngressClass").field(o).finish(),
            Object::Ingress(o) => f.debug_tuple("Ingress").field(o).finish(),
            Object::Namespace(o) => f.debug_tuple("Namespace").field(o).finish(),
            Object::GatewayClass(o) => f.debug_tuple("GatewayClass").field(o).finish(),
            Object::Gateway(o) => f.debug_tuple("Gateway").field(o).finish(),
            Object::HTTPRoute(o) => f.debug_tuple("HTTPRoute").field(o).finish(),
            Object::ReferenceGrant(o) => f.debug_tuple("ReferenceGrant").field(o).finish(),
            Object::Secret(secret) | Object::ClientKey(secret) | Object::ProviderKey(secret) => {
                let keys: Vec<&String> = secret
                    .data
                    .iter()
                    .flat_map(|data| data.keys())
                    .chain(secret.string_data.iter().flat_map(|data| data.keys()))
                    .collect();
                f.debug_struct(self.kind().info().name)
                    .field("id", &object_id(&secret.metadata))
                    .field("type", &secret.type_)
                    .field("keys", &keys)
                    .finish_non_exhaustive()
            }
        }
    }
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Route(_) => Kind::Route,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Secret(_) => Kind::Secret,
            Object::AIModel(_) => Kind::AIModel,
            Object::ClientKey(_) => Kind::ClientKey,
            Object::ProviderKey(_) => Kind::ProviderKey,
            Object::IngressClass(_) => Kind::IngressClass,
            Object::Ingress(_) => Kind::Ingress,
            Object::Namespace(_) => Kind::Namespace,
            Object::GatewayClass(_) => Kind::GatewayClass,
            Object::Gateway(_) => Kind::Gateway,
            Object::HTTPRoute(_) => Kind::HTTPRoute,
            Object::ReferenceGrant(_) => Kind::ReferenceGrant,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Route(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) | Object::ClientKey(o) | Object::ProviderKey(o) => &o.metadata,
            Object::AIModel(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::Ingress(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::GatewayClass(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::HTTPRoute(o) => &o.metadata,
            Object::ReferenceGrant(o) => &o.metadata,
        }
    }

    /// The object's kind and `namespace/name` (`/name` when cluster-scoped).
    pub fn key(&self) -> ObjectKey {
        let kind = self.kind();
        ObjectKey::new(kind, kind.object_id(self.meta()))
    }

    /// Whether `self` and `newer` serve the same: a new version that only Weir's own status
    /// write made (a new resourceVersion, new conditions) is not a change, or reconciling for
    /// it would double the work of every update and feed back on itself.
    pub fn same_for_weir(&self, newer: &Object) -> bool {
        match (self, newer) {
            (Object::Route(old), Object::Route(new)) => {
                old.spec == new.spec && old.metadata.generation == new.metadata.generation
            }
            (Object::Service(old), Object::Service(new)) => {
                let ports = |s: &Service| s.spec.as_ref().map(|spec| spec.ports.clone());
                ports(old) == ports(new)
            }
            (Object::EndpointSlice(old), Object::EndpointSlice(new)) => {
                old.endpoints == new.endpoints
                    && old.ports == new.ports
                    && old.address_type == new.address_type
                    && slice_service(old) == slice_service(new)
            }
            (Object::AIModel(old), Object::AIModel(new)) => {
                old.spec == new.spec && old.metadata.generation == new.metadata.generation
            }
            // Which Ingresses are Weir's depends on a class's controller and on its
            // is-default-class annotation.
            (Object::IngressClass(old), Object::IngressClass(new)) => {
                old.spec == new.spec && old.metadata.annotations == new.metadata.annotations
            }
            // The legacy class annotation chooses the class; creation time breaks ties between
            // default backends. Status (Weir's own write) is neither.
            (Object::Ingress(old), Object::Ingress(new)) => {
                old.spec == new.spec
                    && old.metadata.annotations == new.metadata.annotations
                    && old.metadata.creation_timestamp == new.metadata.creation_timestamp
            }
            // Gateway API objects: their spec, and the generation their status must name.
            // Status is Weir's own write, and Gateways' addresses are assigned from the pool,
            // never read back.
            (Object::GatewayClass(old), Object::GatewayClass(new)) => {
                old.spec == new.spec && old.metadata.generation == new.metadata.generation
            }
            (Object::Gateway(old), Object::Gateway(new)) => {
                old.spec == new.spec && old.metadata.generation == new.metadata.generation
            }
            (Object::HTTPRoute(old), Object::HTTPRoute(new)) => {
                old.spec == new.spec
                    && old.metadata.generation == new.metadata.generation
                    && old.metadata.creation_timestamp == new.metadata.creation_timestamp
            }
            (Object::ReferenceGrant(old), Object::ReferenceGrant(new)) => old.spec == new.spec,
            (Object::Namespace(old), Object::Namespace(new)) => {
                old.metadata.labels == new.metadata.labels
            }
            (Object::Secret(old), Object::Secret(new))
            | (Object::ClientKey(old), Object::ClientKey(new))
            | (Object::ProviderKey(old), Object::ProviderKey(new)) => {
                old.type_ == new.type_
                    && old.data == new.data
                    && old.string_data == new.string_data
                    && old.metadata.labels == new.metadata.labels
            }
            _ => false,
        }
    }

    /// The object a change to this one is a change of, if any: an EndpointSlice is part of
    /// the Service its `kubernetes.io/service-name` label names.
    pub fn part_of(&self) -> Option<ObjectKey> {
        match self {
            Object::EndpointSlice(slice) => {
                let namespace = object_id(&slice.metadata).namespace;
                let service = slice_service(slice)?;
                Some(ObjectKey::new(
                    Kind::Service,
                    NamespacedName::new(namespace, service),
                ))
            }
            Object::Route(_)
            | Object::Service(_)
            | Object::Secret(_)
            | Object::AIModel(_)
            | Object::ClientKey(_)
            | Object::ProviderKey(_)
            | Object::IngressClass(_)
            | Object::Ingress(_)
            | Object::Namespace(_)
            | Object::GatewayClass(_)
            | Object::Gateway(_)
            | Object::HTTPRoute(_)
            | Object::ReferenceGrant(_) => None,
        }
    }
}

fn slice_service(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)
        .map(String::as_str)
}

/// Why a manifest document is not an object Weir can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{kind} has no metadata.name")]
    NoName { kind: String },
    #[error(
        "unsupported kind {kind:?} in apiVersion {api_version:?} (Weir reads {})",
        supported_kinds()
    )]
    UnsupportedKind { api_version: String, kind: String },
    /// The kind is known but the document does not convert; `key` names the object.
    #[error("{kind} {}: {reason}", key.id)]
    Invalid {
        key: ObjectKey,
        kind: &'static str,
        reason: String,
    },
}

fn supported_kinds() -> String {
    KINDS
        .iter()
        .map(|info| format!("{} {}", info.api_version, info.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Object {
    /// Converts one manifest document into the typed object its apiVersion and kind name,
    /// filling in a missing namespace as the cluster would.
    pub fn decode(mut document: serde_json::Value) -> Result<Object, DecodeError> {
        let field = |document: &serde_json::Value, pointer: &str| {
            document
                .pointer(pointer)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let api_version = field(&document, "/apiVersion").unwrap_or_default();
        let kind_name = field(&document, "/kind").unwrap_or_default();
        let Some(info) = KINDS
            .iter()
            .find(|info| info.api_version == api_version && info.name == kind_name)
        else {
            return Err(DecodeError::UnsupportedKind {
                api_version,
                kind: kind_name,
            });
        };
        let Some(name) = field(&document, "/metadata/name") else {
            return Err(DecodeError::NoName { kind: kind_name });
        };
        let namespace = if info.cluster_scoped {
            // A namespace written on a cluster-scoped object means nothing, as in a cluster.
            if let Some(metadata) = document.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                metadata.remove("namespace");
            }
            String::new()
        } else {
            let namespace = field(&document, "/metadata/namespace")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
            if let Some(metadata) = document.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                metadata.insert("namespace".into(), namespace.clone().into());
            }
            namespace
        };
        let invalid = |reason| DecodeError::Invalid {
            key: ObjectKey::new(
                info.kind,
                NamespacedName::new(namespace.clone(), name.clone()),
            ),
            kind: info.name,
            reason,
        };
        match info.kind {
            Kind::Route => convert(document).map(|o| Object::Route(Arc::new(o))),
            Kind::Service => convert(document).map(|o| Object::Service(Arc::new(o))),
            Kind::EndpointSlice => convert(document).map(|o| Object::EndpointSlice(Arc::new(o))),
            Kind::Secret | Kind::ClientKey | Kind::ProviderKey => {
                convert_secret(document).map(|secret| {
                    let kind = secret_kind(&secret);
                    Arc::new(secret).into_object(kind)
                })
            }
            Kind::AIModel => convert(document).map(|o| Object::AIModel(Arc::new(o))),
            Kind::IngressClass => convert(document).map(|o| Object::IngressClass(Arc::new(o))),
            Kind::Ingress => convert(document).map(|o| Object::Ingress(Arc::new(o))),
            Kind::Namespace => convert(document).map(|o| Object::Namespace(Arc::new(o))),
            Kind::GatewayClass => convert(document).map(|o| Object::GatewayClass(Arc::new(o))),
            Kind::Gateway => convert(document).map(|o| Object::Gateway(Arc::new(o))),
            Kind::HTTPRoute => convert(document).map(|o| Object::HTTPRoute(Arc::new(o))),
            Kind::ReferenceGrant => convert(document).map(|o| Object::ReferenceGrant(Arc::new(o))),
        }
        .map_err(invalid)
    }
}

/// The kind a Secret manifest is filed as: by its labels, as the cluster's informers select.
fn secret_kind(secret: &Secret) -> Kind {
    let label = |name: &str| {
        secret
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(name))
            .is_some_and(|value| value == "true")
    };
    if label(weir_crds::AI_KEY_LABEL) {
        Kind::ClientKey
    } else if label(AI_CREDENTIALS_LABEL) {
        Kind::ProviderKey
    } else {
        Kind::Secret
    }
}

/// A Secret, whose conversion error names the field but never quotes a value: a parser's
/// message may repeat what it could not read, and that may be the secret.
fn convert_secret(document: serde_json::Value) -> Result<Secret, String> {
    serde_path_to_error::deserialize(document).map_err(|error| {
        format!(
            "{}: not a valid value (the parser's message is withheld: it may quote Secret data)",
            error.path()
        )
    })
}

/// Deserialises with the failing field's path in the error (`spec.rules[0].method: …`).
fn convert<T: DeserializeOwned>(document: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(document).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_each_kind_by_api_version_and_kind_with_the_default_namespace() {
        let object = Object::decode(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
            "spec": {"ports": [{"port": 80}]}
        }))
        .unwrap();
        assert_eq!(object.key().to_string(), "Service default/echo");
        assert_eq!(object.meta().namespace.as_deref(), Some("default"));
    }

    #[test]
    fn an_unknown_kind_names_those_weir_reads() {
        let error = Object::decode(json!({"apiVersion": "apps/v1", "kind": "Deployment"}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unsupported kind \"Deployment\""), "{error}");
        assert!(error.contains("weir.dev/v1alpha1 Route"), "{error}");
    }

    #[test]
    fn a_document_that_does_not_convert_names_its_object_and_field() {
        let error = Object::decode(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": "echo", "namespace": "web"},
            "spec": {"rules": [{"timeout": [1], "backends": []}]}
        }))
        .unwrap_err();
        let DecodeError::Invalid { key, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(key.to_string(), "Route web/echo");
        assert!(
            error.to_string().contains("spec.rules[0].timeout"),
            "{error}"
        );
    }

    #[test]
    fn a_slice_is_part_of_the_service_its_label_names() {
        let slice = crate::fixtures::slice("web", "echo-1", "echo", 80, &["10.0.0.1"]);
        assert_eq!(slice.part_of().unwrap().to_string(), "Service web/echo");
        let service = crate::fixtures::service("web", "echo", &[("http", 80)]);
        assert_eq!(service.part_of(), None);
    }

    #[test]
    fn a_secret_shows_its_keys_never_its_data_neither_in_debug_nor_in_errors() {
        const MARKER: &str = "c2VjcmV0LW1hcmtlcg"; // base64 of "secret-marker" (unpadded)
        let secret = Object::decode(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "shop-tls"},
            "data": {"tls.crt": format!("{MARKER}=="), "tls.key": format!("{MARKER}==")},
            "stringData": {"note": "secret-marker"}
        }))
        .unwrap();
        let debug = format!("{secret:?}");
        assert!(debug.contains("tls.key"), "{debug}");
        assert!(
            !debug.contains("secret-marker") && !debug.contains(MARKER),
            "{debug}"
        );
        assert!(!debug.contains("115, 101, 99"), "no bytes either: {debug}");

        let error = Object::decode(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"},
            "data": {"tls.key": "secret-marker is not base64!"}
        }))
        .unwrap_err()
        .to_string();
        assert!(error.contains("data"), "names the field: {error}");
        assert!(!error.contains("secret-marker"), "{error}");
    }

    #[test]
    fn every_kind_has_an_entry() {
        for kind in [
            Kind::Route,
            Kind::Service,
            Kind::EndpointSlice,
            Kind::Secret,
            Kind::AIModel,
            Kind::ClientKey,
            Kind::ProviderKey,
            Kind::IngressClass,
            Kind::Ingress,
            Kind::Namespace,
            Kind::GatewayClass,
            Kind::Gateway,
            Kind::HTTPRoute,
            Kind::ReferenceGrant,
        ] {
            assert_eq!(kind.info().kind, kind);
        }
    }

    #[test]
    fn an_ingress_class_is_cluster_scoped_and_an_ingress_namespaced() {
        let class = Object::decode(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "weir", "namespace": "ignored"},
            "spec": {"controller": "weir.dev/ingress-controller"}
        }))
        .unwrap();
        assert_eq!(
            class.key(),
            ObjectKey::new(Kind::IngressClass, NamespacedName::new("", "weir"))
        );
        let ingress = Object::decode(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "shop"}, "spec": {"ingressClassName": "weir"}
        }))
        .unwrap();
        assert_eq!(ingress.key().to_string(), "Ingress default/shop");
    }
}
