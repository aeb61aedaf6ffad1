//! Translation of each API kind Weir serves into the contract ([`weir_contract`]): one module
//! per kind, each validating its object and resolving its references through a
//! [`Lookup`](crate::resolve::Lookup).

pub mod aimodel;
pub mod gateway_api;
pub mod ingress;
pub mod policy;
pub mod route;

use std::sync::Arc;

use weir_contract::{AcceptedReason, Route, TlsCertificate};

pub use weir_contract::RefProblem;

/// Why an object's spec could not be translated, as its `Accepted` condition says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: AcceptedReason,
    /// Names the field: `spec.rules[0].matches[0].path.value: …`.
    pub message: String,
}

/// What translating an object gave: the route to serve, the certificates it brings to the
/// TLS listener, and the references that did not resolve (the route is served regardless).
#[derive(Debug)]
pub struct Translated {
    pub route: Route,
    pub certificates: Vec<Arc<TlsCertificate>>,
    /// In field order; the first gives the `ResolvedRefs` reason.
    pub problems: Vec<RefProblem>,
}
