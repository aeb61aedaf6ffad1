//! Listeners the control plane asks for, beyond those the command line opens.
//!
//! Weir's own Routes and Ingresses are served on the command line's listeners; an API that
//! defines its own (a Gateway API Gateway) names them here, with the certificates each serves,
//! and its routes name the listeners they are served on ([`crate::Route::listeners`]).
//!
//! Several listeners may share an address (one Gateway's listeners on one port, told apart by
//! hostname): they share one socket, whose routes are those of all of them. Listeners that
//! share an address share a protocol; the control plane refuses the others.

use std::{net::SocketAddr, sync::Arc};

use crate::secret::TlsCertificate;

/// A socket to serve routes on.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Unique within a snapshot, for logs and for routes to attach to:
    /// `gateway:namespace/name#listener` for a Gateway's.
    pub name: Arc<str>,
    pub address: SocketAddr,
    pub protocol: ListenerProtocol,
    /// The host names this listener is for (lowercase; `*.example.com` for a wildcard); `None`
    /// for every host. Its routes' hosts are already narrowed to it.
    pub hostname: Option<String>,
    /// Served by SNI on a TLS listener: among the certificates of every listener on the
    /// socket, exact host first, then wildcard; a certificate with no hosts is the socket's
    /// default, for clients that name no host or one no other certificate is for.
    pub certificates: Vec<Arc<TlsCertificate>>,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// HTTP/1.1 and h2c.
    Http,
    /// TLS, then HTTP/1.1 or HTTP/2 by ALPN.
    Https,
}
