//! Weir's control plane: sources of configuration, the store they feed, and the reconciler
//! that turns the store into immutable [`Snapshot`]s for the data plane.
//!
//! Data flows one way:
//!
//! ```text
//! source (files | kubernetes) --SourceEvent--> store + refs --> reconciler
//!     --translate, resolve--> Snapshot (weir-contract) --> data plane
//!                                                      \--> status writer (cluster only)
//! ```
//!
//! This crate knows Kubernetes objects, never HTTP. Each kind it reads is known in one place,
//! [`kinds`]; who refers to whom in one place, [`refs`].

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod kinds;
pub mod leader;
pub mod reconciler;
pub mod refs;
pub mod report;
pub mod resolve;
pub mod source;
pub mod status;
pub mod store;
pub mod translate;

pub use kinds::{Kind, Object, ObjectKey};
pub use reconciler::{Reconciler, ReconcilerMetrics};
pub use source::SourceEvent;
pub use weir_contract::{NamespacedName, Snapshot};
