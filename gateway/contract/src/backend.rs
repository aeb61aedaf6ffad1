//! Where a rule sends requests: weighted backends, each of a kind (Services now; AI providers
//! next), each with the protocol it speaks and the endpoints ready to take traffic.

use std::net::SocketAddr;

use crate::{ids::NamespacedName, policy::Filter};

/// One backend of a rule, with its share of the traffic.
#[derive(Debug)]
pub struct RuleBackend {
    /// Relative share of the rule's requests; 0 sends none.
    pub weight: u32,
    /// Applied after the rule's own filters, to requests sent to this backend.
    pub filters: Vec<Filter>,
    pub backend: Backend,
}

/// The kinds of backend.
#[derive(Debug)]
pub enum Backend {
    /// A Kubernetes Service port, resolved to its ready endpoints.
    Service(ServiceBackend),
}

/// A Service port and the endpoints behind it that are ready.
#[derive(Debug)]
pub struct ServiceBackend {
    pub service: NamespacedName,
    pub protocol: Protocol,
    /// Ready endpoints, sorted; empty when the Service is unknown or has none ready.
    pub endpoints: Vec<Endpoint>,
    /// Why the reference did not resolve, if it did not.
    pub unresolved: Option<Unresolved>,
}

/// One upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub address: SocketAddr,
}

/// The protocol an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// HTTP/1.1 over TCP.
    #[default]
    Http1,
}

impl Protocol {
    /// The name operators see in `/debug/routes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
        }
    }
}

/// Why a backend reference did not resolve to a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// No Service of that name in the Route's namespace.
    BackendNotFound,
    /// The Service has no port of that number or name.
    PortNotFound,
}
