//! Ingress in a cluster: an IngressClass of Weir's controller, an Ingress with TLS from a
//! `kubernetes.io/tls` Secret, and a Service with its EndpointSlice, applied with kubectl.
//! Weir, running as its restricted identity (examples/deploy RBAC), serves the Ingress over
//! HTTPS (by SNI) and HTTP, and writes `status.loadBalancer` with the published address.

use http::StatusCode;
use weir_e2e::{
    Echo, Weir,
    certs::{Ca, KeyType},
    cluster::cluster,
    eventually, manifests,
    tls_client::{TlsClient, leaf_der},
};

#[tokio::test]
async fn an_ingress_with_tls_serves_over_https_and_http_and_gets_the_published_address() {
    let cluster = cluster();
    let namespace = cluster.namespace("ingress").await;
    let echo = Echo::start_on_test_host("a").await;
    let host = format!("shop.{namespace}.test");
    let ca = Ca::new("weir-ingress-ca");
    let leaf = ca.leaf(&[&host], KeyType::EcdsaP256);
    // IngressClasses are cluster-wide: one per test, so concurrent tests never share one.
    let class = format!("weir-{namespace}");
    cluster.apply(
        &namespace,
        &[
            manifests::ingress_class(&class, "weir.dev/ingress-controller", false),
            manifests::service("echo"),
            manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
            manifests::tls_secret("shop-tls", leaf.chain_pem(), leaf.key_pem()),
            manifests::ingress("shop")
                .class(&class)
                .path(&host, "Prefix", "/", "echo")
                .tls("shop-tls", &[&host])
                .into(),
        ],
    );
    let identity = cluster.weir_identity(&namespace).await;
    for (verb, resource) in [
        ("list", "ingresses"),
        ("watch", "ingressclasses"),
        ("patch", "ingresses/status"),
    ] {
        let (resource, subresource) = match resource.split_once('/') {
            Some((resource, sub)) => (resource, Some(format!("--subresource={sub}"))),
            None => (resource, None),
        };
        let mut args = vec![verb, resource];
        args.extend(subresource.as_deref());
        assert!(
            cluster.weir_can(&namespace, &args),
            "weir may {verb} {resource}"
        );
    }
    assert!(
        !cluster.weir_can(&namespace, &["update", "ingresses"]),
        "nothing beyond what Ingress support needs"
    );
    let weir = Weir::start_in_cluster_with_args(
        &identity,
        &namespace,
        &[
            "--listen-tls",
            "127.0.0.1:0",
            "--publish-address",
            "10.0.0.7",
        ],
    )
    .await;
    let client = TlsClient::new(weir.tls_address(), ca.pem(), &["h2", "http/1.1"]);

    let (served_leaf, body) = eventually("the Ingress is served over TLS", async || {
        let connection = client.connect(&host).await?;
        let leaf = connection.peer_leaf();
        let (status, body) = connection.get("/hello").await?;
        if status == StatusCode::OK {
            Ok((leaf, body))
        } else {
            Err(format!("status {status}: {body}"))
        }
    })
    .await;
    assert_eq!(served_leaf, leaf_der(leaf.chain_pem()));
    assert!(body.contains("\"instance\":\"a\""), "{body}");
    assert_eq!(
        weir.get(&host, "/hello").await.answered_by(),
        "a",
        "and over HTTP"
    );

    eventually(
        "status.loadBalancer holds the published address",
        async || {
            let ip = cluster.kubectl(&[
                "get",
                "ingress",
                "shop",
                "-n",
                &namespace,
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ]);
            if ip == "10.0.0.7" {
                Ok(())
            } else {
                Err(format!("ip={ip:?}"))
            }
        },
    )
    .await;
}
