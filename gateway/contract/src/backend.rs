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
    /// A reference the control plane could not accept (a Service that does not exist, a kind
    /// Weir does not send to, another namespace's Service without a ReferenceGrant): the share
    /// of requests it would get is answered `500`, as Gateway API requires. The message says
    /// why, for `/debug/routes`.
    Invalid(std::sync::Arc<str>),
}

/// A Service port and the endpoints behind it that are ready.
#[derive(Debug)]
pub struct ServiceBackend {
    pub service: NamespacedName,
    /// The HTTP version spoken to the endpoints, from the Service port's `appProtocol`.
    pub protocol: Protocol,
    /// TLS to the endpoints, when the backend asks for it.
    pub tls: Option<std::sync::Arc<UpstreamTls>>,
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

/// The HTTP version an upstream speaks (over TCP, or inside TLS when the backend has TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// HTTP/1.1, pooled keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2, multiplexed (h2c in the clear, h2 by ALPN inside TLS). gRPC backends speak it.
    Http2,
}

impl Protocol {
    /// The name operators see in `/debug/routes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::Http2 => "h2",
        }
    }
}

/// How to speak TLS to an upstream: the name to present and check, and whom to trust.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// Sent in SNI; the upstream's certificate must be valid for it.
    pub server_name: String,
    /// CA certificates (PEM) to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
}

/// Why a backend reference did not resolve to a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// No Service of that name in the Route's namespace.
    BackendNotFound,
    /// The Service has no port of that number or name.
    PortNotFound,
    /// The CA certificates to verify the backend with could not be read.
    InvalidCertificateRef,
}
