//! Weighted round-robin across a rule's backends, then round-robin across each backend's
//! endpoints.
//!
//! The weights are turned into a fixed schedule when the table is compiled (nginx's smooth
//! weighted round-robin, so a 3:1 split interleaves as a a b a, not a a a b), and a request
//! only bumps an atomic counter: no lock, no allocation. Counters restart with each new table,
//! which costs at most one round of skew.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use http::uri::Authority;

/// Longest schedule kept; larger weight sums are scaled down to fit.
const MAX_SCHEDULE_LEN: u64 = 4096;

/// An upstream endpoint, with its URI authority built once.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub authority: Authority,
}

/// One backend: a Service and its ready endpoints.
#[derive(Debug)]
pub struct BackendEndpoints {
    /// `namespace/name` of the Service, for logs.
    pub service: Arc<str>,
    pub endpoints: Box<[Endpoint]>,
    next_endpoint: AtomicUsize,
}

impl BackendEndpoints {
    pub fn new(service: Arc<str>, addresses: &[SocketAddr]) -> Self {
        let endpoints = addresses
            .iter()
            .map(|address| Endpoint {
                address: *address,
                authority: address
                    .to_string()
                    .parse()
                    .expect("a socket address is a valid authority"),
            })
            .collect();
        Self {
            service,
            endpoints,
            next_endpoint: AtomicUsize::new(0),
        }
    }
}

/// Picks the endpoint for each request of one rule.
#[derive(Debug)]
pub struct Balancer {
    backends: Box<[BackendEndpoints]>,
    /// Backend indexes in the order requests get them.
    schedule: Box<[u32]>,
    next_slot: AtomicUsize,
}

impl Balancer {
    /// Builds the schedule from `(backend, weight)` pairs. Backends with weight 0 or no ready
    /// endpoints get no traffic.
    pub fn new(backends: Vec<(BackendEndpoints, u32)>) -> Self {
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
            schedule: smooth_schedule(&weights).into(),
            backends: backends.into_iter().map(|(backend, _)| backend).collect(),
            next_slot: AtomicUsize::new(0),
        }
    }

    /// The next endpoint, and its backend; `None` when no backend has a ready endpoint.
    pub fn pick(&self) -> Option<(&BackendEndpoints, &Endpoint)> {
        if self.schedule.is_empty() {
            return None;
        }
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
        let backend = &self.backends[self.schedule[slot] as usize];
        let index = backend.next_endpoint.fetch_add(1, Ordering::Relaxed) % backend.endpoints.len();
        Some((backend, &backend.endpoints[index]))
    }

    /// The Services behind this rule, for error messages.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.backends.iter().map(|b| &*b.service)
    }
}

/// nginx's smooth weighted round-robin, unrolled into one full cycle.
fn smooth_schedule(weights: &[u64]) -> Vec<u32> {
    let divisor = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if divisor == 0 {
        return Vec::new();
    }
    let mut weights: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE_LEN {
        // Keep the proportions, and every backend with a weight keeps at least one slot.
        for weight in &mut weights {
            if *weight > 0 {
                *weight = (*weight * MAX_SCHEDULE_LEN / total).max(1);
            }
        }
    }
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, weight) in weights.iter().enumerate() {
            current[i] += *weight as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        schedule.push(best as u32);
    }
    schedule
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, ports: &[u16]) -> BackendEndpoints {
        let addresses: Vec<SocketAddr> = ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        BackendEndpoints::new(name.into(), &addresses)
    }

    fn picks(balancer: &Balancer, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| balancer.pick().unwrap().0.service.to_string())
            .collect()
    }

    #[test]
    fn three_to_one_interleaves_smoothly() {
        let balancer = Balancer::new(vec![(backend("a", &[1]), 3), (backend("b", &[2]), 1)]);
        assert_eq!(
            picks(&balancer, 8),
            ["a", "a", "b", "a", "a", "a", "b", "a"]
        );
    }

    #[test]
    fn weights_hold_exactly_over_whole_cycles() {
        let balancer = Balancer::new(vec![
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
        let balancer = Balancer::new(vec![(backend("a", &[]), 5), (backend("b", &[2]), 1)]);
        assert!(picks(&balancer, 10).iter().all(|s| s == "b"));
        let empty = Balancer::new(vec![(backend("a", &[]), 1)]);
        assert!(empty.pick().is_none());
    }

    #[test]
    fn endpoints_of_a_backend_take_turns() {
        let balancer = Balancer::new(vec![(backend("a", &[1, 2, 3]), 1)]);
        let ports: Vec<u16> = (0..6)
            .map(|_| balancer.pick().unwrap().1.address.port())
            .collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn huge_weights_are_scaled_into_a_bounded_schedule() {
        let schedule = smooth_schedule(&[1_000_000, 999_999, 1]);
        assert!(schedule.len() as u64 <= MAX_SCHEDULE_LEN + 3);
        assert!(schedule.contains(&2), "the smallest weight keeps a slot");
    }
}
