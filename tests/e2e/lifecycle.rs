//! The process: how `weir` starts with bad arguments and how it stops.

use std::{process::Command, time::Duration};

use http::StatusCode;
use tokio::net::TcpStream;
use weir_e2e::{
    ConfigDir, HeldBackend, Weir, binaries, eventually,
    held::HELD_BODY,
    manifests::{route, service_with_endpoints},
    run_to_exit,
};

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_and_exits_zero() {
    let mut held = HeldBackend::start().await;
    let config = ConfigDir::new();
    let mut objects = service_with_endpoints("held", &[held.address()]);
    objects.push(route("held").host("echo.local").backend("held").into());
    config.write("held.yaml", &objects);
    let mut weir = Weir::start(&config).await;

    let proxy = weir.proxy().clone();
    let in_flight = tokio::spawn(async move { proxy.get("echo.local", "/in-flight").await });
    assert_eq!(
        held.next_arrival(Duration::from_secs(10)).await,
        "/in-flight"
    );

    weir.terminate();
    let proxy_address = weir.proxy().address();
    eventually(
        "weir stops accepting connections",
        async || match TcpStream::connect(proxy_address).await {
            Ok(_) => Err("a new connection was accepted".to_owned()),
            Err(_) => Ok(()),
        },
    )
    .await;

    held.release();
    let reply = in_flight
        .await
        .expect("the in-flight request does not panic");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, HELD_BODY)
    );
    let status = weir.exit_status(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test]
async fn a_missing_config_directory_exits_2_with_a_one_line_error() {
    let output = run_to_exit(
        Command::new(binaries::weir()).args(["--config", "/nonexistent"]),
        Duration::from_secs(10),
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("/nonexistent"),
        "the error names the directory: {stderr}"
    );
}
