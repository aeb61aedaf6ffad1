//! Deletes made while Weir's watch is down reach it as tombstones on relist. The API server
//! Weir talks to is stopped; Routes are deleted through a second API server on the same
//! etcd; the first comes back. Meanwhile the data plane keeps serving its last good table.
//! Stopping the API server is cluster-wide, so this binary has an API server of its own.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use weir_e2e::{Echo, Weir, cluster::cluster, eventually_within, manifests};

const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn deletes_missed_while_the_watch_was_down_arrive_as_tombstones() {
    let cluster = cluster();
    cluster.install_route_crd();
    let namespace = cluster.namespace("outage").await;
    let echo = Echo::start_on_test_host("a").await;
    let (kept, doomed) = (
        format!("kept.{namespace}.test"),
        format!("doomed.{namespace}.test"),
    );
    cluster.apply(
        &namespace,
        &[
            manifests::service("echo"),
            manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
            manifests::route("kept")
                .host(&kept)
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
    for host in [&kept, &doomed] {
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

    // A client keeps using the kept route for the whole outage.
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
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
                let counter = if weir.get(&kept, "/").await.status.is_success() {
                    &served
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let outage = cluster.stop_apiserver();
    let other = cluster.start_second_apiserver();
    other.kubectl(&["delete", "route", "doomed", "-n", &namespace]);
    drop(other);
    let _restarted = outage.restart();

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
    assert!(
        weir.log_lines_containing("relist found objects deleted while the watch was down") >= 1,
        "the delete should arrive through the relist, as a tombstone"
    );
    assert_eq!(weir.get(&kept, "/").await.answered_by(), "a");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed while the API server was down"
    );
    assert!(served.load(Ordering::Relaxed) > 0);
}
