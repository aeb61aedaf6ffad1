//! Informers: the client-go informer machinery, on kube-rs watchers.
//!
//! kube-rs gives a watcher (list, then watch, with relists on 410 Gone and backoff on errors)
//! and a reflector. This crate adds what a controller needs on top, and knows nothing of the
//! objects it is used for (Weir's own kinds, indexes and handlers live in `weir-controlplane`):
//! - [`client`]: a client from a kubeconfig, or inferred;
//! - [`discovery`]: resolve resource names to API resources at runtime, tolerating broken
//!   aggregated APIs;
//! - [`cache`]: a local cache with listers and custom indexes kept in step;
//! - [`shared`]: an informer per watch, with add / update(old, new) / delete events to any
//!   number of subscribers, deletes missed while the watch was down delivered as tombstones on
//!   relist, has-synced, optional resync, and start/stop at runtime;
//! - [`factory`]: one shared informer per (resource, namespace, selectors), so consumers
//!   share a watch and a cache;
//! - [`queue`]: a de-duplicating, rate-limited work queue with per-item backoff.

pub mod cache;
pub mod client;
pub mod discovery;
pub mod factory;
pub mod queue;
pub mod shared;

pub use cache::{Cache, IndexFn, by_label, object_key};
pub use client::{ConnectError, connect};
pub use discovery::{DiscoveredResource, ResourceCatalog};
pub use factory::{InformerFactory, WatchScope};
pub use shared::{Informer, InformerEvent};
