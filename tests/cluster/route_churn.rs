//! Route churn under load. 1000 Route writes (creates, modifications and deletes of routes
//! of their own) go to the API server as fast as it accepts them, while clients hammer 10
//! stable Routes: no request to a stable Route may fail. Each churned Route is polled through
//! Weir from the moment its create returned until its first 200 (the apply → first-200
//! latency, printed), then kept busy through its two modifications until the test deletes
//! it: no request to it may fail after its first 200, nor go back to an older version of
//! it. Weir runs as its restricted identity. The Route writes load the whole API server, so
//! this binary has one of its own.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::Method;
use kube::{
    Api,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    },
};
use serde_json::{Value, json};
use tokio::{
    sync::Semaphore,
    time::{Instant, sleep},
};
use tokio_util::sync::CancellationToken;
use weir_e2e::{Echo, HttpClient, Weir, cluster::cluster, eventually_within, manifests};

const STABLE_ROUTES: usize = 10;
/// Concurrent clients on the stable Routes, each cycling through all of them.
const STABLE_CLIENTS: usize = 8;
/// Each churned Route is created, modified twice and deleted: four writes.
const CHURNED_ROUTES: usize = 250;
const WRITES_PER_ROUTE: usize = 4;
/// Churned Routes in their lifecycle at once: enough that writes always wait for a slot
/// (the figure line says how long), so the API server, not the test, sets the pace.
const ROUTES_AT_ONCE: usize = 96;
/// Route writes in flight to the API server at once. On a loaded 2-core machine 32 took
/// ~170 writes/s and 64 no more, so 32 is what the API server accepts.
const WRITES_IN_FLIGHT: usize = 32;
/// The pause between two requests of one churned Route's poller: pacing, so that 48 pollers
/// leave the two cores to Weir and the API server.
const POLL_PACING: Duration = Duration::from_millis(5);
/// How long a write may take to show in routing before the test gives up: generous, as the
/// machine is loaded; the figures are printed, not asserted.
const SERVE_DEADLINE: Duration = Duration::from_secs(60);
/// The header every poller sends; the last version of a churned Route matches on it.
const CHURN_HEADER: (&str, &str) = ("x-churn", "yes");
/// The header each version of a churned Route sets on the way upstream, read back from the
/// echo backend's answer.
const VERSION_HEADER: &str = "x-churn-version";
/// The path every poller asks for; every version of a churned Route serves it.
const POLLED_PATH: &str = "/app/probe";

#[tokio::test]
async fn a_thousand_route_writes_fail_no_request_to_stable_or_newly_served_routes() {
    let cluster = cluster();
    cluster.install_route_crd();
    let namespace = cluster.namespace("churn").await;
    let echo = Echo::start_on_test_host("a").await;
    let stable_hosts: Vec<String> = (0..STABLE_ROUTES)
        .map(|i| format!("stable{i}.{namespace}.test"))
        .collect();
    let mut objects = vec![
        manifests::service("echo"),
        manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
    ];
    objects.extend(stable_hosts.iter().enumerate().map(|(i, host)| {
        manifests::route(&format!("stable{i}"))
            .host(host)
            .prefix("/")
            .backend("echo")
            .into()
    }));
    cluster.apply(&namespace, &objects);
    let weir = Weir::start_in_cluster(&cluster.weir_identity(&namespace).await, &namespace).await;
    for host in &stable_hosts {
        eventually_within(
            SERVE_DEADLINE,
            "the stable routes serve",
            async || match weir.get(host, "/").await.answered_by() {
                who if who == "a" => Ok(()),
                who => Err(who),
            },
        )
        .await;
    }

    let stable = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    let stable_clients: Vec<_> = (0..STABLE_CLIENTS)
        .map(|client| {
            let (proxy, hosts, stable, stop) = (
                weir.proxy().clone(),
                stable_hosts.clone(),
                stable.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                // Each client starts at a different Route, so all ten are busy at once.
                for host in hosts.iter().cycle().skip(client) {
                    if stop.is_cancelled() {
                        break;
                    }
                    let reply = proxy.request(Method::GET, host, "/stable").try_send().await;
                    match reply {
                        Ok(reply) if reply.answered_by() == "a" => stable.served(),
                        Ok(reply) => stable.failed(format!("{host}: {}", reply.status)),
                        Err(error) => stable.failed(format!("{host}: {error}")),
                    }
                }
            })
        })
        .collect();

    let churn = Arc::new(Churn {
        routes: Api::namespaced_with(cluster.admin().await, &namespace, &route_resource()),
        slots: Semaphore::new(WRITES_IN_FLIGHT),
        writes: AtomicU64::new(0),
        waited_for_slot: Mutex::new(Duration::ZERO),
        proxy: weir.proxy().clone(),
        after_first_200: Tally::default(),
        first_200: Mutex::new(Vec::new()),
        modification_seen: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let lifecycles = Arc::new(Semaphore::new(ROUTES_AT_ONCE));
    let mut running = Vec::new();
    for index in 0..CHURNED_ROUTES {
        let turn = lifecycles.clone().acquire_owned().await.unwrap();
        let (churn, host) = (churn.clone(), format!("churn{index}.{namespace}.test"));
        running.push(tokio::spawn(async move {
            churn.lifecycle(&format!("churn{index}"), &host).await;
            drop(turn);
        }));
    }
    for lifecycle in running {
        lifecycle.await.expect("a churned Route's lifecycle");
    }
    let churn_took = started.elapsed();
    stop.cancel();
    for client in stable_clients {
        client.await.unwrap();
    }

    let writes = churn.writes.load(Ordering::Relaxed);
    let first_200 = sorted(&churn.first_200);
    let modification_seen = sorted(&churn.modification_seen);
    eprintln!(
        "route churn: {writes} writes in {:.1} s ({:.0}/s, {WRITES_IN_FLIGHT} in flight, each \
         waited {:.0} ms on average for a slot); apply→first-200 p50 {} p99 {} max {} over {} \
         routes; modify→served p50 {} p99 {} max {} over {} modifications; stable routes: {} \
         requests, {} failed; new routes after first 200: {} requests, {} failed",
        churn_took.as_secs_f64(),
        writes as f64 / churn_took.as_secs_f64(),
        churn.waited_for_slot.lock().unwrap().as_secs_f64() * 1000.0 / writes as f64,
        millis(percentile(&first_200, 50)),
        millis(percentile(&first_200, 99)),
        millis(percentile(&first_200, 100)),
        first_200.len(),
        millis(percentile(&modification_seen, 50)),
        millis(percentile(&modification_seen, 99)),
        millis(percentile(&modification_seen, 100)),
        modification_seen.len(),
        stable.requests(),
        stable.failures(),
        churn.after_first_200.requests(),
        churn.after_first_200.failures(),
    );
    assert_eq!(writes as usize, CHURNED_ROUTES * WRITES_PER_ROUTE);
    assert_eq!(first_200.len(), CHURNED_ROUTES);
    assert_eq!(modification_seen.len(), CHURNED_ROUTES * 2);
    stable.assert_none_failed("the stable routes");
    churn
        .after_first_200
        .assert_none_failed("the churned routes after their first 200");
    assert!(stable.requests() > 0 && churn.after_first_200.requests() > 0);

    // Every delete reached the data plane, and the stable Routes outlived the churn.
    for index in 0..CHURNED_ROUTES {
        let host = format!("churn{index}.{namespace}.test");
        eventually_within(
            SERVE_DEADLINE,
            "the deleted Route answers 404",
            async || match weir.get(&host, POLLED_PATH).await.status.as_u16() {
                404 => Ok(()),
                status => Err(format!("{host}: status {status}")),
            },
        )
        .await;
    }
    for host in &stable_hosts {
        assert_eq!(weir.get(host, "/").await.answered_by(), "a", "{host}");
    }
}

/// The churn's shared parts: the API, the write slots, and what was seen.
struct Churn {
    routes: Api<DynamicObject>,
    slots: Semaphore,
    writes: AtomicU64,
    /// The sum over all writes of the time each waited for a free slot.
    waited_for_slot: Mutex<Duration>,
    proxy: HttpClient,
    after_first_200: Tally,
    /// Per churned Route: from its create's return to its first 200 through Weir.
    first_200: Mutex<Vec<Duration>>,
    /// Per modification: from the write's return to the first answer of the new version.
    modification_seen: Mutex<Vec<Duration>>,
}

impl Churn {
    /// Creates Route `name` for `host`, waits for its first 200, modifies it twice (each time
    /// waiting until the new version answers), then stops polling and deletes it. Every
    /// request after the first 200 counts.
    async fn lifecycle(&self, name: &str, host: &str) {
        let object: DynamicObject = serde_json::from_value(churned_route(name, host, 1))
            .expect("a Route is a DynamicObject");
        let (first_200, created) = tokio::join!(
            self.poll_until_version(host, 1, None),
            self.write(|routes| async move {
                routes
                    .create(&PostParams::default(), &object)
                    .await
                    .map(drop)
            }),
        );
        // Weir may serve the Route before the API server's answer to the create arrives.
        record(
            &self.first_200,
            first_200.saturating_duration_since(created),
        );
        for version in [2, 3] {
            let new_spec = churned_route(name, host, version)["spec"].clone();
            let (seen, written) = tokio::join!(
                self.poll_until_version(host, version, Some(version - 1)),
                self.write(|routes| async move {
                    routes
                        .patch(
                            name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"spec": new_spec})),
                        )
                        .await
                        .map(drop)
                }),
            );
            record(
                &self.modification_seen,
                seen.saturating_duration_since(written),
            );
        }
        self.write(|routes| async move {
            routes
                .delete(name, &DeleteParams::default())
                .await
                .map(drop)
        })
        .await;
    }

    /// Polls `host` until an answer of `version` or later comes, and returns when it came.
    /// `counting_from` is `None` before the Route's first 200, when a 404 is expected and
    /// nothing counts; else the version already seen. From the first 200 on every request
    /// counts, and a failure is an answer that is not a 2xx from the echo backend, no answer,
    /// or a version older than one already seen.
    async fn poll_until_version(
        &self,
        host: &str,
        version: u32,
        counting_from: Option<u32>,
    ) -> Instant {
        let mut newest_seen = counting_from;
        let deadline = Instant::now() + SERVE_DEADLINE;
        loop {
            let reply = self
                .proxy
                .request(Method::GET, host, POLLED_PATH)
                .header(CHURN_HEADER.0, CHURN_HEADER.1)
                .try_send()
                .await;
            let answered = Instant::now();
            let seen = match &reply {
                Ok(reply) if reply.answered_by() == "a" => reply
                    .header_seen_upstream(VERSION_HEADER)
                    .and_then(|v| v.parse::<u32>().ok()),
                _ => None,
            };
            match (seen, newest_seen) {
                (Some(seen), Some(newest)) if seen < newest => self
                    .after_first_200
                    .failed(format!("{host}: version {seen} after version {newest}")),
                (Some(_), Some(_)) => self.after_first_200.served(),
                (Some(_), None) => {}
                (None, Some(_)) => self
                    .after_first_200
                    .failed(format!("{host}: {}", describe(&reply))),
                (None, None) => {}
            }
            if let Some(seen) = seen {
                if newest_seen.is_none() {
                    // The Route's first 200 counts as served after its first 200.
                    self.after_first_200.served();
                }
                newest_seen = Some(newest_seen.map_or(seen, |newest| newest.max(seen)));
                if seen >= version {
                    return answered;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{host} did not answer version {version} within {SERVE_DEADLINE:?}; last: {}",
                describe(&reply)
            );
            sleep(POLL_PACING).await;
        }
    }

    /// Runs one Route write in a free slot; returns when the API server answered.
    async fn write<F, Fut>(&self, write: F) -> Instant
    where
        F: FnOnce(Api<DynamicObject>) -> Fut,
        Fut: Future<Output = Result<(), kube::Error>>,
    {
        let waiting = Instant::now();
        let _slot = self.slots.acquire().await.unwrap();
        *self.waited_for_slot.lock().unwrap() += waiting.elapsed();
        write(self.routes.clone())
            .await
            .unwrap_or_else(|error| panic!("a Route write failed: {error}"));
        self.writes.fetch_add(1, Ordering::Relaxed);
        Instant::now()
    }
}

/// Version `version` of churned Route `name` for `host`. Every version serves
/// [`POLLED_PATH`] to a request with [`CHURN_HEADER`] and tells the backend its number in
/// [`VERSION_HEADER`]; each changes how it matches, which the data plane must pick up:
/// 1 matches the prefix `/app`, 2 widens it to `/`, 3 adds a header match.
fn churned_route(name: &str, host: &str, version: u32) -> Value {
    let mut route =
        manifests::route(name)
            .host(host)
            .prefix(if version == 1 { "/app" } else { "/" });
    if version == 3 {
        route = route.header(CHURN_HEADER.0, CHURN_HEADER.1);
    }
    route
        .filter(
            json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": VERSION_HEADER, "value": version.to_string()}],
            }}),
        )
        .backend("echo")
        .into()
}

fn route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("weir.dev", "v1alpha1", "Route"),
        "routes",
    )
}

/// Requests that got what they should, and those that did not (the first few described).
#[derive(Default)]
struct Tally {
    served: AtomicU64,
    failed: AtomicU64,
    first_failures: Mutex<Vec<String>>,
}

impl Tally {
    fn served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failures.lock().unwrap();
        if first.len() < 20 {
            first.push(what);
        }
    }

    fn requests(&self) -> u64 {
        self.served.load(Ordering::Relaxed) + self.failures()
    }

    fn failures(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn assert_none_failed(&self, what: &str) {
        assert_eq!(
            self.failures(),
            0,
            "requests to {what} failed; the first: {:#?}",
            self.first_failures.lock().unwrap()
        );
    }
}

fn describe(reply: &Result<weir_e2e::Reply, String>) -> String {
    match reply {
        Ok(reply) => format!("status {}: {}", reply.status, reply.body),
        Err(error) => error.clone(),
    }
}

fn record(list: &Mutex<Vec<Duration>>, value: Duration) {
    list.lock().unwrap().push(value);
}

fn sorted(list: &Mutex<Vec<Duration>>) -> Vec<Duration> {
    let mut list = list.lock().unwrap().clone();
    list.sort();
    list
}

/// The nearest-rank percentile of a sorted list.
fn percentile(sorted: &[Duration], percent: usize) -> Option<Duration> {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn millis(value: Option<Duration>) -> String {
    value.map_or("-".into(), |v| format!("{} ms", v.as_millis()))
}
