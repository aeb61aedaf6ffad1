//! Gateway API in standalone mode: the same GatewayClass, Gateway and HTTPRoute manifests as
//! in a cluster, read from the directory. Each Gateway listens on its own address from
//! `--gateway-addresses`, so two Gateways on one port stay apart; routes attach by hostname
//! intersection; an invalid backend's share is answered 500; a Gateway removed from the
//! directory closes its socket.

use std::net::SocketAddr;

use serde_json::{Value, json};
use weir_e2e::{ConfigDir, Echo, HttpClient, Weir, eventually, manifests::service_with_endpoints};

const POOL: &str = "127.0.202.0/24";
const PORT: u16 = 18_080;

fn class() -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
           "metadata": {"name": "weir"},
           "spec": {"controllerName": "weir.dev/gateway-controller"}})
}

fn gateway(name: &str, hostname: Option<&str>) -> Value {
    let mut listener = json!({"name": "http", "port": PORT, "protocol": "HTTP"});
    if let Some(hostname) = hostname {
        listener["hostname"] = hostname.into();
    }
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": name},
           "spec": {"gatewayClassName": "weir", "listeners": [listener]}})
}

fn http_route(name: &str, gateway: &str, hostnames: &[&str], rules: Value) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": name},
           "spec": {"parentRefs": [{"name": gateway}], "hostnames": hostnames, "rules": rules}})
}

fn to(service: &str) -> Value {
    json!([{"backendRefs": [{"name": service, "port": weir_e2e::manifests::SERVICE_PORT}]}])
}

/// The address of the Gateway's listener socket, as `/debug/routes` shows it.
async fn address_of(weir: &Weir, gateway: &str) -> SocketAddr {
    let listener = format!("gateway:default/{gateway}#http");
    eventually("the Gateway's listener is configured", async || {
        let routes = weir.debug_routes().await;
        routes["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == listener.as_str())
            .and_then(|l| l["address"].as_str()?.parse().ok())
            .ok_or_else(|| format!("listeners: {}", routes["listeners"]))
    })
    .await
}

#[tokio::test]
async fn gateways_on_one_port_stay_apart_and_routes_attach_by_hostname() {
    let config = ConfigDir::new();
    let (a, b) = (Echo::start("a").await, Echo::start("b").await);
    let mut objects = service_with_endpoints("a", &[a.address()]);
    objects.extend(service_with_endpoints("b", &[b.address()]));
    config.write("services.yaml", &objects);
    config.write(
        "gateways.yaml",
        &[
            class(),
            gateway("public", Some("*.example.com")),
            gateway("internal", None),
            http_route(
                "shop",
                "public",
                &["shop.example.com", "shop.example.org"],
                to("a"),
            ),
            http_route("ops", "internal", &["shop.example.com"], to("b")),
            http_route(
                "broken",
                "public",
                &["broken.example.com"],
                json!([{"backendRefs": [
                    {"name": "a", "port": weir_e2e::manifests::SERVICE_PORT},
                    {"name": "missing", "port": weir_e2e::manifests::SERVICE_PORT}
                ]}]),
            ),
        ],
    );
    let weir = Weir::start_with_args(&config, &["--gateway-addresses", POOL]).await;
    let (public, internal) = (
        address_of(&weir, "public").await,
        address_of(&weir, "internal").await,
    );
    assert_ne!(
        public.ip(),
        internal.ip(),
        "each Gateway has its own address"
    );
    assert_eq!((public.port(), internal.port()), (PORT, PORT));
    let (public, internal) = (HttpClient::new(public), HttpClient::new(internal));
    eventually("both Gateways serve", async || {
        let by = (
            public.get("shop.example.com", "/").await.answered_by(),
            internal.get("shop.example.com", "/").await.answered_by(),
        );
        if by == ("a".to_owned(), "b".to_owned()) {
            Ok(())
        } else {
            Err(format!("{by:?}"))
        }
    })
    .await;
    assert_eq!(
        public.get("shop.example.org", "/").await.status.as_u16(),
        404,
        "outside the listener's *.example.com"
    );
    assert_eq!(
        weir.get("shop.example.com", "/").await.status.as_u16(),
        404,
        "the command line's listener serves no Gateway's routes"
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(public.get("broken.example.com", "/").await.status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 500, 500],
        "the missing Service's half is 500"
    );

    // The internal Gateway goes: its socket closes; the public one keeps serving.
    config.write(
        "gateways.yaml",
        &[
            class(),
            gateway("public", Some("*.example.com")),
            http_route("shop", "public", &["shop.example.com"], to("a")),
        ],
    );
    eventually(
        "the removed Gateway's socket is closed",
        async || match internal
            .request(http::Method::GET, "shop.example.com", "/")
            .try_send()
            .await
        {
            Err(_) => Ok(()),
            Ok(reply) => Err(format!("still answered {}", reply.status)),
        },
    )
    .await;
    assert_eq!(public.get("shop.example.com", "/").await.answered_by(), "a");
}
