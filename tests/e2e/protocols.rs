//! Protocols through Weir: WebSocket tunnels over HTTP and TLS that outlive table swaps and are
//! drained on shutdown, gRPC end to end with its statuses and trailers, HTTP/2 to upstreams by
//! `appProtocol`, and TLS to upstreams verified against a CA from a Secret.

use std::{net::SocketAddr, time::Duration};

use serde_json::{Value, json};
use weir_e2e::{
    ConfigDir, Echo, Weir,
    certs::{Ca, KeyType},
    eventually,
    manifests::{
        endpoint_slice, route, service, service_with_app_protocol, service_with_endpoints,
        tls_secret,
    },
    python::{PythonServer, Script, grpc_server, ws_echo_server},
};

/// How long a client script may run.
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

/// A Service of `name` (with `app_protocol`, if any) whose one endpoint is `address`.
fn backend(name: &str, address: SocketAddr, app_protocol: Option<&str>) -> Vec<Value> {
    let service = match app_protocol {
        Some(app_protocol) => service_with_app_protocol(name, app_protocol),
        None => service(name),
    };
    vec![
        service,
        endpoint_slice(&format!("{name}-0"), name, &[address]),
    ]
}

/// The table generation Weir serves.
async fn generation(weir: &Weir) -> u64 {
    weir.debug_routes().await["generation"]
        .as_u64()
        .unwrap_or(0)
}

/// Runs the WebSocket client through `url` for 1000 messages, swapping Weir's table (a new
/// Route in `config`) while the connection is open at message 500.
async fn echo_1000_across_a_table_swap(weir: &Weir, config: &ConfigDir, url: &str, tls: &[&str]) {
    let mut args = vec![
        url.to_owned(),
        "--count".into(),
        "1000".into(),
        "--host".into(),
        "ws.test".into(),
        "--pause-at".into(),
        "500".into(),
        "--whoami".into(),
    ];
    args.extend(tls.iter().map(|arg| arg.to_string()));
    let mut client = Script::start("ws_client.py", &args);
    client.expect_line("paused", CLIENT_DEADLINE).await;

    let before = generation(weir).await;
    let swap = format!("swap-{before}");
    config.write(
        &format!("route-{swap}.yaml"),
        &[route(&swap)
            .host(&format!("{swap}.test"))
            .backend("ws")
            .into()],
    );
    eventually("the table is swapped mid-connection", async || {
        let now = generation(weir).await;
        if now > before {
            Ok(())
        } else {
            Err(format!("generation {now}"))
        }
    })
    .await;

    client.send_line("continue");
    let result = client.finish(CLIENT_DEADLINE).await.expect_success();
    assert_eq!(result["echoed"], 1000, "{result}");
    let whoami = &result["whoami"][0];
    assert_eq!(whoami["host"], "ws.test", "{result}");
}

#[tokio::test]
async fn a_websocket_echoes_1000_messages_over_http_and_tls_across_a_table_swap() {
    let server = ws_echo_server("ws").await;
    let ca = Ca::new("weir-test-ca");
    let leaf = ca.leaf(&["ws.test"], KeyType::EcdsaP256);
    let config = ConfigDir::new();
    let mut objects = backend("ws", server.address(), None);
    objects.push(tls_secret("ws-tls", leaf.chain_pem(), leaf.key_pem()));
    objects.push(
        route("ws")
            .host("ws.test")
            .backend("ws")
            .tls("ws-tls", &[])
            .into(),
    );
    config.write("ws.yaml", &objects);
    let weir = Weir::start_with_args(&config, &["--listen-tls", "127.0.0.1:0"]).await;

    let plain = format!("ws://{}/chat", weir.proxy().address());
    echo_1000_across_a_table_swap(&weir, &config, &plain, &[]).await;

    let secure = format!("wss://{}/chat", weir.tls_address());
    let ca_path = ca.pem_path().display().to_string();
    echo_1000_across_a_table_swap(
        &weir,
        &config,
        &secure,
        &["--cafile", &ca_path, "--server-name", "ws.test"],
    )
    .await;
}

#[tokio::test]
async fn an_open_websocket_is_drained_on_shutdown() {
    let server = ws_echo_server("ws").await;
    let config = ConfigDir::new();
    let mut objects = backend("ws", server.address(), None);
    objects.push(route("ws").host("ws.test").backend("ws").into());
    config.write("ws.yaml", &objects);
    let mut weir = Weir::start_with_args(&config, &["--drain-timeout", "20s"]).await;

    let url = format!("ws://{}/chat", weir.proxy().address());
    let mut client = Script::start(
        "ws_client.py",
        [
            &url,
            "--count",
            "200",
            "--host",
            "ws.test",
            "--pause-at",
            "100",
        ],
    );
    client.expect_line("paused", CLIENT_DEADLINE).await;
    weir.terminate();
    eventually(
        "weir stops accepting",
        async || match tokio::net::TcpStream::connect(weir.proxy().address()).await {
            Ok(_) => Err("still accepting".to_owned()),
            Err(_) => Ok(()),
        },
    )
    .await;
    // The tunnel is still open: the rest of the messages go through during the drain.
    client.send_line("continue");
    let result = client.finish(CLIENT_DEADLINE).await.expect_success();
    assert_eq!(result["echoed"], 200, "{result}");
    let status = weir.exit_status(Duration::from_secs(20)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "drained within the deadline: {status}"
    );
}

/// Runs `grpc_client.py` with `args`, returning its result line.
async fn grpc_client(args: &[&str]) -> Value {
    Script::start("grpc_client.py", args)
        .finish(CLIENT_DEADLINE)
        .await
        .expect_success()
}

#[tokio::test]
async fn grpc_runs_through_weir_over_h2c_and_tls_with_statuses_and_trailers() {
    let server = grpc_server("grpc-a").await;
    let ca = Ca::new("weir-test-ca");
    let leaf = ca.leaf(&["grpc.test"], KeyType::Rsa2048);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ConfigDir::new();
    let mut objects = backend("grpc", server.address(), Some("grpc"));
    objects.extend(backend("dead", dead, Some("kubernetes.io/h2c")));
    objects.push(tls_secret("grpc-tls", leaf.chain_pem(), leaf.key_pem()));
    objects.push(
        route("grpc")
            .host("grpc.test")
            .backend("grpc")
            .timeout("1s")
            .tls("grpc-tls", &[])
            .into(),
    );
    objects.push(route("dead").host("dead.test").backend("dead").into());
    config.write("grpc.yaml", &objects);
    let weir = Weir::start_with_args(&config, &["--listen-tls", "127.0.0.1:0"]).await;
    let plain = weir.proxy().address().to_string();
    let secure = weir.tls_address().to_string();
    let ca_path = ca.pem_path().display().to_string();

    let h2c = grpc_client(&[&plain, "--authority", "grpc.test", "--check", "all"]).await;
    for call in [
        "unary",
        "server_streaming",
        "client_streaming",
        "bidi",
        "error",
    ] {
        assert_eq!(h2c[call], "ok", "{call} over h2c: {h2c}");
    }
    assert_eq!(h2c["authority"], "grpc.test", "{h2c}");
    for (call, count) in [("Count", "3"), ("Sum", "100"), ("Chat", "50")] {
        let trailers = &h2c["trailers"][call];
        assert_eq!(trailers["x-trailer"], call, "trailers survive: {h2c}");
        assert_eq!(trailers["x-count"], count, "{h2c}");
        assert_eq!(
            trailers["x-trailer-bin"], "hex:0001feff",
            "binary trailers: {h2c}"
        );
    }

    let tls = grpc_client(&[
        &secure,
        "--tls-ca",
        &ca_path,
        "--server-name",
        "grpc.test",
        "--check",
        "all",
    ])
    .await;
    for call in [
        "unary",
        "server_streaming",
        "client_streaming",
        "bidi",
        "error",
    ] {
        assert_eq!(tls[call], "ok", "{call} over TLS: {tls}");
    }

    // Weir's own failures, as gRPC statuses.
    let no_route = grpc_client(&[
        &plain,
        "--authority",
        "nowhere.test",
        "--check",
        "expect-status",
        "UNIMPLEMENTED",
    ])
    .await;
    assert_eq!(no_route["status"], "UNIMPLEMENTED", "{no_route}");
    let dead_backend = grpc_client(&[
        &plain,
        "--authority",
        "dead.test",
        "--check",
        "expect-status",
        "UNAVAILABLE",
    ])
    .await;
    assert_eq!(dead_backend["status"], "UNAVAILABLE", "{dead_backend}");
    let too_slow = grpc_client(&[
        &plain,
        "--authority",
        "grpc.test",
        "--check",
        "expect-status",
        "DEADLINE_EXCEEDED",
        "--delay-ms",
        "3000",
    ])
    .await;
    assert_eq!(too_slow["status"], "DEADLINE_EXCEEDED", "{too_slow}");
}

#[tokio::test]
async fn a_backend_whose_port_says_h2c_is_spoken_to_in_http2() {
    let (one, two) = (Echo::start("h2").await, Echo::start("h1").await);
    let config = ConfigDir::new();
    let mut objects = backend("h2", one.address(), Some("kubernetes.io/h2c"));
    objects.extend(service_with_endpoints("h1", &[two.address()]));
    objects.push(route("h2").host("h2.test").backend("h2").into());
    objects.push(route("h1").host("h1.test").backend("h1").into());
    config.write("all.yaml", &objects);
    let weir = Weir::start(&config).await;

    for (host, version) in [("h2.test", "HTTP/2.0"), ("h1.test", "HTTP/1.1")] {
        let reply = weir.get(host, "/x").await;
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["version"], version, "{host}: {body}");
        assert_eq!(body["authority"], host, "{body}");
    }
    // Many concurrent requests share the HTTP/2 connection.
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let proxy = weir.proxy().clone();
            tokio::spawn(async move { proxy.get("h2.test", &format!("/many/{i}")).await.status })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), http::StatusCode::OK);
    }
}

#[tokio::test]
async fn tls_to_a_backend_is_verified_against_the_ca_its_route_names() {
    let upstream_ca = Ca::new("upstream-ca");
    let upstream_leaf = upstream_ca.leaf(&["grpc-upstream.test"], KeyType::EcdsaP256);
    let server = PythonServer::start(
        "grpc_server.py",
        [
            "--name".as_ref(),
            "grpc-tls".as_ref(),
            "--tls-cert".as_ref(),
            upstream_leaf.cert_path().as_os_str(),
            "--tls-key".as_ref(),
            upstream_leaf.key_path().as_os_str(),
        ],
    )
    .await;
    let config = ConfigDir::new();
    let mut objects = backend("grpc", server.address(), Some("grpc"));
    // The CA to trust, in the Secret shape cert-manager writes (`ca.crt` beside the pair).
    let mut ca_secret = tls_secret(
        "upstream-ca",
        upstream_leaf.chain_pem(),
        upstream_leaf.key_pem(),
    );
    ca_secret["stringData"]["ca.crt"] = upstream_ca.pem().into();
    objects.push(ca_secret);
    let with_tls = |name: &str, server_name: &str| -> Value {
        let mut route: Value = route(name)
            .host(&format!("{name}.test"))
            .backend("grpc")
            .into();
        route["spec"]["rules"][0]["backends"][0]["tls"] =
            json!({"serverName": server_name, "caSecretName": "upstream-ca"});
        route
    };
    objects.push(with_tls("verified", "grpc-upstream.test"));
    objects.push(with_tls("wrongname", "someone-else.test"));
    config.write("all.yaml", &objects);
    let weir = Weir::start(&config).await;
    let plain = weir.proxy().address().to_string();

    let verified = grpc_client(&[&plain, "--authority", "verified.test", "--check", "unary"]).await;
    assert_eq!(verified["unary"], "ok", "{verified}");
    let refused = grpc_client(&[
        &plain,
        "--authority",
        "wrongname.test",
        "--check",
        "expect-status",
        "UNAVAILABLE",
    ])
    .await;
    assert_eq!(
        refused["status"], "UNAVAILABLE",
        "a certificate for another name is refused: {refused}"
    );
    eventually("the refused handshake is logged", async || {
        if weir.log_lines_with("TLS handshake with").is_empty() {
            Err("no log line yet".into())
        } else {
            Ok(())
        }
    })
    .await;
}

/// A text frame from a client (masked, as RFC 6455 requires), for payloads under 126 bytes.
fn client_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i % 4]),
    );
    frame
}

#[tokio::test]
async fn a_websocket_opens_over_http2_with_extended_connect() {
    use http_body_util::Empty;
    use hyper::{Method, Request, Version, ext::Protocol};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = ws_echo_server("ws").await;
    let config = ConfigDir::new();
    let mut objects = backend("ws", server.address(), None);
    objects.push(route("ws").host("ws.test").backend("ws").into());
    config.write("ws.yaml", &objects);
    let weir = Weir::start(&config).await;

    let stream = tokio::net::TcpStream::connect(weir.proxy().address())
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    // The first request may go before Weir's SETTINGS (which enable extended CONNECT) arrive.
    let mut response = eventually("Weir accepts an extended CONNECT", async || {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("http://ws.test/chat")
            .header("sec-websocket-version", "13")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        request
            .extensions_mut()
            .insert(Protocol::from_static("websocket"));
        sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())
    })
    .await;
    assert_eq!(response.status(), http::StatusCode::OK, "{response:?}");
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    let mut io = TokioIo::new(upgraded);
    for i in 0..200 {
        let message = format!("message {i} over an HTTP/2 stream");
        io.write_all(&client_text_frame(message.as_bytes()))
            .await
            .unwrap();
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await.unwrap();
        assert_eq!(head[0], 0x81, "a final text frame comes back");
        let mut echoed = vec![0; usize::from(head[1] & 0x7f)];
        io.read_exact(&mut echoed).await.unwrap();
        assert_eq!(String::from_utf8(echoed).unwrap(), message);
    }
}
