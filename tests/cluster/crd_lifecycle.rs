//! The Route informer follows the Route CRD: started when the CRD appears after Weir, stopped
//! (its Routes dropped, its watch quiet) when the CRD is deleted, started again when it
//! returns. Cluster-wide, so this binary has an API server of its own.

use weir_e2e::{Echo, Weir, cluster::cluster, eventually, eventually_within, manifests};

#[tokio::test]
async fn route_informer_starts_and_stops_with_the_route_crd() {
    let cluster = cluster();
    let namespace = cluster.namespace("crd").await;
    let echo = Echo::start_on_test_host("a").await;
    cluster.apply(
        &namespace,
        &[
            manifests::service("echo"),
            manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
        ],
    );
    let host = format!("echo.{namespace}.test");
    let route: serde_json::Value = manifests::route("echo")
        .host(&host)
        .prefix("/")
        .backend("echo")
        .into();

    // No Route CRD yet: Weir still becomes ready, serving no routes.
    let weir = Weir::start_in_cluster(&cluster.weir_identity(&namespace).await, &namespace).await;
    assert_eq!(weir.get(&host, "/").await.status.as_u16(), 404);

    cluster.install_route_crd();
    cluster.apply(&namespace, std::slice::from_ref(&route));
    eventually(
        "routes serve once the CRD is installed",
        async || match weir.get(&host, "/").await.answered_by() {
            who if who == "a" => Ok(()),
            who => Err(who),
        },
    )
    .await;

    let failures_before = weir.log_lines_containing("watch failed");
    cluster.kubectl(&["delete", "crd", "routes.weir.dev", "--wait=true"]);
    eventually("routes are dropped with their CRD", async || {
        match weir.get(&host, "/").await.status.as_u16() {
            404 => Ok(()),
            status => Err(format!("status {status}")),
        }
    })
    .await;
    assert!(weir.log_lines_containing("stopping the Route informer") >= 1);

    // Installing it again proves the informer restarts, and bounds the episode for counting.
    cluster.install_route_crd();
    cluster.apply(&namespace, std::slice::from_ref(&route));
    eventually_within(
        std::time::Duration::from_secs(30),
        "routes serve again when the CRD returns",
        async || match weir.get(&host, "/").await.answered_by() {
            who if who == "a" => Ok(()),
            who => Err(who),
        },
    )
    .await;
    let failures = weir.log_lines_containing("watch failed") - failures_before;
    assert!(
        failures <= 2,
        "the stopped informer kept failing: {failures} watch failures logged"
    );
}
