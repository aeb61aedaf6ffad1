//! Secret material never reaches a status subresource. Secrets carrying a marker where Weir
//! reads them (the PEM of two unusable `kubernetes.io/tls` Secrets, an AI provider's API key,
//! one refused for its spaces, and an AI client key) are referred to by a Route, AIModels, an
//! Ingress and a Gateway; once Weir, running as its restricted identity with debug logging,
//! has written every referrer's status (the verdicts on the bad Secrets included), no status
//! of any kind in the namespace, nor the GatewayClass's, nor the log, `/debug/routes` or
//! `/metrics` holds the marker or a Secret's data as the API server stores it (base64). The
//! Gateway API CRDs are cluster-wide, so this binary has an API server of its own.
//! `tests/e2e/tls.rs` and `tests/e2e/ai.rs` hold the same audit for standalone mode, error
//! bodies included.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use weir_e2e::{
    Echo, MockLlm, Weir,
    certs::{Ca, KeyType},
    cluster::{Cluster, cluster},
    eventually, eventually_within, manifests,
};

/// In every secret value of this test; nowhere else.
const MARKER: &str = "STATUSMARKER";
/// Gateways take their addresses from here; only this test binary uses it.
const POOL: &str = "127.0.203.0/24";
const PUBLISHED_ADDRESS: &str = "10.0.0.9";
/// The Secrets that carry the marker.
const MARKED_SECRETS: [&str; 5] = [
    "marked-cert",
    "marked-key",
    "provider-key",
    "spaced-provider-key",
    "client-key",
];

#[tokio::test]
async fn secret_material_reaches_no_status_log_debug_page_or_metric() {
    let cluster = cluster();
    cluster.install_route_crd();
    cluster.install_aimodel_crd();
    cluster.install_gateway_api_crds();
    let namespace = cluster.namespace("secret-status").await;
    let echo = Echo::start_on_test_host("a").await;
    let provider_key = format!("sk-{MARKER}-provider-3d7a");
    let client_key = format!("{MARKER}-client-91c4");
    let mock = MockLlm::start("primary", &provider_key).await;
    let route_host = format!("route.{namespace}.test");
    let ingress_host = format!("ingress.{namespace}.test");
    let leaf = Ca::new("weir-secret-status-ca").leaf(&[&ingress_host], KeyType::EcdsaP256);
    // PEM blocks holding nothing usable, the marker being what a parser error would quote:
    // `{MARKER}` is base64, so its block decodes (to bytes that are no key); with `!` it
    // does not.
    let marked_pem = |label: &str, body: &str| {
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    };
    let class = format!("weir-{namespace}");
    let mock_url = format!("{}/v1", mock.url());
    cluster.apply(
        &namespace,
        &[
            manifests::service("echo"),
            manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
            // A chain that is not base64; and a good chain with a key that is no key.
            manifests::tls_secret(
                "marked-cert",
                &marked_pem("CERTIFICATE", &format!("{MARKER}!")),
                &marked_pem("PRIVATE KEY", MARKER),
            ),
            manifests::tls_secret(
                "marked-key",
                leaf.chain_pem(),
                &marked_pem("PRIVATE KEY", MARKER),
            ),
            manifests::ai_provider_key("provider-key", &provider_key),
            manifests::ai_provider_key("spaced-provider-key", &format!("sk-{MARKER} spaced")),
            manifests::ai_client_key("client-key", &client_key),
            manifests::route("marked")
                .host(&route_host)
                .backend("echo")
                .tls("marked-cert", &[])
                .into(),
            manifests::ai_model(
                "chat",
                &mock_url,
                "mock-upstream",
                "provider-key",
                json!({}),
            ),
            manifests::ai_model(
                "spaced",
                &mock_url,
                "mock-upstream",
                "spaced-provider-key",
                json!({}),
            ),
            manifests::ingress_class(&class, "weir.dev/ingress-controller", false),
            manifests::ingress("marked")
                .class(&class)
                .path(&ingress_host, "Prefix", "/", "echo")
                .tls("marked-key", &[&ingress_host])
                .into(),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": class},
                "spec": {"controllerName": "weir.dev/gateway-controller"}
            }),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "edge"},
                "spec": {"gatewayClassName": class, "listeners": [
                    {"name": "http", "port": 80, "protocol": "HTTP"},
                    {"name": "https", "port": 443, "protocol": "HTTPS",
                        "tls": {"mode": "Terminate", "certificateRefs": [{"name": "marked-key"}]}}
                ]}
            }),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "shop"},
                "spec": {
                    "parentRefs": [{"name": "edge", "sectionName": "http"}],
                    "hostnames": ["shop.example.com"],
                    "rules": [{"backendRefs": [{"name": "echo", "port": manifests::SERVICE_PORT}]}]
                }
            }),
        ],
    );
    let weir = Weir::start_in_cluster_with_env(
        &cluster.weir_identity(&namespace).await,
        &namespace,
        &[
            "--listen-tls",
            "127.0.0.1:0",
            "--gateway-addresses",
            POOL,
            "--publish-address",
            PUBLISHED_ADDRESS,
        ],
        &[("RUST_LOG", "debug")],
    )
    .await;

    // Weir reads the client key: a chat completion with it is served.
    eventually("a chat completion with the marked client key", async || {
        let reply = weir
            .proxy()
            .request(Method::POST, "ai.test", "/v1/chat/completions")
            .header("authorization", &format!("Bearer {client_key}"))
            .header("content-type", "application/json")
            .body(
                json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
                    .to_string(),
            )
            .send()
            .await;
        match reply.status {
            StatusCode::OK => Ok(()),
            status => Err(format!("{status}: {}", reply.body)),
        }
    })
    .await;

    // Every referrer's status is written, with the verdicts on the marked Secrets.
    let get = |kind: &str, name: &str| object(cluster, &namespace, kind, name);
    eventually_within(
        std::time::Duration::from_secs(30),
        "every referrer has its status",
        async || {
            let route = get("route.weir.dev", "marked");
            expect(
                condition(&route["status"], "ResolvedRefs"),
                "False",
                "InvalidCertificateRef",
                "marked-cert tls.crt",
            )?;
            let chat = get("aimodel.weir.dev", "chat");
            expect(
                condition(&chat["status"], "ResolvedRefs"),
                "True",
                "ResolvedRefs",
                "",
            )?;
            let spaced = get("aimodel.weir.dev", "spaced");
            expect(
                condition(&spaced["status"], "ResolvedRefs"),
                "False",
                "InvalidCredentialsRef",
                "spaced-provider-key",
            )?;
            let ingress = get("ingress", "marked");
            let published = &ingress["status"]["loadBalancer"]["ingress"][0]["ip"];
            if published != PUBLISHED_ADDRESS {
                return Err(format!("Ingress published at {published}"));
            }
            let gateway = get("gateway", "edge");
            let https = gateway["status"]["listeners"]
                .as_array()
                .and_then(|listeners| listeners.iter().find(|l| l["name"] == "https"))
                .unwrap_or(&Value::Null);
            expect(
                condition(https, "ResolvedRefs"),
                "False",
                "InvalidCertificateRef",
                "marked-key tls.key",
            )?;
            let http_route = get("httproute", "shop");
            expect(
                condition(&http_route["status"]["parents"][0], "Accepted"),
                "True",
                "Accepted",
                "",
            )?;
            let gateway_class = object(cluster, "", "gatewayclass", &class);
            expect(
                condition(&gateway_class["status"], "Accepted"),
                "True",
                "Accepted",
                "",
            )
        },
    )
    .await;

    // Every status in the namespace, and the GatewayClass's.
    let mut statuses = Vec::new();
    for kind in [
        "routes.weir.dev",
        "aimodels.weir.dev",
        "ingresses",
        "gateways",
        "httproutes",
    ] {
        let listed = cluster.kubectl(&["get", kind, "-n", &namespace, "-o", "json"]);
        let listed: Value = serde_json::from_str(&listed).expect("kubectl prints JSON");
        for item in listed["items"].as_array().expect("a List") {
            let name = format!(
                "{kind}/{}",
                item["metadata"]["name"].as_str().unwrap_or_default()
            );
            assert!(
                item["status"].as_object().is_some_and(|s| !s.is_empty()),
                "{name} has no status"
            );
            statuses.push((name, item["status"].to_string()));
        }
    }
    // A Route, two AIModels, an Ingress, a Gateway and an HTTPRoute.
    assert_eq!(statuses.len(), 6, "{statuses:#?}");
    statuses.push((
        format!("gatewayclass/{class}"),
        object(cluster, "", "gatewayclass", &class)["status"].to_string(),
    ));
    // The Secrets' data as the API server holds it: base64 of each whole value.
    let mut stored = Vec::new();
    for name in MARKED_SECRETS {
        let secret = object(cluster, &namespace, "secret", name);
        for value in secret["data"]
            .as_object()
            .expect("a Secret with data")
            .values()
        {
            stored.push(value.as_str().expect("base64").to_owned());
        }
    }
    let logs = weir.log_lines_with("").join("\n");
    assert!(logs.contains("\"DEBUG\""), "the log is at debug level");
    let mut places = statuses;
    places.push((
        "/debug/routes".into(),
        weir.debug_routes().await.to_string(),
    ));
    places.push((
        "/metrics".into(),
        weir.admin().get("admin", "/metrics").await.body,
    ));
    places.push(("the log".into(), logs));
    for (place, text) in &places {
        let showing: Vec<&str> = text.lines().filter(|l| l.contains(MARKER)).collect();
        assert!(showing.is_empty(), "{place} shows the marker: {showing:#?}");
        for data in &stored {
            assert!(
                !text.contains(data.as_str()),
                "{place} shows a Secret's data"
            );
        }
    }
}

/// `kind` `name` as the API server has it (`namespace` empty for a cluster-wide kind).
fn object(cluster: &Cluster, namespace: &str, kind: &str, name: &str) -> Value {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if !namespace.is_empty() {
        args.extend(["-n", namespace]);
    }
    serde_json::from_str(&cluster.kubectl(&args)).expect("kubectl prints JSON")
}

/// The condition of type `type_` in `holder["conditions"]`, or `null`.
fn condition<'a>(holder: &'a Value, type_: &str) -> &'a Value {
    holder["conditions"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// `Ok` when `condition` has `status` and `reason` and its message mentions `mentioning`.
fn expect(condition: &Value, status: &str, reason: &str, mentioning: &str) -> Result<(), String> {
    let message = condition["message"].as_str().unwrap_or_default();
    if condition["status"] == status
        && condition["reason"] == reason
        && message.contains(mentioning)
    {
        Ok(())
    } else {
        Err(format!(
            "want {status}/{reason} mentioning {mentioning:?}: {condition}"
        ))
    }
}
