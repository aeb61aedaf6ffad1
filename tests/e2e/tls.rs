//! TLS termination: certificates from Secrets chosen by SNI, HTTP/2 by ALPN, hot rotation
//! under load, and bad Secrets reported without touching the other hosts.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::StatusCode;
use serde_json::Value;
use weir_e2e::{
    ConfigDir, Echo, Weir,
    certs::{Ca, GARBAGE_PEM, KeyType, Leaf},
    eventually, eventually_within,
    manifests::{Route, route, service_with_endpoints, tls_secret},
    tls_client::{TlsClient, leaf_der},
};

/// Backends `a` (shop) and `b` (api), their Services, and Weir with a TLS listener.
struct TlsWorld {
    config: ConfigDir,
    _backends: (Echo, Echo),
    weir: Weir,
    ca: Ca,
}

impl TlsWorld {
    async fn start_with_ca(
        ca: Ca,
        routes: Vec<Route>,
        secrets: &[(&str, &Leaf)],
        args: &[&str],
    ) -> Self {
        Self::start_logging(ca, routes, secrets, args, "info").await
    }

    async fn start_logging(
        ca: Ca,
        routes: Vec<Route>,
        secrets: &[(&str, &Leaf)],
        args: &[&str],
        log_level: &str,
    ) -> Self {
        let config = ConfigDir::new();
        let (a, b) = (Echo::start("a").await, Echo::start("b").await);
        let mut objects = service_with_endpoints("a", &[a.address()]);
        objects.extend(service_with_endpoints("b", &[b.address()]));
        config.write("services.yaml", &objects);
        for (name, leaf) in secrets {
            config.write(
                &format!("secret-{name}.yaml"),
                &[tls_secret(name, leaf.chain_pem(), leaf.key_pem())],
            );
        }
        let routes: Vec<Value> = routes.into_iter().map(Value::from).collect();
        config.write("routes.yaml", &routes);
        let mut all_args = vec!["--listen-tls", "127.0.0.1:0"];
        all_args.extend_from_slice(args);
        let weir = Weir::start_with_env(&config, &all_args, &[("RUST_LOG", log_level)]).await;
        Self {
            config,
            _backends: (a, b),
            weir,
            ca,
        }
    }

    fn client(&self) -> TlsClient {
        TlsClient::new(self.weir.tls_address(), self.ca.pem(), &["h2", "http/1.1"])
    }

    /// `curl` over TLS to `host` (resolved to Weir's TLS port): its exit code, the HTTP
    /// version it used, the certificate subject it saw, and the body.
    fn curl(&self, host: &str, path: &str) -> (i32, String, String, String) {
        let port = self.weir.tls_address().port();
        let output = Command::new("curl")
            .args(["-sS", "-v", "--max-time", "10", "--cacert"])
            .arg(self.ca.pem_path())
            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
            .args(["-w", "\n%{http_version}"])
            .arg(format!("https://{host}:{port}{path}"))
            .output()
            .expect("curl runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let subject = stderr
            .lines()
            .find_map(|line| line.trim().strip_prefix("*  subject: "))
            .unwrap_or_default()
            .to_owned();
        let (body, version) = stdout.rsplit_once('\n').unwrap_or((&stdout, ""));
        (
            output.status.code().unwrap_or(-1),
            version.to_owned(),
            subject,
            body.to_owned(),
        )
    }
}

fn shop_and_api() -> Vec<Route> {
    vec![
        route("shop")
            .host("shop.example.com")
            .host("*.shop.example.com")
            .backend("a")
            .tls("shop-tls", &[]),
        route("api")
            .host("api.other.test")
            .backend("b")
            .tls("api-tls", &[]),
    ]
}

/// The instance that answered, from an echo body.
fn instance(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["instance"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("no instance in {body:?}"))
}

#[tokio::test]
async fn each_host_gets_its_own_certificate_and_route_and_http2_by_alpn() {
    let ca = Ca::new("weir-test-ca");
    let shop = ca.leaf(
        &["shop.example.com", "*.shop.example.com"],
        KeyType::Rsa2048,
    );
    let api = ca.leaf(&["api.other.test"], KeyType::EcdsaP256);
    let world = TlsWorld::start_with_ca(
        ca,
        shop_and_api(),
        &[("shop-tls", &shop), ("api-tls", &api)],
        &[],
    )
    .await;

    let (code, version, subject, body) = world.curl("shop.example.com", "/x");
    assert_eq!(code, 0, "curl failed");
    assert_eq!(version, "2", "HTTP/2 negotiated by ALPN");
    assert!(subject.contains("CN=shop.example.com"), "{subject}");
    assert_eq!(instance(&body), "a");

    let (code, _, subject, body) = world.curl("www.shop.example.com", "/x");
    assert_eq!(code, 0);
    assert!(
        subject.contains("CN=shop.example.com"),
        "wildcard: {subject}"
    );
    assert_eq!(instance(&body), "a");

    let (code, version, subject, body) = world.curl("api.other.test", "/x");
    assert_eq!(code, 0);
    assert_eq!(version, "2");
    assert!(subject.contains("CN=api.other.test"), "{subject}");
    assert_eq!(instance(&body), "b");
    assert!(
        body.contains("\"x-forwarded-proto\":\"https\""),
        "the backend is told the client used TLS: {body}"
    );

    // HTTP/1.1 when the client offers only that.
    let h1 = TlsClient::new(world.weir.tls_address(), world.ca.pem(), &["http/1.1"]);
    let connection = h1.connect("api.other.test").await.unwrap();
    assert_eq!(connection.alpn().as_deref(), Some("http/1.1"));
    let (status, body) = connection.get("/y").await.unwrap();
    assert_eq!((status, instance(&body)), (StatusCode::OK, "b".into()));

    // A name no certificate is for, and no name at all, get a handshake alert: no default.
    let unknown = world.client().connect("unknown.test").await;
    assert!(unknown.is_err(), "an unknown name gets no certificate");
    let (code, ..) = world.curl("unknown.test", "/x");
    assert_ne!(code, 0, "curl sees the handshake fail");
}

#[tokio::test]
async fn a_default_certificate_serves_unknown_and_absent_names() {
    let ca = Ca::new("weir-test-ca");
    let shop = ca.leaf(&["shop.example.com"], KeyType::EcdsaP256);
    let fallback = ca.leaf(&["fallback.test", "127.0.0.1"], KeyType::EcdsaP256);
    let world = TlsWorld::start_with_ca(
        ca,
        vec![
            route("shop")
                .host("shop.example.com")
                .backend("a")
                .tls("shop-tls", &[]),
        ],
        &[("shop-tls", &shop), ("fallback-tls", &fallback)],
        &["--default-certificate", "default/fallback-tls"],
    )
    .await;
    let unknown = world.client().connect("fallback.test").await.unwrap();
    assert_eq!(unknown.peer_leaf(), leaf_der(fallback.chain_pem()));
    // An IP address is sent without SNI.
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(world.ca.pem_path())
        .args(["-H", "Host: shop.example.com"])
        .arg(format!(
            "https://127.0.0.1:{}/z",
            world.weir.tls_address().port()
        ))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(instance(&String::from_utf8_lossy(&output.stdout)), "a");
}

#[tokio::test]
async fn a_rotated_secret_serves_new_handshakes_with_no_failed_request() {
    let ca = Ca::new("weir-test-ca");
    let first = ca.leaf(&["shop.example.com"], KeyType::EcdsaP256);
    let second = ca.leaf(&["shop.example.com"], KeyType::Rsa2048);
    let world = TlsWorld::start_with_ca(
        ca,
        vec![
            route("shop")
                .host("shop.example.com")
                .backend("a")
                .tls("shop-tls", &[]),
        ],
        &[("shop-tls", &first)],
        &[],
    )
    .await;
    let client = world.client();
    let (first_der, second_der) = (leaf_der(first.chain_pem()), leaf_der(second.chain_pem()));

    // A connection made before the rotation, used again after it.
    let established = client.connect("shop.example.com").await.unwrap();
    assert_eq!(established.peer_leaf(), first_der);

    // Continuous HTTPS load: every request a new connection, so a new handshake.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, saw_second) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, stop, ok, failed, saw_second) = (
            client.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
            saw_second.clone(),
        );
        let second_der = second_der.clone();
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let outcome = match client.connect("shop.example.com").await {
                    Ok(connection) => {
                        if connection.peer_leaf() == second_der {
                            saw_second.store(true, Ordering::Relaxed);
                        }
                        connection.get("/load").await
                    }
                    Err(error) => Err(error),
                };
                match outcome {
                    Ok((StatusCode::OK, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed request under rotation: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    eventually("load is flowing", async || {
        if ok.load(Ordering::Relaxed) > 20 {
            Ok(())
        } else {
            Err(format!("{} ok", ok.load(Ordering::Relaxed)))
        }
    })
    .await;

    world.config.write(
        "secret-shop-tls.yaml",
        &[tls_secret("shop-tls", second.chain_pem(), second.key_pem())],
    );
    eventually(
        "new handshakes present the rotated certificate",
        async || {
            if saw_second.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("still the first certificate".into())
            }
        },
    )
    .await;
    let after_rotation = ok.load(Ordering::Relaxed);
    eventually("load goes on after the rotation", async || {
        if ok.load(Ordering::Relaxed) > after_rotation + 20 {
            Ok(())
        } else {
            Err(format!("{} ok", ok.load(Ordering::Relaxed)))
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    eprintln!(
        "rotation under load: {} requests ok, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");

    // The connection established before keeps its certificate and still serves.
    assert_eq!(established.peer_leaf(), first_der);
    let (status, _) = established.get("/after").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let fresh = client.connect("shop.example.com").await.unwrap();
    assert_eq!(fresh.peer_leaf(), second_der);
}

/// The report of Route `name` in `/debug/routes`.
async fn report(weir: &Weir, name: &str) -> Option<Value> {
    let debug = weir.debug_routes().await;
    debug["reports"]
        .as_array()?
        .iter()
        .find(|r| r["id"]["name"] == name)
        .cloned()
}

#[tokio::test]
async fn a_missing_or_bad_secret_is_a_condition_and_other_hosts_keep_serving() {
    let ca = Ca::new("weir-test-ca");
    let good = ca.leaf(&["good.test"], KeyType::EcdsaP256);
    let other = ca.leaf(&["mismatch.test"], KeyType::EcdsaP256);
    let (mismatched_cert, mismatched_key) =
        ca.mismatched_pair(&["mismatch.test"], KeyType::EcdsaP256);
    let routes = vec![
        route("good")
            .host("good.test")
            .backend("a")
            .tls("good-tls", &[]),
        route("missing")
            .host("missing.test")
            .backend("a")
            .tls("nowhere", &[]),
        route("garbage")
            .host("garbage.test")
            .backend("a")
            .tls("garbage-tls", &[]),
        route("mismatch")
            .host("mismatch.test")
            .backend("b")
            .tls("mismatch-tls", &[]),
    ];
    let world = TlsWorld::start_with_ca(ca, routes, &[("good-tls", &good)], &[]).await;
    world.config.write(
        "secret-broken.yaml",
        &[
            tls_secret("garbage-tls", GARBAGE_PEM, good.key_pem()),
            tls_secret("mismatch-tls", &mismatched_cert, &mismatched_key),
        ],
    );
    drop(other);

    for (name, expected) in [
        (
            "missing",
            "spec.tls[0].secretName: Secret default/nowhere not found",
        ),
        (
            "garbage",
            "spec.tls[0].secretName: Secret default/garbage-tls tls.crt holds no PEM certificate",
        ),
        (
            "mismatch",
            "spec.tls[0].secretName: Secret default/mismatch-tls tls.key does not match the certificate in tls.crt",
        ),
    ] {
        let found = eventually(
            &format!("route {name} reports its certificate"),
            async || match report(&world.weir, name).await {
                Some(report)
                    if report["message"]
                        .as_str()
                        .is_some_and(|message| message.contains(expected)) =>
                {
                    Ok(report)
                }
                other => Err(format!("{other:?}")),
            },
        )
        .await;
        assert_eq!(found["resolved_refs_reason"], "InvalidCertificateRef");
        assert_eq!(found["accepted"], true, "the route itself is valid");
        assert!(
            !world.weir.log_lines_with(expected).is_empty(),
            "a log line says it: {expected}"
        );
    }
    let client = world.client();
    for broken in ["missing.test", "garbage.test", "mismatch.test"] {
        assert!(
            client.connect(broken).await.is_err(),
            "{broken} has no certificate"
        );
    }
    let (status, body) = client
        .connect("good.test")
        .await
        .unwrap()
        .get("/")
        .await
        .unwrap();
    assert_eq!((status, instance(&body)), (StatusCode::OK, "a".into()));

    // Breaking the good Secret keeps its last good certificate serving.
    world.config.write(
        "secret-good-tls.yaml",
        &[tls_secret("good-tls", GARBAGE_PEM, good.key_pem())],
    );
    eventually(
        "route good reports the broken Secret",
        async || match report(&world.weir, "good").await {
            Some(report) if report["resolved_refs_reason"] == "InvalidCertificateRef" => {
                let message = report["message"].as_str().unwrap_or_default();
                if message.contains("still serving the last good certificate") {
                    Ok(())
                } else {
                    Err(message.to_owned())
                }
            }
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    let connection = client.connect("good.test").await.unwrap();
    assert_eq!(connection.peer_leaf(), leaf_der(good.chain_pem()));
    assert_eq!(connection.get("/").await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn secret_material_shows_in_no_log_debug_page_metric_or_error() {
    const MARKER: &str = "WEIRSECRETMARKER7F3A";
    let ca = Ca::new("weir-test-ca");
    let good = ca.leaf(&["good.test"], KeyType::EcdsaP256);
    // The real key's base64 body, which must never be printed either.
    let key_body: String = good
        .key_pem()
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let routes = vec![
        route("good")
            .host("good.test")
            .backend("a")
            .tls("good-tls", &[]),
        route("marked")
            .host("marked.test")
            .backend("a")
            .tls("marked-tls", &[]),
    ];
    // Everything Weir logs, debug included.
    let world = TlsWorld::start_logging(
        ca,
        routes,
        &[("good-tls", &good)],
        &["--default-certificate", "default/marked-tls"],
        "debug",
    )
    .await;
    let marked = format!("-----BEGIN PRIVATE KEY-----\n{MARKER}\n-----END PRIVATE KEY-----\n");
    world.config.write(
        "secret-marked.yaml",
        &[tls_secret("marked-tls", good.chain_pem(), &marked)],
    );
    // And a Secret document that does not even convert, its data quoted back by a parser.
    world.config.write_text(
        "secret-unparsable.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: unparsable}}\ndata: {{tls.key: \"{MARKER} not base64\"}}\n"),
    );
    eventually_within(
        Duration::from_secs(10),
        "the marked Secret is reported",
        async || match report(&world.weir, "marked").await {
            Some(report) if report["resolved_refs_reason"] == "InvalidCertificateRef" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    eventually("the unparsable Secret is reported", async || {
        let debug = world.weir.debug_routes().await.to_string();
        if debug.contains("unparsable") {
            Ok(())
        } else {
            Err(debug)
        }
    })
    .await;
    let debug = world.weir.debug_routes().await.to_string();
    let metrics = world.weir.admin().get("admin", "/metrics").await.body;
    let error_body = world
        .weir
        .get("marked.test", "/nothing-here?x=1")
        .await
        .body;
    let logs = world.weir.log_lines_with("").join("\n");
    for (place, text) in [
        ("/debug/routes", &debug),
        ("/metrics", &metrics),
        ("an error body", &error_body),
        ("the log", &logs),
    ] {
        assert!(!text.contains(MARKER), "{place} shows the marker");
        assert!(!text.contains(&key_body), "{place} shows a private key");
    }
}
