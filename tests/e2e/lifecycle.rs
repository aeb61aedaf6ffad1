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

#[tokio::test]
async fn text_logs_to_a_pipe_carry_no_colour_codes() {
    use std::{
        io::{BufRead, BufReader},
        process::Stdio,
        sync::mpsc,
    };

    let config = ConfigDir::new();
    let mut child = Command::new(binaries::weir())
        .arg("--config")
        .arg(config.path())
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--log-format", "text"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen
        .iter()
        .any(|line: &String| line.contains("routing table live"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|line| line.contains("routing table live")),
        "weir logged its first table: {seen:?}"
    );
    assert!(
        seen.iter().all(|line| !line.contains('\u{1b}')),
        "no ANSI escape codes when stderr is a pipe: {seen:?}"
    );
}
