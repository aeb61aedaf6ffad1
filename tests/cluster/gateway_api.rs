//! Gateway API in a cluster, discovered at runtime: Weir starts before the Gateway API CRDs
//! exist, serves an HTTPRoute on its Gateway's own address once they are installed (with the
//! GatewayClass, Gateway and HTTPRoute statuses written), and stops those informers quietly
//! when the CRDs are deleted, the Gateway's socket closed with them. Weir runs as its
//! restricted identity (examples/deploy RBAC). The CRDs are cluster-wide, so this binary has an
//! API server of its own.

use std::time::Duration;

use weir_e2e::{
    Echo, HttpClient, Weir, cluster::cluster, eventually, eventually_within, manifests,
};

/// Gateways take their addresses from here; only this test binary uses it.
const POOL: &str = "127.0.201.0/24";

#[tokio::test]
async fn http_routes_serve_once_the_crds_appear_and_stop_quietly_when_they_go() {
    let cluster = cluster();
    let namespace = cluster.namespace("gwapi").await;
    let echo = Echo::start_on_test_host("a").await;
    cluster.apply(
        &namespace,
        &[
            manifests::service("echo"),
            manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
        ],
    );
    let identity = cluster.weir_identity(&namespace).await;
    // No Gateway API CRDs yet: Weir becomes ready all the same.
    let weir =
        Weir::start_in_cluster_with_args(&identity, &namespace, &["--gateway-addresses", POOL])
            .await;

    let crds = cluster.install_gateway_api_crds();
    // Checked once the kinds exist: `can-i` resolves resource names through discovery.
    for args in [
        &["list", "gateways"][..],
        &["watch", "httproutes"],
        &["watch", "referencegrants"],
        &["list", "gatewayclasses"],
        &["patch", "gateways", "--subresource=status"],
        &["patch", "httproutes", "--subresource=status"],
        &["patch", "gatewayclasses", "--subresource=status"],
        &["watch", "namespaces"],
    ] {
        assert!(cluster.weir_can(&namespace, args), "weir may {args:?}");
    }
    assert!(
        !cluster.weir_can(&namespace, &["update", "gateways"]),
        "nothing beyond what Gateway API support needs"
    );

    let class = format!("weir-{namespace}");
    cluster.apply(
        &namespace,
        &[
            serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": class},
                "spec": {"controllerName": "weir.dev/gateway-controller"}
            }),
            serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "edge"},
                "spec": {"gatewayClassName": class, "listeners": [
                    {"name": "http", "port": 80, "protocol": "HTTP"}
                ]}
            }),
            serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "shop"},
                "spec": {
                    "parentRefs": [{"name": "edge"}],
                    "hostnames": ["shop.example.com"],
                    "rules": [{"backendRefs": [{"name": "echo", "port": manifests::SERVICE_PORT}]}]
                }
            }),
        ],
    );
    let jsonpath = |kind: &str, name: &str, path: &str| {
        cluster.kubectl(&[
            "get",
            kind,
            name,
            "-n",
            &namespace,
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    let address = eventually("the Gateway gets its address", async || {
        let ip = jsonpath("gateway", "edge", "{.status.addresses[0].value}");
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| format!("address {ip:?}"))
    })
    .await;
    assert!(address.to_string().starts_with("127.0.201."), "{address}");
    eventually("statuses are written", async || {
        let class_accepted = jsonpath(
            "gatewayclass",
            &class,
            r#"{.status.conditions[?(@.type=="Accepted")].status}"#,
        );
        let programmed = jsonpath(
            "gateway",
            "edge",
            r#"{.status.conditions[?(@.type=="Programmed")].status}"#,
        );
        let attached = jsonpath("gateway", "edge", "{.status.listeners[0].attachedRoutes}");
        let route_accepted = jsonpath(
            "httproute",
            "shop",
            r#"{.status.parents[0].conditions[?(@.type=="Accepted")].status}"#,
        );
        let state = (
            class_accepted.as_str(),
            programmed.as_str(),
            attached.as_str(),
            route_accepted.as_str(),
        );
        if state == ("True", "True", "1", "True") {
            Ok(())
        } else {
            Err(format!("{state:?}"))
        }
    })
    .await;
    let gateway = HttpClient::new((address, 80).into());
    eventually(
        "the HTTPRoute is served on the Gateway's address",
        async || match gateway
            .request(http::Method::GET, "shop.example.com", "/")
            .try_send()
            .await
        {
            Ok(reply) if reply.answered_by() == "a" => Ok(()),
            Ok(reply) => Err(format!("status {}", reply.status)),
            Err(error) => Err(error),
        },
    )
    .await;
    assert_eq!(
        weir.get("shop.example.com", "/").await.status.as_u16(),
        404,
        "the command line's listener does not serve the Gateway's routes"
    );
    let features = jsonpath(
        "gatewayclass",
        &class,
        "{.status.supportedFeatures[*].name}",
    );
    assert!(features.contains("HTTPRoute"), "{features}");

    let failures_before = weir.log_lines_containing("watch failed");
    for file in &crds {
        cluster.kubectl(&["delete", "--wait=true", "-f", file.to_str().unwrap()]);
    }
    eventually_within(
        Duration::from_secs(30),
        "the Gateway's socket closes with its CRDs",
        async || match gateway
            .request(http::Method::GET, "shop.example.com", "/")
            .try_send()
            .await
        {
            Err(_) => Ok(()),
            Ok(reply) => Err(format!("still answered {}", reply.status)),
        },
    )
    .await;
    assert!(weir.log_lines_containing("stopping the HTTPRoute informer") >= 1);
    // Bounds the episode: Weir still answers on its own listener.
    assert_eq!(weir.get("shop.example.com", "/").await.status.as_u16(), 404);
    let failures = weir.log_lines_containing("watch failed") - failures_before;
    assert!(
        failures <= 4,
        "the stopped informers kept failing: {failures} watch failures logged"
    );
}
