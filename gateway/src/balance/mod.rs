//! Load balancing: which endpoint of which backend a rule's next request goes to.
//!
//! Four algorithms, chosen per rule ([`weir_contract::LoadBalancer`]):
//! - **RoundRobin** (default): smooth weighted round-robin across backends ([`wrr`]), then
//!   round-robin across each backend's endpoints. A request bumps two atomic counters.
//! - **LeastRequest**: power of two choices — two distinct random endpoints, the one with
//!   fewer requests in flight (relative to its weight) wins. In-flight counts are per endpoint and shared by
//!   every rule and proxy thread.
//! - **ConsistentHash**: a ring ([`ring`]) of every endpoint, weighted; a request's key (a
//!   header, a cookie, the client address) picks its endpoint.
//! - **Random**: weighted random.
//!
//! The weights, schedule and ring are fixed when the table is compiled; the counters live in
//! long-lived state ([`BalancerCursor`], [`EndpointLoad`]), so a table swap for an unrelated
//! change does not restart a rotation or forget a load. A pick can be told to avoid some
//! endpoints (ejected ones; those a retry already tried): it then takes the next acceptable
//! one, and only when none is acceptable falls back to what it would have picked.
//!
//! An invalid backend ([`BackendEndpoints::invalid`]: a reference the control plane could not
//! accept) gets its weight's share of the picks, which the proxy answers 500. It has one
//! stand-in endpoint, never connected to, so a pick has the same shape whatever it names. Its
//! share is exact under every algorithm: round-robin schedules it like any backend; the others
//! first take the rule's next round-robin slot, and only when that slot is a valid backend's
//! choose among the valid backends' endpoints their own way (a rule without invalid backends
//! skips that step). Retries ([`Balancer::pick_retry`]) choose among the valid backends only,
//! without moving the rotation, so that they shift no backend's share.

pub mod random;
pub mod ring;
mod wrr;

use std::sync::{
    Arc,
    atomic::{AtomicU32, AtomicUsize, Ordering},
};

use crate::{filters::BackendFilters, policy::outlier::EndpointHealth, upstream::Target};

/// One endpoint of a backend, with what is shared about it beyond this table.
#[derive(Debug)]
pub struct Endpoint {
    pub target: Target,
    /// Requests in flight to it (every rule, every thread).
    pub load: Arc<EndpointLoad>,
    /// Its health under this rule's outlier detection, if the rule has it.
    pub health: Option<Arc<EndpointHealth>>,
}

/// Requests in flight to one endpoint.
#[derive(Debug, Default)]
pub struct EndpointLoad {
    in_flight: AtomicU32,
}

impl EndpointLoad {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight to an endpoint; dropped when its response has ended.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointLoad>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One backend: a Service and its ready endpoints, or a reference the control plane could not
/// accept.
#[derive(Debug)]
pub struct BackendEndpoints {
    /// `namespace/name` of the Service, for logs.
    pub service: Arc<str>,
    pub endpoints: Box<[Endpoint]>,
    /// The backend's own filters, applied after the rule's.
    pub filters: BackendFilters,
    /// Why the control plane could not accept this backend, if it could not: requests it is
    /// picked for are answered 500. Its one endpoint is a stand-in, never connected to.
    pub invalid: Option<Arc<str>>,
}

impl BackendEndpoints {
    /// What a [`Service`](Self::service) of an invalid backend is shown as in logs.
    pub const INVALID_SERVICE: &str = "<invalid backend>";

    /// A backend the control plane could not accept, for `reason`.
    ///
    /// ```
    /// use weir_gateway::balance::BackendEndpoints;
    /// let backend = BackendEndpoints::invalid("Service web/gone not found".into());
    /// assert_eq!(backend.invalid.as_deref(), Some("Service web/gone not found"));
    /// assert_eq!(backend.endpoints.len(), 1, "a stand-in, so that it can be picked");
    /// ```
    pub fn invalid(reason: Arc<str>) -> Self {
        let stand_in = Target::socket(
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            weir_contract::Protocol::Http1,
        );
        Self {
            service: Self::INVALID_SERVICE.into(),
            endpoints: Box::new([Endpoint {
                target: stand_in,
                load: Arc::default(),
                health: None,
            }]),
            filters: BackendFilters::default(),
            invalid: Some(reason),
        }
    }

    /// A backend whose endpoints are `targets`, with load counters of their own (for tests and
    /// callers without long-lived state).
    pub fn new(service: Arc<str>, targets: Vec<Target>) -> Self {
        Self {
            service,
            endpoints: targets
                .into_iter()
                .map(|target| Endpoint {
                    target,
                    load: Arc::default(),
                    health: None,
                })
                .collect(),
            filters: BackendFilters::default(),
            invalid: None,
        }
    }
}

/// Where a rule's round-robin rotation stands: the schedule slot, and each backend's endpoint.
/// Kept in the rule's long-lived state, so it survives table swaps.
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

/// How a balancer chooses.
#[derive(Debug)]
pub enum Algorithm {
    RoundRobin,
    LeastRequest,
    ConsistentHash,
    Random,
}

/// Picks the endpoint for each request of one rule.
#[derive(Debug)]
pub struct Balancer {
    backends: Box<[BackendEndpoints]>,
    algorithm: Algorithm,
    /// Backend indexes in the order round-robin requests get them. Under the other algorithms,
    /// empty unless the rule has invalid backends, whose share it then decides.
    schedule: Box<[u32]>,
    cursor: Arc<BalancerCursor>,
    /// Every endpoint of a valid backend that can get traffic, as (backend, endpoint), for the
    /// other algorithms.
    flat: Box<[(u32, u32)]>,
    /// Running sums of the flat endpoints' weights (random).
    cumulative: Box<[f64]>,
    ring: ring::Ring,
}

impl Balancer {
    /// Builds the balancer from `(backend, weight)` pairs. Backends with weight 0 or no ready
    /// endpoints get no traffic; an invalid backend gets its weight's share. `cursor` must fit
    /// the number of backends.
    pub fn new(
        backends: Vec<(BackendEndpoints, u32)>,
        algorithm: Algorithm,
        cursor: Arc<BalancerCursor>,
    ) -> Self {
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
        // Each endpoint's share: its backend's weight, split evenly among the backend's endpoints.
        let mut flat = Vec::new();
        let mut flat_weights = Vec::new();
        let mut identities = Vec::new();
        for (b, ((backend, _), weight)) in backends.iter().zip(&weights).enumerate() {
            // An invalid backend's share goes through the schedule, never the endpoint choice.
            if *weight == 0 || backend.invalid.is_some() {
                continue;
            }
            let share = *weight as f64 / backend.endpoints.len() as f64;
            for (e, endpoint) in backend.endpoints.iter().enumerate() {
                flat.push((b as u32, e as u32));
                flat_weights.push(share);
                identities.push(endpoint.target.address().to_string());
            }
        }
        let ring = match algorithm {
            Algorithm::ConsistentHash => ring::Ring::new(&identities, &flat_weights),
            _ => ring::Ring::default(),
        };
        let cumulative = flat_weights
            .iter()
            .scan(0.0, |sum, weight| {
                *sum += weight;
                Some(*sum)
            })
            .collect();
        let invalid_share = backends
            .iter()
            .zip(&weights)
            .any(|((backend, _), weight)| backend.invalid.is_some() && *weight > 0);
        Self {
            schedule: match algorithm {
                Algorithm::RoundRobin => wrr::smooth_schedule(&weights).into(),
                _ if invalid_share => wrr::smooth_schedule(&weights).into(),
                _ => Box::default(),
            },
            backends: backends.into_iter().map(|(backend, _)| backend).collect(),
            algorithm,
            cursor,
            flat: flat.into(),
            cumulative,
            ring,
        }
    }

    /// The next endpoint, and its backend; `None` when no backend has a ready endpoint.
    pub fn pick(&self) -> Option<(&BackendEndpoints, &Endpoint)> {
        self.pick_avoiding(None, |_| false)
    }

    /// The next endpoint that `avoid` does not refuse, or the one it would have been if all
    /// are refused. `hash` is the request's key, for consistent hashing.
    pub fn pick_avoiding(
        &self,
        hash: Option<u64>,
        avoid: impl Fn(&Endpoint) -> bool,
    ) -> Option<(&BackendEndpoints, &Endpoint)> {
        if let Algorithm::RoundRobin = self.algorithm {
            return self.round_robin(avoid);
        }
        let mut invalid = None;
        if !self.schedule.is_empty() {
            // The rule has invalid backends: the next slot says whether this pick is theirs.
            let slot = self.cursor.next_slot.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
            let backend = &self.backends[self.schedule[slot] as usize];
            if backend.invalid.is_some() {
                let stand_in = &backend.endpoints[0];
                if !avoid(stand_in) {
                    return Some((backend, stand_in));
                }
                // Refused by the caller: a valid endpoint instead, if there is one.
                invalid = Some((backend, stand_in));
            }
        }
        let picked = match self.algorithm {
            Algorithm::LeastRequest => self.least_request(avoid),
            Algorithm::ConsistentHash => match hash {
                Some(hash) => self.consistent_hash(hash, avoid),
                // No key (a header the request lacks): any endpoint will do.
                None => self.random(avoid),
            },
            Algorithm::Random | Algorithm::RoundRobin => self.random(avoid),
        };
        picked.or(invalid)
    }

    /// The endpoint for a retry: one `avoid` does not refuse (or, when all are refused, any),
    /// among the valid backends only, and without moving the rotation.
    ///
    /// The rotation is what gives each backend its weight's share of the rule's requests; were
    /// retries to move it too, the requests after a retry would land on other slots than their
    /// turn (a failing backend could take every first try, and an invalid backend none), so a
    /// round-robin retry draws at random by weight instead. A retry never goes to an invalid
    /// backend: it looks for an upstream that may answer better than the one that failed.
    /// Consistent hashing walks on along the ring, as for an ejection.
    pub fn pick_retry(
        &self,
        hash: Option<u64>,
        avoid: impl Fn(&Endpoint) -> bool,
    ) -> Option<(&BackendEndpoints, &Endpoint)> {
        match (&self.algorithm, hash) {
            (Algorithm::LeastRequest, _) => self.least_request(avoid),
            (Algorithm::ConsistentHash, Some(hash)) => self.consistent_hash(hash, avoid),
            _ => self.random(avoid),
        }
    }

    fn at(&self, (backend, endpoint): (u32, u32)) -> (&BackendEndpoints, &Endpoint) {
        let backend = &self.backends[backend as usize];
        (backend, &backend.endpoints[endpoint as usize])
    }

    fn round_robin(
        &self,
        avoid: impl Fn(&Endpoint) -> bool,
    ) -> Option<(&BackendEndpoints, &Endpoint)> {
        if self.schedule.is_empty() {
            return None;
        }
        let mut first = None;
        // Enough turns to meet every endpoint of every scheduled backend at least once.
        let turns = self.flat.len().max(1) + self.schedule.len().min(64);
        for _ in 0..turns {
            let slot = self.cursor.next_slot.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
            let index = self.schedule[slot] as usize;
            let backend = &self.backends[index];
            let endpoint = self.cursor.next_endpoint[index].fetch_add(1, Ordering::Relaxed)
                % backend.endpoints.len();
            let endpoint = &backend.endpoints[endpoint];
            if !avoid(endpoint) {
                return Some((backend, endpoint));
            }
            first.get_or_insert((backend, endpoint));
        }
        first
    }

    fn random_flat(&self) -> Option<usize> {
        let total = *self.cumulative.last()?;
        let point = random::next_u64() as f64 / u64::MAX as f64 * total;
        Some(
            self.cumulative
                .partition_point(|sum| *sum <= point)
                .min(self.flat.len() - 1),
        )
    }

    /// A weighted-random flat index that `avoid` accepts: a few draws, then a scan onwards
    /// from the last draw; `None` when every endpoint is avoided.
    fn random_acceptable(&self, avoid: &impl Fn(&Endpoint) -> bool) -> Option<usize> {
        let mut index = self.random_flat()?;
        for _ in 0..3 {
            if !avoid(self.at(self.flat[index]).1) {
                return Some(index);
            }
            index = self.random_flat()?;
        }
        (0..self.flat.len())
            .map(|step| (index + step) % self.flat.len())
            .find(|i| !avoid(self.at(self.flat[*i]).1))
    }

    fn random(&self, avoid: impl Fn(&Endpoint) -> bool) -> Option<(&BackendEndpoints, &Endpoint)> {
        let index = match self.random_acceptable(&avoid) {
            Some(index) => index,
            None => self.random_flat()?,
        };
        Some(self.at(self.flat[index]))
    }

    fn least_request(
        &self,
        avoid: impl Fn(&Endpoint) -> bool,
    ) -> Option<(&BackendEndpoints, &Endpoint)> {
        let Some(a) = self.random_acceptable(&avoid) else {
            return Some(self.at(self.flat[self.random_flat()?]));
        };
        // The second choice is another endpoint when there is one: two draws of the same
        // endpoint would be no choice at all.
        let first = self.at(self.flat[a]).1;
        let b = self
            .random_acceptable(&|e: &Endpoint| avoid(e) || std::ptr::eq(e, first))
            .unwrap_or(a);
        // Fewer in flight per unit of weight wins; the weights are the flat shares.
        let weight =
            |i: usize| self.cumulative[i] - if i == 0 { 0.0 } else { self.cumulative[i - 1] };
        let score = |i: usize| f64::from(self.at(self.flat[i]).1.load.in_flight()) / weight(i);
        Some(self.at(self.flat[if score(b) < score(a) { b } else { a }]))
    }

    /// The key's endpoint on the ring; if it is avoided, the next distinct endpoint along the
    /// ring that is not (so a key keeps a stable second choice).
    fn consistent_hash(
        &self,
        hash: u64,
        avoid: impl Fn(&Endpoint) -> bool,
    ) -> Option<(&BackendEndpoints, &Endpoint)> {
        let mut walk = self.ring.walk(hash);
        let first_index = walk.next()?;
        let first = self.at(self.flat[first_index]);
        if !avoid(first.1) {
            return Some(first);
        }
        // The rare path (an ejection, a retry): each endpoint is looked at once.
        let mut seen = vec![false; self.flat.len()];
        seen[first_index] = true;
        let mut left = self.flat.len() - 1;
        for index in walk {
            if left == 0 {
                break;
            }
            if std::mem::replace(&mut seen[index], true) {
                continue;
            }
            left -= 1;
            let candidate = self.at(self.flat[index]);
            if !avoid(candidate.1) {
                return Some(candidate);
            }
        }
        Some(first)
    }

    /// The Services behind this rule, for error messages.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.backends.iter().map(|b| &*b.service)
    }

    /// Every backend and its endpoints, for `/debug/routes`.
    pub fn backends(&self) -> &[BackendEndpoints] {
        &self.backends
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::TargetAddress;
    use std::net::SocketAddr;
    use weir_contract::Protocol;

    const EVERY_ALGORITHM: [Algorithm; 4] = [
        Algorithm::RoundRobin,
        Algorithm::LeastRequest,
        Algorithm::Random,
        Algorithm::ConsistentHash,
    ];

    fn backend(name: &str, ports: &[u16]) -> BackendEndpoints {
        let targets = ports
            .iter()
            .map(|p| Target::socket(SocketAddr::from(([127, 0, 0, 1], *p)), Protocol::Http1))
            .collect();
        BackendEndpoints::new(name.into(), targets)
    }

    fn balancer(backends: Vec<(BackendEndpoints, u32)>) -> Balancer {
        with_algorithm(backends, Algorithm::RoundRobin)
    }

    fn with_algorithm(backends: Vec<(BackendEndpoints, u32)>, algorithm: Algorithm) -> Balancer {
        let cursor = Arc::new(BalancerCursor::new(backends.len()));
        Balancer::new(backends, algorithm, cursor)
    }

    fn picks(balancer: &Balancer, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| balancer.pick().unwrap().0.service.to_string())
            .collect()
    }

    fn port(endpoint: &Endpoint) -> u16 {
        match endpoint.target.address() {
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
        for algorithm in [
            Algorithm::LeastRequest,
            Algorithm::Random,
            Algorithm::ConsistentHash,
        ] {
            let empty = with_algorithm(vec![(backend("a", &[]), 1)], algorithm);
            assert!(empty.pick_avoiding(Some(7), |_| false).is_none());
        }
    }

    #[test]
    fn an_invalid_backend_gets_exactly_its_weights_share_under_every_algorithm() {
        for algorithm in EVERY_ALGORITHM {
            let name = format!("{algorithm:?}");
            let balancer = with_algorithm(
                vec![
                    (backend("a", &[1, 2]), 1),
                    (BackendEndpoints::invalid("no such Service".into()), 1),
                ],
                algorithm,
            );
            let invalid = (0..100u64)
                .filter(|key| {
                    let hash = Some(ring::stable_hash(key));
                    let (backend, _) = balancer.pick_avoiding(hash, |_| false).unwrap();
                    backend.invalid.is_some()
                })
                .count();
            assert_eq!(invalid, 50, "{name}");
        }
    }

    #[test]
    fn a_retry_never_goes_to_an_invalid_backend() {
        for algorithm in EVERY_ALGORITHM {
            let name = format!("{algorithm:?}");
            let balancer = with_algorithm(
                vec![
                    (BackendEndpoints::invalid("gone".into()), 3),
                    (backend("a", &[1]), 1),
                ],
                algorithm,
            );
            for key in 0..20u64 {
                let (backend, endpoint) = balancer.pick_retry(Some(key), |_| false).unwrap();
                assert!(backend.invalid.is_none(), "{name}");
                assert_eq!(port(endpoint), 1, "{name}");
                let (backend, _) = balancer.pick_retry(Some(key), |_| true).unwrap();
                assert!(backend.invalid.is_none(), "{name}: everything tried");
            }
        }
        let only_invalid = balancer(vec![(BackendEndpoints::invalid("gone".into()), 1)]);
        assert!(only_invalid.pick_retry(None, |_| false).is_none());
    }

    #[test]
    fn retries_leave_the_rotation_where_it_was() {
        let balancer = balancer(vec![(backend("a", &[1]), 1), (backend("b", &[2]), 1)]);
        // Backend a fails every first try and its retry goes to b: the next request is still
        // b's turn.
        let first = balancer.pick().unwrap().0.service.clone();
        assert_eq!(&*first, "a");
        let retried = balancer.pick_retry(None, |e| port(e) == 1).unwrap();
        assert_eq!(&*retried.0.service, "b");
        assert_eq!(&*balancer.pick().unwrap().0.service, "b");
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
        let first = Balancer::new(
            vec![(backend("a", &[1, 2, 3]), 1)],
            Algorithm::RoundRobin,
            cursor.clone(),
        );
        assert_eq!(port(first.pick().unwrap().1), 1);
        let rebuilt = Balancer::new(
            vec![(backend("a", &[1, 2, 3]), 1)],
            Algorithm::RoundRobin,
            cursor,
        );
        assert_eq!(port(rebuilt.pick().unwrap().1), 2);
    }

    #[test]
    fn every_algorithm_avoids_what_it_is_told_while_something_else_remains() {
        for algorithm in EVERY_ALGORITHM {
            let name = format!("{algorithm:?}");
            let balancer = with_algorithm(vec![(backend("a", &[1, 2, 3]), 1)], algorithm);
            for key in 0..50u64 {
                let (_, endpoint) = balancer
                    .pick_avoiding(Some(ring::stable_hash(key)), |e| port(e) != 2)
                    .unwrap();
                assert_eq!(port(endpoint), 2, "{name}");
            }
            // Everything avoided: something is still picked rather than nothing.
            assert!(balancer.pick_avoiding(Some(1), |_| true).is_some());
        }
    }

    #[test]
    fn least_request_prefers_the_endpoint_with_fewer_in_flight() {
        let balancer = with_algorithm(vec![(backend("a", &[1, 2]), 1)], Algorithm::LeastRequest);
        let busy = &balancer.backends()[0].endpoints[0];
        let _held: Vec<InFlight> = (0..10).map(|_| busy.load.start()).collect();
        let to_idle = (0..200)
            .filter(|_| port(balancer.pick().unwrap().1) == 2)
            .count();
        // The two draws are always the two endpoints, so the idle one always wins.
        assert_eq!(to_idle, 200);
    }

    #[test]
    fn the_same_key_goes_to_the_same_endpoint() {
        let balancer = with_algorithm(
            vec![(backend("a", &[1, 2, 3, 4]), 1)],
            Algorithm::ConsistentHash,
        );
        for key in 0..100u64 {
            let hash = ring::stable_hash(key);
            let first = port(balancer.pick_avoiding(Some(hash), |_| false).unwrap().1);
            for _ in 0..5 {
                assert_eq!(
                    port(balancer.pick_avoiding(Some(hash), |_| false).unwrap().1),
                    first
                );
            }
        }
    }
}
