//! Weir's data plane: the routing table, the reverse proxy, upstreams, load balancing, metrics
//! and the admin server.
//!
//! It receives [`weir_contract::Snapshot`]s, compiles each into a [`table::RoutingTable`]
//! and swaps it in atomically, and opens and closes the sockets the snapshot's listeners ask
//! for ([`listener::snapshot_sockets`]); it never talks to a configuration source itself, and
//! links neither kube nor the control plane.

pub mod admin;
pub mod ai;
pub mod balance;
pub mod filters;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod shutdown;
pub mod state;
pub mod table;
pub mod upstream;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use weir_contract::Snapshot;

use crate::{
    listener::{snapshot_sockets::SnapshotSockets, tls::CertificateResolver},
    table::{RoutingTable, TableCompiler},
};

/// How often state that no table holds any more is looked for, besides after each swap
/// (a request that outlived its table may have kept some alive then); and how often a
/// listener socket that could not be opened is tried again without a new snapshot.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Compiles each snapshot the control plane publishes and makes it the live table, its
/// certificates the ones the command line's TLS listener serves (when there is one), and its
/// listeners' sockets the open ones (`sockets`, once the table that routes for them is live).
///
/// Requests in flight keep the table they started with; new requests see the new one.
/// Returns when the control plane is gone.
pub async fn apply_snapshots(
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    table: Arc<ArcSwap<RoutingTable>>,
    compiler: TableCompiler,
    certificates: Option<Arc<CertificateResolver>>,
    mut sockets: SnapshotSockets,
) {
    let mut sweep =
        tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        if let Some(snapshot) = snapshot {
            let started = Instant::now();
            let reconcile = snapshot.reconcile_duration;
            if let Some(certificates) = &certificates {
                certificates.update(&snapshot);
            }
            let compiled = compiler.compile(snapshot.clone(), Some(&table.load()));
            let (generation, routes) = (compiled.generation, compiled.route_count());
            let previous = table.swap(Arc::new(compiled));
            let compile = started.elapsed();
            compiler
                .metrics()
                .table_swapped(generation, routes, compile);
            tracing::info!(
                generation,
                routes,
                reconcile_us = reconcile.as_micros() as u64,
                compile_us = compile.as_micros() as u64,
                "routing table live"
            );
            drop(previous);
            compiler.sweep();
            sockets.update(&snapshot);
        }
        loop {
            tokio::select! {
                changed = snapshots.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => return,
                },
                _ = sweep.tick() => {
                    compiler.sweep();
                    sockets.retry_failed();
                }
            }
        }
    }
}
