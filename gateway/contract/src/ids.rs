//! Identities: of the API objects a value came from, and of the routes the data plane serves.
//!
//! A route's identity outlives any one snapshot: the data plane keys its long-lived state
//! (metrics, limiters, balancer cursors) by it, so that state survives table swaps.

use std::{fmt, sync::Arc};

/// A namespaced object's identity, printed as `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// The API kinds a served route can come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// Weir's own `Route` (`weir.dev/v1alpha1`).
    Route,
    /// An `Ingress` (`networking.k8s.io/v1`): one route per host its rules name, and one for
    /// its default backend; each is a section of the Ingress's identity.
    Ingress,
    /// A Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`): one route per socket it is
    /// attached to (a section of its identity named by the socket's address), whose hosts are
    /// those its listeners there allow.
    HttpRoute,
}

/// Which object a served route came from.
///
/// Printed as `namespace/name` for Weir's own Routes, the form metrics and logs use; an
/// Ingress's routes as `ingress:namespace/name#section` (the host, `*` for rules without one,
/// or `defaultBackend`), and an HTTPRoute's as `httproute:namespace/name#address`, so they
/// never share a label, or long-lived state, with a Route.
///
/// ```
/// use weir_contract::{NamespacedName, RouteId, RouteKind};
/// let id = RouteId::new(RouteKind::Route, NamespacedName::new("default", "echo"));
/// assert_eq!(id.to_string(), "default/echo");
/// let ingress = RouteId::ingress(NamespacedName::new("web", "shop"), "shop.example.com");
/// assert_eq!(ingress.to_string(), "ingress:web/shop#shop.example.com");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    pub kind: RouteKind,
    pub object: NamespacedName,
    /// Which of the object's routes this is, for kinds that make several (an Ingress's hosts).
    pub section: Option<Arc<str>>,
    /// The printed form, made once: it labels every request's metrics.
    display: Arc<str>,
}

impl RouteId {
    pub fn new(kind: RouteKind, object: NamespacedName) -> Self {
        let display = match kind {
            RouteKind::Route => object.to_string().into(),
            RouteKind::Ingress => format!("ingress:{object}").into(),
            RouteKind::HttpRoute => format!("httproute:{object}").into(),
        };
        Self {
            kind,
            object,
            section: None,
            display,
        }
    }

    /// One of the routes an Ingress makes: `section` is its host, `*`, or `defaultBackend`.
    pub fn ingress(object: NamespacedName, section: &str) -> Self {
        Self {
            kind: RouteKind::Ingress,
            display: format!("ingress:{object}#{section}").into(),
            object,
            section: Some(section.into()),
        }
    }

    /// One of the routes an HTTPRoute makes: `section` names the socket it is served on.
    ///
    /// ```
    /// use weir_contract::{NamespacedName, RouteId};
    /// let id = RouteId::http_route(NamespacedName::new("web", "shop"), "127.0.1.1:80");
    /// assert_eq!(id.to_string(), "httproute:web/shop#127.0.1.1:80");
    /// ```
    pub fn http_route(object: NamespacedName, section: &str) -> Self {
        Self {
            kind: RouteKind::HttpRoute,
            display: format!("httproute:{object}#{section}").into(),
            object,
            section: Some(section.into()),
        }
    }

    /// `namespace/name`, shared rather than formatted again.
    pub fn display(&self) -> &Arc<str> {
        &self.display
    }
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}
