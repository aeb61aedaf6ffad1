//! What the control plane decided about each object, for status conditions, logs and
//! `/debug/routes`.
//!
//! Verdicts are enums whose names are the condition reasons users see (Gateway API's shape:
//! `Accepted` and `ResolvedRefs`), so code compares variants, never strings.

use std::{fmt, sync::Arc};

use crate::ids::NamespacedName;

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A Kubernetes API server: its status is written back there.
    Cluster,
    /// A manifest file, as `file, document N`.
    File(Arc<str>),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Cluster => f.write_str("cluster"),
            Origin::File(place) => f.write_str(place),
        }
    }
}

/// Why a Route is or is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcceptedReason {
    /// Valid and served.
    Accepted,
    /// A field is invalid; the message names it.
    Invalid,
    /// A regular expression does not compile.
    InvalidRegex,
}

impl AcceptedReason {
    /// The condition reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::Invalid => "Invalid",
            Self::InvalidRegex => "InvalidRegex",
        }
    }
}

/// Why a Route's references do or do not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolvedRefsReason {
    /// Every backend has ready endpoints.
    ResolvedRefs,
    BackendNotFound,
    PortNotFound,
    NoReadyEndpoints,
    /// A certificate or CA Secret is missing or unusable; the message says which and why.
    InvalidCertificateRef,
    /// An AI provider's credentials Secret is missing, not labelled as provider credentials,
    /// or its key is missing or unusable; the message says which and why.
    InvalidCredentialsRef,
}

impl ResolvedRefsReason {
    /// The condition reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResolvedRefs => "ResolvedRefs",
            Self::BackendNotFound => "BackendNotFound",
            Self::PortNotFound => "PortNotFound",
            Self::NoReadyEndpoints => "NoReadyEndpoints",
            Self::InvalidCertificateRef => "InvalidCertificateRef",
            Self::InvalidCredentialsRef => "InvalidCredentialsRef",
        }
    }
}

/// The verdict on one Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteReport {
    pub id: NamespacedName,
    pub origin: Origin,
    /// `metadata.generation` of the version this report is about.
    pub generation: Option<i64>,
    pub accepted: AcceptedReason,
    pub resolved_refs: ResolvedRefsReason,
    /// A sentence a user can act on; empty when all is well.
    pub message: String,
}

impl RouteReport {
    /// Whether the Route's current spec is valid and serving.
    pub fn is_accepted(&self) -> bool {
        self.accepted == AcceptedReason::Accepted
    }

    /// Whether every backend resolved to at least one ready endpoint.
    pub fn refs_resolved(&self) -> bool {
        self.resolved_refs == ResolvedRefsReason::ResolvedRefs
    }
}

/// A reference that did not resolve, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefProblem {
    pub reason: ResolvedRefsReason,
    /// Names what did not resolve and why: `spec.rules[0].backends[1]: Service web/api not
    /// found`, `Secret ai/openai not found (…)`.
    pub message: String,
}

/// What Weir made of one Ingress it serves (its class is Weir's). An Ingress has no
/// conditions to carry problems, so they are logged and shown in `/debug/routes` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressReport {
    pub id: NamespacedName,
    pub origin: Origin,
    pub generation: Option<i64>,
    /// Each problem naming its field: `spec.rules[0].http.paths[1].backend: Service web/api
    /// not found`; empty when all is well.
    pub problems: Vec<String>,
}

/// The verdict on one AIModel: conditions `Accepted` and `ResolvedRefs`, and each provider's
/// state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiModelReport {
    pub id: NamespacedName,
    pub origin: Origin,
    pub generation: Option<i64>,
    /// `None`: accepted; otherwise every problem, each naming its field.
    pub invalid: Option<String>,
    /// Whether the served version is the last valid one (the current is invalid).
    pub serving_last_valid: bool,
    /// The providers of the served version, in the order they are tried; empty when nothing
    /// is served.
    pub providers: Vec<ProviderReport>,
}

/// One provider's state in an [`AiModelReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReport {
    pub name: String,
    /// Why it cannot be used; `None` when it is ready.
    pub unresolved: Option<RefProblem>,
}

impl AiModelReport {
    pub fn is_accepted(&self) -> bool {
        self.invalid.is_none()
    }

    pub fn refs_resolved(&self) -> bool {
        self.providers.iter().all(|p| p.unresolved.is_none())
    }
}

/// A problem a source found that no object carries (a file that does not parse, say).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceProblem {
    /// Where: a file and document index, or an object.
    pub origin: String,
    pub reason: String,
}

/// A condition in Gateway API's shape; its type and reason are the spec's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    pub status: bool,
    pub reason: &'static str,
    /// A sentence a user can act on; may be empty when all is well.
    pub message: String,
}

impl Condition {
    pub fn new(
        kind: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// The verdict on one GatewayClass whose controller is Weir's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayClassReport {
    pub name: String,
    pub origin: Origin,
    pub generation: Option<i64>,
    pub conditions: Vec<Condition>,
    /// The Gateway API features Weir implements, by their conformance names, sorted.
    pub supported_features: Vec<&'static str>,
}

/// The verdict on one Gateway of a Weir class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayReport {
    pub id: NamespacedName,
    pub origin: Origin,
    pub generation: Option<i64>,
    /// Where it is reachable: `(type, value)`, `IPAddress` or `Hostname`.
    pub addresses: Vec<(&'static str, String)>,
    pub conditions: Vec<Condition>,
    /// One per listener, in the order of the spec.
    pub listeners: Vec<GatewayListenerReport>,
}

/// One listener of a Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayListenerReport {
    pub name: String,
    /// Route kinds it accepts, as `(group, kind)`.
    pub supported_kinds: Vec<(&'static str, &'static str)>,
    pub attached_routes: u32,
    pub conditions: Vec<Condition>,
}

/// A route's parent reference, as the route wrote it (the API server's defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParentRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub section_name: Option<String>,
    pub port: Option<i32>,
}

/// The verdict on one HTTPRoute: one entry per parent of a Weir class it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRouteReport {
    pub id: NamespacedName,
    pub origin: Origin,
    pub generation: Option<i64>,
    pub parents: Vec<RouteParentReport>,
}

/// A route's standing with one parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteParentReport {
    pub parent: ParentRef,
    pub conditions: Vec<Condition>,
}
