//! TLS in a cluster: a Route's `spec.tls` names a `kubernetes.io/tls` Secret created with
//! kubectl; Weir, running as its restricted identity (which may list and watch Secrets, narrowed
//! to that type), serves it, and follows the Secret when it is updated in place.

use http::StatusCode;
use weir_e2e::{
    Echo, Weir,
    certs::{Ca, KeyType},
    cluster::cluster,
    eventually, manifests,
    tls_client::{TlsClient, leaf_der},
};

#[tokio::test]
async fn a_route_with_tls_is_served_and_its_secret_updated_in_place_is_picked_up() {
    let cluster = cluster();
    cluster.install_route_crd();
    let namespace = cluster.namespace("tls").await;
    let echo = Echo::start_on_test_host("a").await;
    let host = format!("shop.{namespace}.test");
    let ca = Ca::new("weir-cluster-ca");
    let (first, second) = (
        ca.leaf(&[&host], KeyType::EcdsaP256),
        ca.leaf(&[&host], KeyType::Rsa2048),
    );
    cluster.apply(
        &namespace,
        &[
            manifests::service("echo"),
            manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
            manifests::tls_secret("shop-tls", first.chain_pem(), first.key_pem()),
            manifests::route("shop")
                .host(&host)
                .backend("echo")
                .tls("shop-tls", &[])
                .into(),
        ],
    );
    let weir = Weir::start_in_cluster_with_args(
        &cluster.weir_identity(&namespace).await,
        &namespace,
        &["--listen-tls", "127.0.0.1:0"],
    )
    .await;
    let client = TlsClient::new(weir.tls_address(), ca.pem(), &["h2", "http/1.1"]);

    let served = eventually("the Route is served over TLS", async || {
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
    assert_eq!(served.0, leaf_der(first.chain_pem()));
    assert!(served.1.contains("\"instance\":\"a\""), "{}", served.1);
    eventually("ResolvedRefs=True is written", async || {
        let resolved = cluster.kubectl(&[
            "get",
            "route",
            "shop",
            "-n",
            &namespace,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ResolvedRefs\")].status}",
        ]);
        if resolved == "True" {
            Ok(())
        } else {
            Err(format!("ResolvedRefs={resolved:?}"))
        }
    })
    .await;

    // The same Secret, updated in place.
    cluster.apply(
        &namespace,
        &[manifests::tls_secret(
            "shop-tls",
            second.chain_pem(),
            second.key_pem(),
        )],
    );
    let second_der = leaf_der(second.chain_pem());
    eventually(
        "new handshakes present the updated certificate",
        async || {
            let connection = client.connect(&host).await?;
            if connection.peer_leaf() == second_der {
                Ok(())
            } else {
                Err("still the first certificate".into())
            }
        },
    )
    .await;
}
