//! Weir's data plane: the routing table, the reverse proxy, load balancing, metrics and the
//! admin server.
//!
//! It receives [`weir_controlplane::Snapshot`]s, compiles each into a [`table::RoutingTable`]
//! and swaps it in atomically; it never talks to a configuration source itself.

pub mod admin;
pub mod balance;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod table;
pub mod upstream;

use std::{sync::Arc, time::Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use weir_controlplane::Snapshot;

use crate::{metrics::Metrics, table::RoutingTable};

/// Compiles each snapshot the control plane publishes and makes it the live table.
///
/// Requests in flight keep the table they started with; new requests see the new one.
pub async fn apply_snapshots(
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    table: Arc<ArcSwap<RoutingTable>>,
    metrics: Arc<Metrics>,
) {
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        if let Some(snapshot) = snapshot {
            let started = Instant::now();
            let reconcile = snapshot.reconcile_duration;
            let compiled = RoutingTable::compile(snapshot, &metrics, Some(&table.load()));
            let (generation, routes) = (compiled.generation, compiled.route_count());
            table.store(Arc::new(compiled));
            metrics.table_swapped(generation, routes, reconcile, started.elapsed());
            tracing::info!(
                generation,
                routes,
                reconcile_us = reconcile.as_micros() as u64,
                compile_us = started.elapsed().as_micros() as u64,
                "routing table live"
            );
        }
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}
