//! The snapshot: the reconciler's whole output, handed to the data plane as one immutable value.
//!
//! It holds every accepted Route with its backends resolved to ready endpoints, and a report
//! for every Route (accepted or not, and why). Nothing in it changes after it is built; a new
//! configuration is a new snapshot with a higher `generation`; a Route that did not change
//! between two snapshots is the same `Arc` in both.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde::{Serialize, Serializer};
use weir_crds::{HeaderMatch, HttpMethod};

use crate::store::{NamespacedName, SourceProblem};

/// One validated, resolved configuration.
#[derive(Debug, Default, Serialize)]
pub struct Snapshot {
    /// Increases by one with every snapshot the reconciler publishes.
    pub generation: u64,
    /// Accepted Routes, in `namespace/name` order.
    pub routes: Vec<Arc<RouteSnapshot>>,
    /// One report per Route the sources hold, accepted or not.
    pub reports: Vec<Arc<RouteReport>>,
    /// Problems the sources found outside any Route (unparseable files, unknown kinds).
    pub source_problems: Vec<SourceProblem>,
    /// How long the reconcile that built this snapshot took.
    #[serde(skip)]
    pub reconcile_duration: Duration,
}

/// A Route as the data plane serves it.
#[derive(Debug, Serialize)]
pub struct RouteSnapshot {
    pub id: NamespacedName,
    /// Lowercase host names; `*.example.com` for a wildcard; empty for every host.
    pub hosts: Vec<String>,
    pub rules: Vec<RuleSnapshot>,
}

/// A rule: its matches, its backends and its timeout.
#[derive(Debug, Serialize)]
pub struct RuleSnapshot {
    /// Never empty: a rule written without matches gets `PathPrefix /`.
    pub matches: Vec<MatchSnapshot>,
    pub backends: Vec<BackendSnapshot>,
    #[serde(serialize_with = "serialize_timeout")]
    pub timeout: Option<Duration>,
}

/// One way a request can match a rule.
#[derive(Debug, Serialize)]
pub struct MatchSnapshot {
    pub path: PathRule,
    pub method: Option<HttpMethod>,
    /// Header names are lowercase.
    pub headers: Vec<HeaderMatch>,
}

/// A path match, normalised.
#[derive(Debug, Clone, Serialize)]
pub enum PathRule {
    Exact(String),
    /// Without a trailing slash, except the root prefix `/`.
    Prefix(String),
    /// Anchored at both ends; matched against the whole path.
    #[serde(serialize_with = "serialize_regex")]
    RegularExpression(regex::Regex),
}

/// A Service backend with the endpoints that are ready to take traffic.
#[derive(Debug, Serialize)]
pub struct BackendSnapshot {
    pub service: NamespacedName,
    pub weight: u32,
    /// Ready endpoints, sorted; empty when the Service is unknown or has none ready.
    pub endpoints: Vec<SocketAddr>,
    /// Why the reference did not resolve, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unresolved: Option<Unresolved>,
}

/// Why a backend reference did not resolve to a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unresolved {
    /// No Service of that name in the Route's namespace.
    BackendNotFound,
    /// The Service has no port of that number or name.
    PortNotFound,
}

impl Unresolved {
    /// The condition reason users see.
    pub fn reason(self) -> &'static str {
        match self {
            Self::BackendNotFound => "BackendNotFound",
            Self::PortNotFound => "PortNotFound",
        }
    }
}

/// What the reconciler decided about one Route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteReport {
    pub id: NamespacedName,
    /// Where the Route came from (file and document), when the source knows.
    pub origin: Option<String>,
    /// `metadata.generation` of the version this report is about.
    pub generation: Option<i64>,
    /// Whether the Route's current spec is valid and serving.
    pub accepted: bool,
    /// `Accepted`, `Invalid` or `InvalidRegex`.
    pub accepted_reason: &'static str,
    /// Whether every backend resolved to at least one ready endpoint.
    pub resolved_refs: bool,
    /// `ResolvedRefs`, `BackendNotFound`, `PortNotFound` or `NoReadyEndpoints`.
    pub resolved_refs_reason: &'static str,
    /// A sentence a user can act on; empty when all is well.
    pub message: String,
}

fn serialize_timeout<S: Serializer>(timeout: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match timeout {
        Some(t) => s.serialize_some(&humantime::format_duration(*t).to_string()),
        None => s.serialize_none(),
    }
}

fn serialize_regex<S: Serializer>(regex: &regex::Regex, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(regex.as_str())
}
