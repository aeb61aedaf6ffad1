//! Leader election over a `coordination.k8s.io/v1` Lease: which replica writes status.
//!
//! Every replica serves traffic from its own informers; only the one holding the Lease writes
//! status, so that two replicas never write one object's status at cross purposes. This
//! module owns the Lease and the answer to "may this replica write now?" ([`Leadership`]);
//! the status writer asks before every write.
//!
//! It follows client-go's `leaderelection` with a `LeaseLock`:
//! - A candidate takes the Lease when it has no holder (released) or when its record has not
//!   changed for `leaseDurationSeconds` **as timed by the candidate's own clock from when it
//!   first saw that record**, so clock skew between replicas does not matter (only clock rate).
//! - The holder renews every retry period. Every write is a create or a replace carrying the
//!   `resourceVersion` read just before: of two candidates, the API server lets one win and
//!   answers the other 409, which means "someone else got there first".
//! - The holder counts itself leader only until `renew deadline` after the start of its last
//!   successful renewal. The deadline is shorter than the lease duration, so a leader that
//!   cannot renew (API server unreachable, process stalled) stops writing before anyone else
//!   may take over. This is checked against the clock at each write, not only when the
//!   election loop runs.
//! - `leaseTransitions` goes up by one whenever the holder changes.
//! - On graceful shutdown the leader stops granting writes, waits for writes in flight, and
//!   then releases the Lease (no holder, duration 1s), so another replica takes over at once
//!   instead of after the lease duration.
//!
//! kube-rs has no leader election of its own. Of the crates that do, `kube-lease-manager`
//! fits our kube version but clears an expired holder with a patch that has no
//! `resourceVersion` precondition (it can erase a renewal that just landed) and has no renew
//! deadline (a leader cut off from the API server goes on believing it leads), so Weir keeps
//! this small elector instead.

use std::{future::Future, sync::Arc, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use prometheus_client::{
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    sync::{OwnedRwLockReadGuard, RwLock, watch},
    time::Instant,
};

/// What went wrong electing a leader.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The timings cannot give a safe election.
    #[error(
        "leader election: the renew deadline ({renew_deadline:?}) must be shorter than the lease \
         duration ({lease_duration:?}) and longer than the retry period ({retry_period:?}), and \
         the lease duration at least 1s"
    )]
    Timing {
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    },
    /// The API server refused or failed a read or write of the Lease.
    #[error("lease {lease}: {source}")]
    Api {
        lease: String,
        #[source]
        source: kube::Error,
    },
    /// A read or write of the Lease took longer than the renew deadline.
    #[error("lease {lease}: no answer within {within:?}")]
    Timeout { lease: String, within: Duration },
}

/// How to elect: which Lease, who this replica is, and the timings.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// The Lease's name.
    pub lease: String,
    /// The Lease's namespace (Weir's own).
    pub namespace: String,
    /// This replica's `holderIdentity`: unique among replicas (pod name, or host name and pid).
    pub identity: String,
    /// How long a Lease not renewed stays held (`leaseDurationSeconds`, whole seconds).
    pub lease_duration: Duration,
    /// How long the leader goes on leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews and candidates try.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// Checks that the timings keep the guarantee: a leader that cannot renew stops before
    /// another may take over.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let ok = self.lease_duration >= Duration::from_secs(1)
            && self.renew_deadline < self.lease_duration
            && self.retry_period < self.renew_deadline
            && !self.retry_period.is_zero();
        if ok {
            Ok(())
        } else {
            Err(LeaderError::Timing {
                lease_duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
                retry_period: self.retry_period,
            })
        }
    }

    /// `namespace/name`, for logs and the metric's label.
    fn lease_id(&self) -> String {
        format!("{}/{}", self.namespace, self.lease)
    }

    /// `leaseDurationSeconds`: the duration rounded up to whole seconds.
    fn lease_duration_seconds(&self) -> i32 {
        let seconds =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(seconds).unwrap_or(i32::MAX)
    }
}

/// Whether this replica may write status now; cloned to whoever writes.
///
/// ```
/// # use weir_controlplane::leader::Leadership;
/// let leadership = Leadership::always();
/// assert!(leadership.permit().is_some());
/// ```
#[derive(Clone, Debug)]
pub struct Leadership {
    /// Until when this replica leads; `None` when it does not.
    leading_until: watch::Receiver<Option<Instant>>,
    /// Every write holds a read guard; standing down takes the write guard, so it waits for
    /// the writes in flight and no new one starts.
    writes: Arc<RwLock<()>>,
}

/// Held for the length of one write; while any is held, the Lease is not released.
pub type WritePermit = OwnedRwLockReadGuard<()>;

impl Leadership {
    /// A replica that always leads: nothing to elect (one replica, or tests).
    pub fn always() -> Self {
        let (sender, leading_until) = watch::channel(Some(Instant::now() + FOREVER));
        // The sender is dropped: the value never changes.
        drop(sender);
        Self {
            leading_until,
            writes: Arc::new(RwLock::new(())),
        }
    }

    /// Whether this replica leads at this instant.
    pub fn is_leading(&self) -> bool {
        self.leading_until
            .borrow()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Leave to write once, held until the write is done; `None` when not leading or
    /// standing down.
    pub fn permit(&self) -> Option<WritePermit> {
        let permit = self.writes.clone().try_read_owned().ok()?;
        self.is_leading().then_some(permit)
    }

    /// Completes when leadership may have changed (gained, renewed, lost); never when it
    /// cannot change any more.
    pub async fn changed(&mut self) {
        if self.leading_until.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A point far enough in the future to stand for "forever" without overflowing `Instant`.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The election's metrics.
#[derive(Clone, Default)]
pub struct LeaderMetrics {
    leader: Family<Vec<(&'static str, String)>, Gauge>,
}

impl LeaderMetrics {
    /// Registers `leader{lease}`: 1 while this replica holds the Lease, else 0.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "leader",
            "Whether this replica holds the leader-election Lease and writes status (1) or not (0)",
            self.leader.clone(),
        );
    }

    fn set(&self, lease: &str, leading: bool) {
        self.leader
            .get_or_create(&vec![("lease", lease.to_owned())])
            .set(i64::from(leading));
    }
}

/// Starts electing: returns the [`Leadership`] to ask, and the election to spawn. The
/// election runs until `shutdown` completes, then stands down and releases the Lease.
pub fn elect(
    client: Client,
    config: ElectionConfig,
    metrics: LeaderMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Leadership, impl Future<Output = ()> + Send + 'static), LeaderError> {
    config.validate()?;
    let (sender, leading_until) = watch::channel(None);
    let writes = Arc::new(RwLock::new(()));
    let leadership = Leadership {
        leading_until,
        writes: writes.clone(),
    };
    let store = ApiLeases(Api::namespaced(client, &config.namespace));
    let elector = Elector::new(store, config);
    Ok((leadership, elector.run(sender, writes, metrics, shutdown)))
}

/// Where Leases are read and written: the API server, or a fake in tests.
trait LeaseStore {
    async fn get(&self, name: &str) -> kube::Result<Option<Lease>>;
    /// `None`: someone created it first.
    async fn create(&self, lease: &Lease) -> kube::Result<Option<Lease>>;
    /// Replaces the Lease if its `resourceVersion` is still the one in `lease`; `None`: it
    /// is not (someone else wrote it since).
    async fn replace(&self, name: &str, lease: &Lease) -> kube::Result<Option<Lease>>;
}

struct ApiLeases(Api<Lease>);

/// Whether an API error means "someone else wrote first".
fn lost_race(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(response) if response.code == 409)
}

impl LeaseStore for ApiLeases {
    async fn get(&self, name: &str) -> kube::Result<Option<Lease>> {
        self.0.get_opt(name).await
    }

    async fn create(&self, lease: &Lease) -> kube::Result<Option<Lease>> {
        match self.0.create(&PostParams::default(), lease).await {
            Ok(created) => Ok(Some(created)),
            Err(error) if lost_race(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn replace(&self, name: &str, lease: &Lease) -> kube::Result<Option<Lease>> {
        match self.0.replace(name, &PostParams::default(), lease).await {
            Ok(replaced) => Ok(Some(replaced)),
            Err(error) if lost_race(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// What a replica does with the Lease as it last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    /// It holds it: renew.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it.
    Take,
    /// Someone else holds it.
    Wait,
}

/// Decides what to do with a Lease whose record was first seen unchanged at `observed_at`.
fn decide(spec: Option<&LeaseSpec>, identity: &str, observed_at: Instant, now: Instant) -> Claim {
    let holder = spec
        .and_then(|spec| spec.holder_identity.as_deref())
        .filter(|holder| !holder.is_empty());
    match holder {
        None => Claim::Take,
        Some(holder) if holder == identity => Claim::Renew,
        Some(_) => {
            // A holder that wrote no duration gets the shortest one; a negative one none.
            let seconds = spec
                .and_then(|spec| spec.lease_duration_seconds)
                .unwrap_or(1)
                .max(0);
            let expires = observed_at + Duration::from_secs(seconds.unsigned_abs().into());
            if now >= expires {
                Claim::Take
            } else {
                Claim::Wait
            }
        }
    }
}

/// The spec to write for `claim` (`Renew` or `Take`) over the Lease's current `spec`.
fn claimed(
    spec: Option<&LeaseSpec>,
    claim: Claim,
    identity: &str,
    duration_seconds: i32,
    now: Timestamp,
) -> LeaseSpec {
    let previous = spec.cloned().unwrap_or_default();
    let transitions = previous.lease_transitions.unwrap_or(0);
    let (acquire_time, lease_transitions) = match claim {
        Claim::Renew => (
            previous.acquire_time.clone().unwrap_or(MicroTime(now)),
            transitions,
        ),
        _ => (MicroTime(now), transitions.saturating_add(1)),
    };
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(duration_seconds),
        acquire_time: Some(acquire_time),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(lease_transitions),
        ..previous
    }
}

/// The spec that gives the Lease up: no holder, and a duration of one second for electors
/// that do not take an empty holder at once.
fn released(spec: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        ..spec.clone()
    }
}

/// The Lease as last seen, and since when (this replica's clock) it has looked that way.
struct Observed {
    lease: Lease,
    since: Instant,
}

/// One replica's side of the election.
struct Elector<S> {
    store: S,
    config: ElectionConfig,
    observed: Option<Observed>,
}

impl<S: LeaseStore> Elector<S> {
    fn new(store: S, config: ElectionConfig) -> Self {
        Self {
            store,
            config,
            observed: None,
        }
    }

    fn api_error(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            lease: self.config.lease_id(),
            source,
        }
    }

    /// Notes the Lease as read or written now; its record's age restarts when it changed.
    fn observe(&mut self, lease: Lease, now: Instant) {
        let unchanged = self.observed.as_ref().is_some_and(|observed| {
            observed.lease.metadata.resource_version == lease.metadata.resource_version
                && observed.lease.spec == lease.spec
        });
        if !unchanged {
            self.observed = Some(Observed { lease, since: now });
        }
    }

    /// One round: takes or renews the Lease if it may. `Ok(true)`: this replica holds it now.
    async fn try_acquire_or_renew(&mut self, now: Instant) -> Result<bool, LeaderError> {
        let name = self.config.lease.clone();
        let identity = self.config.identity.clone();
        let duration_seconds = self.config.lease_duration_seconds();
        let current = self.store.get(&name).await.map_err(|e| self.api_error(e))?;
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    lease_transitions: Some(0),
                    ..claimed(
                        None,
                        Claim::Take,
                        &identity,
                        duration_seconds,
                        Timestamp::now(),
                    )
                }),
            };
            let created = self
                .store
                .create(&lease)
                .await
                .map_err(|e| self.api_error(e))?;
            return Ok(match created {
                Some(created) => {
                    self.observe(created, now);
                    true
                }
                None => false,
            });
        };
        self.observe(current, now);
        let observed = self.observed.as_ref().expect("observed just now");
        let spec = observed.lease.spec.as_ref();
        let claim = decide(spec, &identity, observed.since, now);
        if claim == Claim::Wait {
            return Ok(false);
        }
        let lease = Lease {
            metadata: observed.lease.metadata.clone(),
            spec: Some(claimed(
                spec,
                claim,
                &identity,
                duration_seconds,
                Timestamp::now(),
            )),
        };
        let replaced = self
            .store
            .replace(&name, &lease)
            .await
            .map_err(|e| self.api_error(e))?;
        Ok(match replaced {
            Some(replaced) => {
                self.observe(replaced, now);
                true
            }
            None => false,
        })
    }

    /// Gives the Lease up if this replica still holds it as last written.
    async fn release(&mut self) -> Result<bool, LeaderError> {
        let Some(observed) = &self.observed else {
            return Ok(false);
        };
        let Some(spec) = observed.lease.spec.as_ref() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        let lease = Lease {
            metadata: observed.lease.metadata.clone(),
            spec: Some(released(spec, Timestamp::now())),
        };
        // A conflict means someone else wrote the Lease since: it is not ours to give up.
        let replaced = self
            .store
            .replace(&self.config.lease, &lease)
            .await
            .map_err(|e| self.api_error(e))?;
        Ok(replaced.is_some())
    }

    /// Takes or renews the Lease every retry period until `shutdown`, publishing until when
    /// this replica leads; then stands down and releases it.
    async fn run(
        mut self,
        leading_until: watch::Sender<Option<Instant>>,
        writes: Arc<RwLock<()>>,
        metrics: LeaderMetrics,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let lease = self.config.lease_id();
        let identity = self.config.identity.clone();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut leading = false;
        metrics.set(&lease, false);
        loop {
            let started = Instant::now();
            let within = self.config.renew_deadline;
            let outcome =
                match tokio::time::timeout(within, self.try_acquire_or_renew(started)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(LeaderError::Timeout {
                        lease: lease.clone(),
                        within,
                    }),
                };
            let until = match outcome {
                Ok(true) => Some(started + self.config.renew_deadline),
                Ok(false) => None,
                Err(error) => {
                    tracing::warn!(%lease, %identity, %error, "cannot take or renew the lease");
                    // A leader goes on leading until its deadline; it is checked at each write.
                    leading_until
                        .borrow()
                        .filter(|until| Instant::now() < *until)
                }
            };
            let now_leading = until.is_some();
            leading_until.send_replace(until);
            if now_leading != leading {
                leading = now_leading;
                metrics.set(&lease, leading);
                if leading {
                    tracing::info!(%lease, %identity, "became leader: this replica writes status");
                } else {
                    let holder = self
                        .observed
                        .as_ref()
                        .and_then(|o| o.lease.spec.as_ref()?.holder_identity.clone())
                        .unwrap_or_default();
                    tracing::info!(%lease, %identity, %holder, "not leading: another replica writes status");
                }
            }
            let wake = started + self.config.retry_period;
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(wake) => {}
            }
        }
        self.stand_down(leading_until, writes, metrics, leading)
            .await;
    }

    /// Stops granting writes, waits for those in flight, and releases the Lease.
    async fn stand_down(
        mut self,
        leading_until: watch::Sender<Option<Instant>>,
        writes: Arc<RwLock<()>>,
        metrics: LeaderMetrics,
        was_leading: bool,
    ) {
        let lease = self.config.lease_id();
        leading_until.send_replace(None);
        metrics.set(&lease, false);
        if !was_leading {
            return;
        }
        // Writes in flight finish before the Lease goes, so the next leader's writes come
        // after them. They are bounded by the renew deadline, as any leadership is.
        if tokio::time::timeout(self.config.renew_deadline, writes.write_owned())
            .await
            .is_err()
        {
            tracing::warn!(%lease, "status writes still in flight; releasing the lease anyway");
        }
        match tokio::time::timeout(self.config.renew_deadline, self.release()).await {
            Ok(Ok(true)) => tracing::info!(%lease, "released the lease"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => tracing::warn!(%lease, %error, "cannot release the lease"),
            Err(_) => tracing::warn!(%lease, "cannot release the lease: no answer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, collections::HashMap};

    use super::*;

    /// Leases in memory, with the API server's optimistic concurrency.
    #[derive(Default)]
    struct FakeLeases {
        leases: RefCell<HashMap<String, Lease>>,
        versions: RefCell<u64>,
        /// Written over the Lease just before the next replace is judged: another replica
        /// winning the race.
        interloper: RefCell<Option<LeaseSpec>>,
    }

    impl FakeLeases {
        fn stamp(&self, lease: &mut Lease) {
            *self.versions.borrow_mut() += 1;
            lease.metadata.resource_version = Some(self.versions.borrow().to_string());
        }

        fn spec(&self, name: &str) -> LeaseSpec {
            self.leases.borrow()[name].spec.clone().unwrap()
        }
    }

    impl LeaseStore for &FakeLeases {
        async fn get(&self, name: &str) -> kube::Result<Option<Lease>> {
            Ok(self.leases.borrow().get(name).cloned())
        }

        async fn create(&self, lease: &Lease) -> kube::Result<Option<Lease>> {
            let name = lease.metadata.name.clone().unwrap();
            if self.leases.borrow().contains_key(&name) {
                return Ok(None);
            }
            let mut lease = lease.clone();
            self.stamp(&mut lease);
            self.leases.borrow_mut().insert(name, lease.clone());
            Ok(Some(lease))
        }

        async fn replace(&self, name: &str, lease: &Lease) -> kube::Result<Option<Lease>> {
            if let Some(spec) = self.interloper.borrow_mut().take() {
                let mut theirs = self.leases.borrow()[name].clone();
                theirs.spec = Some(spec);
                self.stamp(&mut theirs);
                self.leases.borrow_mut().insert(name.to_owned(), theirs);
            }
            let stored = self.leases.borrow()[name].metadata.resource_version.clone();
            if stored != lease.metadata.resource_version {
                return Ok(None);
            }
            let mut lease = lease.clone();
            self.stamp(&mut lease);
            self.leases
                .borrow_mut()
                .insert(name.to_owned(), lease.clone());
            Ok(Some(lease))
        }
    }

    const LEASE: &str = "weir-status";

    fn config(identity: &str) -> ElectionConfig {
        ElectionConfig {
            lease: LEASE.into(),
            namespace: "weir-system".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn elector<'a>(leases: &'a FakeLeases, identity: &str) -> Elector<&'a FakeLeases> {
        Elector::new(leases, config(identity))
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_candidate_creates_the_lease_and_the_second_waits() {
        let leases = FakeLeases::default();
        let (mut a, mut b) = (elector(&leases, "a"), elector(&leases, "b"));
        let now = Instant::now();
        assert!(a.try_acquire_or_renew(now).await.unwrap());
        assert!(!b.try_acquire_or_renew(now).await.unwrap());
        let spec = leases.spec(LEASE);
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_keeps_the_acquire_time_and_the_transitions() {
        let leases = FakeLeases::default();
        let mut a = elector(&leases, "a");
        assert!(a.try_acquire_or_renew(Instant::now()).await.unwrap());
        let first = leases.spec(LEASE);
        assert!(a.try_acquire_or_renew(Instant::now()).await.unwrap());
        let renewed = leases.spec(LEASE);
        assert_eq!(renewed.acquire_time, first.acquire_time);
        assert_eq!(renewed.lease_transitions, first.lease_transitions);
        assert!(renewed.renew_time >= first.renew_time);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_lease_is_taken_only_once_unchanged_for_its_duration() {
        let leases = FakeLeases::default();
        let (mut a, mut b) = (elector(&leases, "a"), elector(&leases, "b"));
        let start = Instant::now();
        assert!(a.try_acquire_or_renew(start).await.unwrap());
        assert!(!b.try_acquire_or_renew(start).await.unwrap());
        // `a` renews once; the record `b` times restarts when it sees the change.
        assert!(a.try_acquire_or_renew(start).await.unwrap());
        let seen_renewal = start + Duration::from_secs(5);
        assert!(!b.try_acquire_or_renew(seen_renewal).await.unwrap());
        // `a` is gone from now on.
        let almost = seen_renewal + Duration::from_secs(15) - Duration::from_millis(1);
        assert!(
            !b.try_acquire_or_renew(almost).await.unwrap(),
            "not yet expired"
        );
        assert!(
            b.try_acquire_or_renew(seen_renewal + Duration::from_secs(15))
                .await
                .unwrap()
        );
        let spec = leases.spec(LEASE);
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(
            spec.lease_transitions,
            Some(1),
            "a takeover is a transition"
        );
        assert!(
            !a.try_acquire_or_renew(seen_renewal + Duration::from_secs(15))
                .await
                .unwrap(),
            "the old leader finds it held by another and waits"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_lease_is_taken_at_once() {
        let leases = FakeLeases::default();
        let (mut a, mut b) = (elector(&leases, "a"), elector(&leases, "b"));
        let now = Instant::now();
        assert!(a.try_acquire_or_renew(now).await.unwrap());
        assert!(!b.try_acquire_or_renew(now).await.unwrap());
        assert!(a.release().await.unwrap());
        assert_eq!(leases.spec(LEASE).holder_identity, None);
        assert!(b.try_acquire_or_renew(now).await.unwrap(), "no waiting");
        assert_eq!(leases.spec(LEASE).lease_transitions, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_gives_up_only_a_lease_still_held() {
        let leases = FakeLeases::default();
        let (mut a, mut b) = (elector(&leases, "a"), elector(&leases, "b"));
        let start = Instant::now();
        assert!(a.try_acquire_or_renew(start).await.unwrap());
        assert!(!b.try_acquire_or_renew(start).await.unwrap());
        assert!(
            b.try_acquire_or_renew(start + Duration::from_secs(15))
                .await
                .unwrap()
        );
        assert!(!a.release().await.unwrap(), "a lost it; b's hold stands");
        assert_eq!(leases.spec(LEASE).holder_identity.as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_loses_the_race_does_not_lead() {
        let leases = FakeLeases::default();
        let mut a = elector(&leases, "a");
        assert!(a.try_acquire_or_renew(Instant::now()).await.unwrap());
        let mut theirs = leases.spec(LEASE);
        theirs.holder_identity = Some("b".into());
        *leases.interloper.borrow_mut() = Some(theirs);
        assert!(
            !a.try_acquire_or_renew(Instant::now()).await.unwrap(),
            "a conflict means someone else won"
        );
        assert_eq!(leases.spec(LEASE).holder_identity.as_deref(), Some("b"));
    }

    #[test]
    fn an_empty_holder_is_no_holder() {
        let spec = LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        let now = Instant::now();
        assert_eq!(decide(Some(&spec), "a", now, now), Claim::Take);
    }

    #[test]
    fn timings_that_could_overlap_two_leaders_are_refused() {
        assert!(config("a").validate().is_ok());
        let mut deadline_too_long = config("a");
        deadline_too_long.renew_deadline = deadline_too_long.lease_duration;
        assert!(deadline_too_long.validate().is_err());
        let mut retry_too_long = config("a");
        retry_too_long.retry_period = retry_too_long.renew_deadline;
        assert!(retry_too_long.validate().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_runs_out_at_its_deadline_without_a_renewal() {
        let (sender, leading_until) =
            watch::channel(Some(Instant::now() + Duration::from_secs(10)));
        let leadership = Leadership {
            leading_until,
            writes: Arc::new(RwLock::new(())),
        };
        assert!(leadership.permit().is_some());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(leadership.permit().is_none(), "no renewal came");
        drop(sender);
    }

    #[tokio::test(start_paused = true)]
    async fn standing_down_grants_no_more_writes() {
        let (_sender, leading_until) = watch::channel(Some(Instant::now() + FOREVER));
        let writes = Arc::new(RwLock::new(()));
        let leadership = Leadership {
            leading_until,
            writes: writes.clone(),
        };
        let in_flight = leadership.permit().expect("leading");
        assert!(
            writes.try_write().is_err(),
            "a write in flight holds the release"
        );
        drop(in_flight);
        let _standing_down = writes.write().await;
        assert!(leadership.permit().is_none());
    }
}
