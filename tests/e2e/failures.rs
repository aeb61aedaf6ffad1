//! Upstream failures: what a client gets when the backend is down, absent, or too slow.

use std::{
    net::{SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use http::StatusCode;
use serde_json::Value;
use weir_e2e::{
    ConfigDir, Echo, Weir,
    manifests::{endpoint_slice_not_ready, route, service, service_with_endpoints},
};

/// A loopback address nothing listens on: bound to learn a free port, then closed.
fn closed_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// A gateway whose only Route sends `echo.local` to Service `backend`, defined by `objects`.
async fn gateway_with(objects: Vec<Value>, rule_timeout: Option<&str>) -> (ConfigDir, Weir) {
    let config = ConfigDir::new();
    let mut route = route("only").host("echo.local").backend("backend");
    if let Some(timeout) = rule_timeout {
        route = route.timeout(timeout);
    }
    config.write("backend.yaml", &objects);
    config.write("route.yaml", &[route.into()]);
    let weir = Weir::start(&config).await;
    (config, weir)
}

#[tokio::test]
async fn a_backend_refusing_connections_answers_502() {
    let (_config, weir) =
        gateway_with(service_with_endpoints("backend", &[closed_address()]), None).await;
    let reply = weir.get("echo.local", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
}

#[tokio::test]
async fn a_service_without_ready_endpoints_answers_503() {
    let echo = Echo::start("unready").await;
    let objects = vec![
        service("backend"),
        endpoint_slice_not_ready("backend-0", "backend", &[echo.address()]),
    ];
    let (_config, weir) = gateway_with(objects, None).await;
    let reply = weir.get("echo.local", "/").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    let debug_routes = weir.debug_routes().await;
    assert_eq!(
        debug_routes["reports"][0]["resolved_refs_reason"], "NoReadyEndpoints",
        "{debug_routes}"
    );
}

#[tokio::test]
async fn a_backend_slower_than_the_rule_timeout_answers_504() {
    let echo = Echo::start("slow").await;
    let objects = service_with_endpoints("backend", &[echo.address()]);
    let (_config, weir) = gateway_with(objects, Some("200ms")).await;

    assert_eq!(
        weir.get("echo.local", "/?delay_ms=10").await.status,
        StatusCode::OK
    );
    let started = Instant::now();
    let reply = weir.get("echo.local", "/?delay_ms=2000").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.body);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the gateway gave up after {:?}, not at the 200ms timeout",
        started.elapsed()
    );
}
