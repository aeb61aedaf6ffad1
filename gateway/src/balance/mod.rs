//! Load balancing: which endpoint of which backend a rule's next request goes to.
//!
//! Weighted round-robin across a rule's backends ([`wrr`]), then round-robin across each
//! backend's endpoints. The weights become a fixed schedule when the table is compiled, and a
//! request only bumps atomic counters: no lock, no allocation. The counters live in the rule's
//! long-lived state ([`BalancerCursor`]), so a table swap for an unrelated change does not
//! restart the rotation.

mod wrr;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use weir_contract::Filter;

use crate::upstream::Target;

/// One backend: a Service and the targets of its ready endpoints.
#[derive(Debug)]
pub struct BackendEndpoints {
    /// `namespace/name` of the Service, for logs.
    pub service: Arc<str>,
    pub endpoints: Box<[Target]>,
    /// The backend's own filters, applied after the rule's.
    pub filters: Box<[Filter]>,
}

impl BackendEndpoints {
    pub fn new(service: Arc<str>, endpoints: Vec<Target>) -> Self {
        Self {
            service,
            endpoints: endpoints.into(),
            filters: Box::default(),
        }
    }
}

/// Where a rule's rotation stands: the schedule slot, and each backend's endpoint. Kept in
/// the rule's long-lived state, so it survives table swaps.
#[derive(Debug)]
pub struct BalancerCursor {
    next_slot: AtomicUsize,
    next_endpoint: Box<[AtomicUsize]>,
}

impl BalancerCursor {
    /// A cursor for a rule of `backends` backends.
    pub fn new(backends: usize) -> Self {
        Self {
            next_slot: AtomicUsize::new(0),
            next_endpoint: (0..backends).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Whether this cursor can serve a rule of `backends` backends.
    pub fn fits(&self, backends: usize) -> bool {
        self.next_endpoint.len() == backends
    }
}

/// Picks the endpoint for each request of one rule.
#[derive(Debug)]
pub struct Balancer {
    backends: Box<[BackendEndpoints]>,
    /// Backend indexes in the order requests get them.
    schedule: Box<[u32]>,
    cursor: Arc<BalancerCursor>,
}

impl Balancer {
    /// Builds the schedule from `(backend, weight)` pairs. Backends with weight 0 or no ready
    /// endpoints get no traffic. `cursor` must fit the number of backends.
    pub fn new(backends: Vec<(BackendEndpoints, u32)>, cursor: Arc<BalancerCursor>) -> Self {
        assert!(
            cursor.fits(backends.len()),
            "a balancer cursor is made for its rule's backends"
        );
        let weights: Vec<u64> = backends
            .iter()
            .map(|(backend, weight)| {
                if backend.endpoints.is_empty() {
                    0
                } else {
                    u64::from(*weight)
                }
            })
            .collect();
        Self {
            schedule: wrr::smooth_schedule(&weights).into(),
            backends: backends.into_iter().map(|(backend, _)| backend).collect(),
            cursor,
        }
    }

    /// The next endpoint, and its backend; `None` when no backend has a ready endpoint.
    pub fn pick(&self) -> Option<(&BackendEndpoints, &Target)> {
        if self.schedule.is_empty() {
            return None;
        }
        let slot = self.cursor.next_slot.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
        let index = self.schedule[slot] as usize;
        let backend = &self.backends[index];
        let endpoint = self.cursor.next_endpoint[index].fetch_add(1, Ordering::Relaxed)
            % backend.endpoints.len();
        Some((backend, &backend.endpoints[endpoint]))
    }

    /// The Services behind this rule, for error messages.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.backends.iter().map(|b| &*b.service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::TargetAddress;
    use std::net::SocketAddr;
    use weir_contract::Protocol;

    fn backend(name: &str, ports: &[u16]) -> BackendEndpoints {
        let targets = ports
            .iter()
            .map(|p| Target::socket(SocketAddr::from(([127, 0, 0, 1], *p)), Protocol::Http1))
            .collect();
        BackendEndpoints::new(name.into(), targets)
    }

    fn balancer(backends: Vec<(BackendEndpoints, u32)>) -> Balancer {
        let cursor = Arc::new(BalancerCursor::new(backends.len()));
        Balancer::new(backends, cursor)
    }

    fn picks(balancer: &Balancer, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| balancer.pick().unwrap().0.service.to_string())
            .collect()
    }

    fn port(target: &Target) -> u16 {
        match target.address() {
            TargetAddress::Socket(address) => address.port(),
            TargetAddress::Host { port, .. } => *port,
        }
    }

    #[test]
    fn three_to_one_interleaves_smoothly() {
        let balancer = balancer(vec![(backend("a", &[1]), 3), (backend("b", &[2]), 1)]);
        assert_eq!(
            picks(&balancer, 8),
            ["a", "a", "b", "a", "a", "a", "b", "a"]
        );
    }

    #[test]
    fn weights_hold_exactly_over_whole_cycles() {
        let balancer = balancer(vec![
            (backend("a", &[1]), 30),
            (backend("b", &[2]), 10),
            (backend("c", &[3]), 0),
        ]);
        let all = picks(&balancer, 1000);
        assert_eq!(all.iter().filter(|s| *s == "a").count(), 750);
        assert_eq!(all.iter().filter(|s| *s == "c").count(), 0);
    }

    #[test]
    fn backends_without_endpoints_get_no_traffic() {
        let balancer_a = balancer(vec![(backend("a", &[]), 5), (backend("b", &[2]), 1)]);
        assert!(picks(&balancer_a, 10).iter().all(|s| s == "b"));
        let empty = balancer(vec![(backend("a", &[]), 1)]);
        assert!(empty.pick().is_none());
    }

    #[test]
    fn endpoints_of_a_backend_take_turns() {
        let balancer = balancer(vec![(backend("a", &[1, 2, 3]), 1)]);
        let ports: Vec<u16> = (0..6).map(|_| port(balancer.pick().unwrap().1)).collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn the_rotation_goes_on_across_a_rebuilt_balancer() {
        let cursor = Arc::new(BalancerCursor::new(1));
        let first = Balancer::new(vec![(backend("a", &[1, 2, 3]), 1)], cursor.clone());
        assert_eq!(port(first.pick().unwrap().1), 1);
        let rebuilt = Balancer::new(vec![(backend("a", &[1, 2, 3]), 1)], cursor);
        assert_eq!(port(rebuilt.pick().unwrap().1), 2);
    }
}
