//! Connections and requests that must not hurt: slow or idle clients are cut off on time,
//! paths cannot reach outside the prefix that matched, Host is unambiguous, and request bodies
//! stay within the rule's limits.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use http::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use weir_e2e::{
    ConfigDir, Echo, Weir, eventually,
    manifests::{route, service_with_endpoints},
};

/// Sends `request` on a new connection and reads until the server closes it (or `within`
/// passes); returns what came back.
async fn exchange(address: SocketAddr, request: &[u8], within: Duration) -> String {
    let mut stream = TcpStream::connect(address).await.expect("weir accepts");
    stream
        .write_all(request)
        .await
        .expect("the request is sent");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of a raw HTTP/1.1 answer, 0 if there is none.
fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// One echo backend `a` behind Route `public` (prefix `/public`, host `echo.local`), and Weir
/// started with `args`.
async fn gateway(args: &[&str]) -> (ConfigDir, Echo, Weir) {
    let config = ConfigDir::new();
    let echo = Echo::start("a").await;
    let mut objects = service_with_endpoints("a", &[echo.address()]);
    objects.push(
        route("public")
            .host("echo.local")
            .prefix("/public")
            .backend("a")
            .into(),
    );
    config.write("all.yaml", &objects);
    let weir = Weir::start_with_args(&config, args).await;
    (config, echo, weir)
}

#[tokio::test]
async fn a_thousand_connections_that_never_finish_their_headers_are_closed_on_time() {
    let header_timeout = Duration::from_secs(1);
    let (_config, _echo, weir) =
        gateway(&["--header-timeout", "1s", "--idle-timeout", "30s"]).await;
    let address = weir.proxy().address();
    let rss_before = rss_kib(weir.pid());

    // Each slow connection is watched by a task of its own, timing its close from its bytes.
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(address).await.expect("weir accepts");
        stream
            .write_all(b"GET /public/x HTTP/1.1\r\nHost: echo.local\r\nX-Half: ")
            .await
            .expect("half a header is sent");
        let sent = Instant::now();
        slow.spawn(async move {
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(header_timeout * 4, stream.read_to_end(&mut answer)).await;
            (
                read.is_ok(),
                sent.elapsed(),
                status_of(&String::from_utf8_lossy(&answer)),
            )
        });
    }
    let rss_with_slow = rss_kib(weir.pid());

    // A normal client is served throughout.
    let normal = tokio::spawn({
        let proxy = weir.proxy().clone();
        async move {
            let mut served = 0;
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                let reply = proxy.get("echo.local", "/public/ok").await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                served += 1;
            }
            served
        }
    });

    let (mut answered_408, mut latest_close) = (0, Duration::ZERO);
    while let Some(outcome) = slow.join_next().await {
        let (closed, after, status) = outcome.expect("a watching task does not panic");
        assert!(
            closed,
            "a slow connection was still open after 4× the header timeout"
        );
        latest_close = latest_close.max(after);
        if status == 408 {
            answered_408 += 1;
        }
    }
    let served = normal.await.expect("the normal client never failed");
    let rss_after = rss_kib(weir.pid());
    eprintln!(
        "slowloris: 1000 connections closed, the last {latest_close:?} after its bytes; {answered_408} got 408; \
         {served} normal requests served meanwhile; weir RSS {rss_before} KiB before, {rss_with_slow} KiB with the 1000 open, {rss_after} KiB after"
    );
    assert_eq!(answered_408, 1000, "every slow client is told 408");
    assert!(
        latest_close < header_timeout * 3,
        "closed within the header timeout and the watchdog's granularity: {latest_close:?}"
    );
    assert!(served > 0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (_config, _echo, weir) = gateway(&["--idle-timeout", "1s", "--header-timeout", "5s"]).await;
    let mut stream = TcpStream::connect(weir.proxy().address()).await.unwrap();
    stream
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: echo.local\r\n\r\n")
        .await
        .unwrap();
    // Read the one response; the connection then sits idle.
    let mut buffer = vec![0; 64 * 1024];
    let read = stream.read(&mut buffer).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buffer[..read])), 200);
    let idle_since = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    let idle_for = idle_since.elapsed();
    eprintln!("an idle keep-alive connection was closed after {idle_for:?}");
    assert!(closed.is_ok(), "the idle connection was never closed");
    assert!(
        idle_for >= Duration::from_millis(900) && idle_for < Duration::from_secs(3),
        "closed on time: {idle_for:?}"
    );
}

#[tokio::test]
async fn nothing_outside_a_routes_prefix_reaches_its_backend() {
    let (_config, _echo, weir) = gateway(&[]).await;
    let address = weir.proxy().address();
    let ask = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: echo.local\r\nConnection: close\r\n\r\n").into_bytes()
    };
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/./../admin",
    ] {
        let answer = exchange(address, &ask(path), Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), 404, "{path}: {answer}");
        assert!(
            !answer.contains("\"instance\""),
            "{path} reached the backend: {answer}"
        );
    }
    let answer = exchange(address, &ask("/%70ublic/x"), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(
        answer.contains("\"path\":\"/public/x\""),
        "the backend sees the path that was routed: {answer}"
    );
    let answer = exchange(address, &ask("/public/a/../b"), Duration::from_secs(5)).await;
    assert!(answer.contains("\"path\":\"/public/b\""), "{answer}");
    for path in ["/..", "/public/../../etc/passwd"] {
        let answer = exchange(address, &ask(path), Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), 400, "{path}: {answer}");
    }
}

#[tokio::test]
async fn two_host_headers_are_refused_and_an_absolute_target_routes_by_its_authority() {
    let (_config, _echo, weir) = gateway(&[]).await;
    let address = weir.proxy().address();
    let answer = exchange(
        address,
        b"GET /public/x HTTP/1.1\r\nHost: echo.local\r\nHost: other.local\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&answer), 400, "{answer}");

    let answer = exchange(
        address,
        b"GET http://echo.local/public/x HTTP/1.1\r\nHost: other.local\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(
        answer.contains("\"host\":\"echo.local\""),
        "the upstream sees the authority as Host: {answer}"
    );
}

#[tokio::test]
async fn request_bodies_over_the_limit_get_413_and_stalled_ones_408() {
    let config = ConfigDir::new();
    let echo = Echo::start("a").await;
    let mut objects = service_with_endpoints("a", &[echo.address()]);
    objects.push(
        route("limited")
            .host("echo.local")
            .backend("a")
            .max_request_body_size("1Ki")
            .request_body_timeout("300ms")
            .into(),
    );
    config.write("all.yaml", &objects);
    let weir = Weir::start(&config).await;
    let address = weir.proxy().address();

    let small = exchange(
        address,
        b"POST /x HTTP/1.1\r\nHost: echo.local\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&small), 200, "{small}");

    let declared = format!(
        "POST /x HTTP/1.1\r\nHost: echo.local\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n{}",
        "x".repeat(2048)
    );
    let answer = exchange(address, declared.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 413, "{answer}");

    let chunk = "x".repeat(700);
    let chunked = format!(
        "POST /x HTTP/1.1\r\nHost: echo.local\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2bc\r\n{chunk}\r\n2bc\r\n{chunk}\r\n0\r\n\r\n"
    );
    let answer = exchange(address, chunked.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), 413, "{answer}");

    let started = Instant::now();
    let stalled = exchange(
        address,
        b"POST /x HTTP/1.1\r\nHost: echo.local\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly part of it",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&stalled), 408, "{stalled}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    eventually("the stall is logged", async || {
        if weir.log_lines_with("request body stalled").is_empty() {
            Err("no log line yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
}
