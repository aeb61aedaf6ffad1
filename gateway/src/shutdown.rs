//! The first phase of shutdown, *leaving*, shared by the admin listener and the proxy threads.
//!
//! A replica behind a load balancer (kube-proxy, a cloud load balancer) cannot stop accepting
//! the moment it is told to stop: the balancer still sends it new connections until it has
//! seen the replica go unready and taken it out, which takes a probe period or more. So Weir
//! leaves in two phases. While *leaving*, `/readyz` answers 503 and every HTTP/1.1 response
//! carries `Connection: close`, so that the balancer stops sending new connections and
//! keep-alive clients move theirs elsewhere one response at a time — while Weir still accepts
//! and serves everything that comes. Then, after the `--shutdown-delay`, it *drains*: it stops
//! accepting and lets what is in flight finish (the listener's shutdown).
//!
//! [`Leaving`] is the switch between serving and leaving: set once, read on every response, so
//! it is one relaxed atomic load there.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// Whether this process is leaving. Cheap to clone; every clone sees the same switch.
#[derive(Clone, Debug, Default)]
pub struct Leaving(Arc<AtomicBool>);

impl Leaving {
    /// Starts leaving: readiness fails and HTTP/1.1 connections close after their response.
    pub fn begin(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn has_begun(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_sees_the_start() {
        let leaving = Leaving::default();
        let seen_by_a_thread = leaving.clone();
        assert!(!seen_by_a_thread.has_begun());
        leaving.begin();
        assert!(seen_by_a_thread.has_begun());
    }
}
