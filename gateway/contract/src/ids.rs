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
}

/// Which object a served route came from.
///
/// Printed as `namespace/name` for Weir's own Routes, the form metrics and logs use.
///
/// ```
/// use weir_contract::{NamespacedName, RouteId, RouteKind};
/// let id = RouteId::new(RouteKind::Route, NamespacedName::new("default", "echo"));
/// assert_eq!(id.to_string(), "default/echo");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    pub kind: RouteKind,
    pub object: NamespacedName,
    /// The printed form, made once: it labels every request's metrics.
    display: Arc<str>,
}

impl RouteId {
    pub fn new(kind: RouteKind, object: NamespacedName) -> Self {
        let display = match kind {
            RouteKind::Route => object.to_string().into(),
        };
        Self {
            kind,
            object,
            display,
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
