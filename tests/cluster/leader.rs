//! Two Weir replicas against one API server, as the restricted identity of
//! `examples/deploy`: both serve traffic throughout, one elected through a Lease writes
//! status, and when it dies (SIGKILL) or stops (SIGTERM) the other takes over status writing.
//! The metrics prove who writes: `weir_leader{lease}` and `weir_status_writes_total{kind}`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_e2e::{
    Echo, Weir,
    cluster::{Cluster, cluster},
    eventually_within, manifests,
};

/// The election's timings in these tests: short, so a takeover after a crash is quick.
const LEASE_DURATION: Duration = Duration::from_secs(4);
const CRASH_ARGS: &[&str] = &[
    "--leader-election-duration",
    "4s",
    "--leader-election-renew-deadline",
    "3s",
    "--leader-election-retry-period",
    "500ms",
];
/// What a takeover may take beyond the lease duration: the other's retry period, a status
/// write and the test's own polling through kubectl.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(2);

/// A long lease, so that a graceful handover is seen to come well before it would expire.
const GRACEFUL_LEASE_DURATION: Duration = Duration::from_secs(15);
const GRACEFUL_ARGS: &[&str] = &[
    "--leader-election-duration",
    "15s",
    "--leader-election-retry-period",
    "500ms",
];

const WAIT: Duration = Duration::from_secs(30);

/// Route `echo` on `host`, in its `version`th shape (each one a new generation).
fn echo_route(host: &str, version: u32) -> serde_json::Value {
    manifests::route("echo")
        .host(host)
        .prefix("/")
        .backend("echo")
        .rule()
        .exact(&format!("/v{version}"))
        .backend("echo")
        .into()
}

/// Two replicas serving `echo` on `host` in a fresh namespace.
struct Pair {
    namespace: String,
    host: String,
    replicas: [Arc<Weir>; 2],
    _echo: Echo,
}

impl Pair {
    async fn start(cluster: &Cluster, test: &str, args: &[&str]) -> Self {
        cluster.install_route_crd();
        let namespace = cluster.namespace(test).await;
        let echo = Echo::start_on_test_host("a").await;
        let host = format!("echo.{namespace}.test");
        cluster.apply(
            &namespace,
            &[
                manifests::service("echo"),
                manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
                echo_route(&host, 1),
            ],
        );
        let identity = cluster.weir_identity(&namespace).await;
        let first = Weir::start_in_cluster_with_args(&identity, &namespace, args).await;
        let second = Weir::start_in_cluster_with_args(&identity, &namespace, args).await;
        let pair = Self {
            namespace,
            host,
            replicas: [Arc::new(first), Arc::new(second)],
            _echo: echo,
        };
        for replica in &pair.replicas {
            eventually_within(
                WAIT,
                "both replicas serve the Route",
                async || match replica.get(&pair.host, "/").await.answered_by() {
                    who if who == "a" => Ok(()),
                    who => Err(who),
                },
            )
            .await;
        }
        pair
    }

    fn leader_series(&self) -> String {
        format!("weir_leader{{lease=\"{}/weir-status\"}}", self.namespace)
    }

    /// The index of the one replica that says it leads, once exactly one does.
    async fn leader(&self) -> usize {
        eventually_within(WAIT, "exactly one replica leads", async || {
            let mut leading = Vec::new();
            for replica in &self.replicas {
                leading.push(replica.metric(&self.leader_series()).await);
            }
            match leading[..] {
                [1.0, 0.0] => Ok(0),
                [0.0, 1.0] => Ok(1),
                _ => Err(format!("weir_leader: {leading:?}")),
            }
        })
        .await
    }

    /// Whether `replica` says it leads.
    async fn leads(&self, replica: usize) -> bool {
        self.replicas[replica].metric(&self.leader_series()).await == 1.0
    }

    async fn route_writes(&self, replica: usize) -> f64 {
        self.replicas[replica]
            .metric("weir_status_writes_total{kind=\"Route\"}")
            .await
    }

    /// Applies the Route's `version`th shape and waits until its status says generation
    /// `generation` was seen; returns how long that took.
    async fn change_route_and_await_status(
        &self,
        cluster: &Cluster,
        version: u32,
        within: Duration,
    ) -> Duration {
        let started = Instant::now();
        cluster.apply(&self.namespace, &[echo_route(&self.host, version)]);
        let generation = cluster
            .kubectl(&[
                "get",
                "route",
                "echo",
                "-n",
                &self.namespace,
                "-o",
                "jsonpath={.metadata.generation}",
            ])
            .trim()
            .to_owned();
        eventually_within(
            within,
            "the Route's status follows its generation",
            async || {
                let observed = cluster.kubectl(&[
                    "get",
                    "route",
                    "echo",
                    "-n",
                    &self.namespace,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Accepted\")].observedGeneration}",
                ]);
                if observed.trim() == generation {
                    Ok(())
                } else {
                    Err(format!(
                        "observedGeneration {observed:?}, generation {generation}"
                    ))
                }
            },
        )
        .await;
        started.elapsed()
    }
}

/// A client sending requests through one replica until stopped; counts what failed.
struct Client {
    stop: CancellationToken,
    served: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Client {
    fn start(weir: Arc<Weir>, host: String) -> Self {
        let stop = CancellationToken::new();
        let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let task = tokio::spawn({
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            async move {
                while !stop.is_cancelled() {
                    let counter = if weir.get(&host, "/").await.status.is_success() {
                        &served
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            stop,
            served,
            failed,
            task,
        }
    }

    /// Stops sending; returns (served, failed).
    async fn finish(self) -> (u64, u64) {
        self.stop.cancel();
        self.task.await.unwrap();
        (
            self.served.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test]
async fn only_the_leader_writes_status_and_a_killed_leader_is_replaced_within_the_lease() {
    let cluster = cluster();
    let pair = Pair::start(cluster, "leader-kill", CRASH_ARGS).await;
    let mut clients: Vec<Option<Client>> = pair
        .replicas
        .iter()
        .map(|replica| Some(Client::start(replica.clone(), pair.host.clone())))
        .collect();

    let leader = pair.leader().await;
    let follower = 1 - leader;
    let before = pair.route_writes(leader).await;
    pair.change_route_and_await_status(cluster, 2, WAIT).await;
    eventually_within(WAIT, "the leader counts its write", async || {
        match pair.route_writes(leader).await {
            after if after > before => Ok(()),
            after => Err(format!("{after} writes, {before} before")),
        }
    })
    .await;
    assert_eq!(
        pair.route_writes(follower).await,
        0.0,
        "the follower writes no status"
    );
    assert!(!pair.leads(follower).await);

    // The leader crashes: no release, the Lease has to expire.
    let (served, failed) = clients[leader].take().unwrap().finish().await;
    assert_eq!(
        failed, 0,
        "requests through the leader failed ({served} served)"
    );
    pair.replicas[leader].kill();
    let took = pair
        .change_route_and_await_status(cluster, 3, LEASE_DURATION + TAKEOVER_MARGIN)
        .await;
    eprintln!("status written by the new leader {took:?} after SIGKILL of the old one");
    assert!(pair.leads(follower).await, "the survivor leads");
    assert!(pair.route_writes(follower).await > 0.0);

    let (served, failed) = clients[follower].take().unwrap().finish().await;
    assert!(served > 0);
    assert_eq!(
        failed, 0,
        "requests through the survivor failed ({served} served)"
    );
}

#[tokio::test]
async fn a_leader_stopped_gracefully_hands_over_at_once() {
    let cluster = cluster();
    let pair = Pair::start(cluster, "leader-term", GRACEFUL_ARGS).await;
    let leader = pair.leader().await;
    let follower = 1 - leader;
    let survivor_client = Client::start(pair.replicas[follower].clone(), pair.host.clone());
    assert_eq!(pair.route_writes(follower).await, 0.0);

    pair.replicas[leader].terminate();
    let took = pair
        .change_route_and_await_status(cluster, 2, GRACEFUL_LEASE_DURATION / 3)
        .await;
    eprintln!("status written by the new leader {took:?} after SIGTERM of the old one");
    assert!(pair.leads(follower).await, "the survivor leads");
    assert!(pair.route_writes(follower).await > 0.0);
    assert_eq!(
        pair.replicas[leader].log_lines_containing("released the lease"),
        1,
        "the old leader gave the Lease up"
    );

    let (served, failed) = survivor_client.finish().await;
    assert!(served > 0);
    assert_eq!(
        failed, 0,
        "requests through the survivor failed ({served} served)"
    );
}
