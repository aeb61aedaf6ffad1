//! Weir's control plane: sources of configuration, the store they feed, and the reconciler
//! that turns the store into immutable [`Snapshot`]s for the data plane.
//!
//! Data flows one way: a source emits [`SourceEvent`]s, the [`reconciler`] applies them to the
//! [`store`] and publishes snapshots. This crate knows Kubernetes objects, never HTTP.

pub mod fixtures;
pub mod informer;
pub mod reconciler;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod store;

pub use reconciler::Reconciler;
pub use snapshot::Snapshot;
pub use store::{NamespacedName, Object, ObjectKey, SourceEvent, SourceProblem};
