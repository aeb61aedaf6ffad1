//! Listeners the control plane asks for, beyond those the command line opens.
//!
//! Weir's own Routes are served on the command line's listeners; an API that defines its own
//! (a Gateway API Gateway) names them here, with the certificates each serves.

use std::{net::SocketAddr, sync::Arc};

use crate::secret::TlsCertificate;

/// A socket to serve routes on.
#[derive(Debug)]
pub struct Listener {
    /// Unique within a snapshot, for logs and for routes to attach to.
    pub name: String,
    pub address: SocketAddr,
    pub protocol: ListenerProtocol,
    /// Served by SNI on a TLS listener.
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
