//! The API server down for 30 s under load. The API server Weir talks to is killed; a Route is
//! deleted through a second API server on the same etcd; the first comes back after 30 s.
//! Meanwhile the data plane keeps serving its last good table to a client that never stops
//! (0 failed requests), `/readyz` stays ready, the delete arrives as a tombstone on relist,
//! each informer lists once (the restarted API server's own request counts), and a Route
//! applied right after the restart is served. Stopping the API server is cluster-wide, so
//! this binary has an API server of its own.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use weir_e2e::{Echo, Weir, cluster::cluster, eventually_within, manifests};

const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);
/// How long the API server stays down.
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn thirty_seconds_without_the_api_server_fail_no_request_and_relist_once() {
    let cluster = cluster();
    cluster.install_route_crd();
    let namespace = cluster.namespace("outage").await;
    let echo = Echo::start_on_test_host("a").await;
    let kept: Vec<String> = (1..=3)
        .map(|i| format!("kept{i}.{namespace}.test"))
        .collect();
    let doomed = format!("doomed.{namespace}.test");
    cluster.apply(
        &namespace,
        &[
            manifests::service("echo"),
            manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
            manifests::route("kept1")
                .host(&kept[0])
                .prefix("/")
                .backend("echo")
                .into(),
            manifests::route("kept2")
                .host(&kept[1])
                .prefix("/")
                .backend("echo")
                .into(),
            manifests::route("kept3")
                .host(&kept[2])
                .prefix("/")
                .backend("echo")
                .into(),
            manifests::route("doomed")
                .host(&doomed)
                .prefix("/")
                .backend("echo")
                .into(),
        ],
    );
    let weir = Arc::new(Weir::start_in_cluster(&cluster.kubeconfig, &namespace).await);
    for host in kept.iter().chain([&doomed]) {
        eventually_within(RECOVERY_DEADLINE, "both routes serve", async || match weir
            .get(host, "/")
            .await
            .answered_by()
        {
            who if who == "a" => Ok(()),
            who => Err(who),
        })
        .await;
    }

    // A client keeps using the three kept routes for the whole outage, and a prober /readyz.
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let not_ready = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let client = {
        let (weir, kept, served, failed, stop) = (
            weir.clone(),
            kept.clone(),
            served.clone(),
            failed.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                for host in &kept {
                    let counter = if weir.get(host, "/").await.status.is_success() {
                        &served
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let prober = {
        let (weir, not_ready, stop) = (weir.clone(), not_ready.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if !weir
                    .admin()
                    .get("admin", "/readyz")
                    .await
                    .status
                    .is_success()
                {
                    not_ready.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let outage = cluster.stop_apiserver();
    let down_since = tokio::time::Instant::now();
    let other = cluster.start_second_apiserver();
    other.kubectl(&["delete", "route", "doomed", "-n", &namespace]);
    drop(other);
    // The fault itself lasts 30 s; nothing waits on this to synchronise.
    tokio::time::sleep_until(down_since + OUTAGE).await;
    let served_during_outage = served.load(Ordering::Relaxed);
    let (_restarted, audit_log) = outage.restart_audited();

    // A Route applied right after the restart is served.
    let fresh = format!("fresh.{namespace}.test");
    let applied = tokio::time::Instant::now();
    cluster.apply(
        &namespace,
        &[manifests::route("fresh")
            .host(&fresh)
            .prefix("/")
            .backend("echo")
            .into()],
    );
    eventually_within(
        RECOVERY_DEADLINE,
        "the fresh route serves",
        async || match weir.get(&fresh, "/").await.answered_by() {
            who if who == "a" => Ok(()),
            who => Err(who),
        },
    )
    .await;
    eprintln!(
        "a Route applied right after the restart served its first 200 after {:?}",
        applied.elapsed()
    );

    eventually_within(
        RECOVERY_DEADLINE,
        "the route deleted during the outage is gone",
        async || match weir.get(&doomed, "/").await.status.as_u16() {
            404 => Ok(()),
            status => Err(format!("status {status}")),
        },
    )
    .await;
    stop.cancel();
    client.await.unwrap();
    prober.await.unwrap();
    assert!(
        weir.log_lines_containing("relist found objects deleted while the watch was down") >= 1,
        "the delete should arrive through the relist, as a tombstone"
    );
    assert_eq!(weir.get(&kept[0], "/").await.answered_by(), "a");
    assert_eq!(
        not_ready.load(Ordering::Relaxed),
        0,
        "/readyz failed during the outage"
    );
    assert!(served_during_outage > 0);
    // No relist storm: the restarted API server's audit log shows each of Weir's informers
    // (one per resource and selector) listing at most once. Weir runs as the admin here, so its
    // requests are told apart by their client: neither the API server itself nor kubectl.
    let audit = std::fs::read_to_string(&audit_log).expect("the audit log");
    let mut lists: std::collections::BTreeMap<String, u32> = Default::default();
    for event in audit
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
    {
        if event["verb"] == "list"
            && event["user"]["username"] != "system:apiserver"
            && !event["userAgent"]
                .as_str()
                .unwrap_or("")
                .starts_with("kubectl")
            && event["responseStatus"]["code"] == 200
        {
            let uri = event["requestURI"].as_str().unwrap_or("");
            // The informer: path and selectors, without paging or resource versions.
            let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
            let selectors: Vec<&str> = query
                .split('&')
                .filter(|p| p.starts_with("labelSelector") || p.starts_with("fieldSelector"))
                .collect();
            *lists
                .entry(format!("{path}?{}", selectors.join("&")))
                .or_default() += 1;
        }
    }
    eprintln!("LIST calls by Weir after the restart: {lists:#?}");
    assert!(
        lists.keys().any(|informer| informer.contains("/routes")),
        "{lists:?}"
    );
    for (informer, count) in &lists {
        assert_eq!(
            *count, 1,
            "{informer} listed {count} times after the restart"
        );
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed while the API server was down"
    );
    assert!(served.load(Ordering::Relaxed) > 0);
}
