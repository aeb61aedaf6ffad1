//! The snapshot's listeners on real sockets: each socket serves only the routes attached to
//! its listeners, sockets open and close as snapshots name them, HTTPS sockets choose their
//! certificate by SNI, a socket that cannot be opened harms no other, and an invalid backend's
//! share is answered 500.
//!
//! Loopback has every 127.x.y.z on Linux, so each test's sockets have addresses of their own.
//! Nothing here sleeps to synchronise: whatever takes effect asynchronously is polled for, with
//! a deadline ([`support::eventually`]).

mod support;

use support::{
    Backend, Gateway, HttpClient, TlsClient, certificate, der, eventually, free_address, get,
    http_listener, http_listener_for, https_listener, invalid, refused, route, service,
};

/// Waits until `address` answers `GET /` for `host` with `body`.
async fn until_served(address: std::net::SocketAddr, host: &str, body: &str) {
    eventually(&format!("{address} serves {host} with {body}"), || async {
        let answer = get(address, host, "/").await.ok()?;
        (answer == (200, body.to_owned())).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_socket_serves_only_the_routes_attached_to_it() {
    let (cli, a, b) = (
        Backend::start("cli").await,
        Backend::start("a").await,
        Backend::start("b").await,
    );
    let mut gateway = Gateway::start().await;
    let (socket_a, socket_b) = (free_address([127, 0, 1, 1]), free_address([127, 0, 1, 2]));
    gateway.publish(
        vec![
            http_listener("gateway:web/public#a", socket_a),
            http_listener("gateway:web/public#b", socket_b),
        ],
        vec![
            route("cli", &[], &["cli.example"], vec![service(&cli, 1)]),
            route(
                "on-a",
                &["gateway:web/public#a"],
                &["a.example"],
                vec![service(&a, 1)],
            ),
            route(
                "on-b",
                &["gateway:web/public#b"],
                &["b.example"],
                vec![service(&b, 1)],
            ),
        ],
    );
    until_served(socket_a, "a.example", "a").await;
    until_served(socket_b, "b.example", "b").await;
    let sockets = [
        ("command line", gateway.command_line, "cli.example"),
        ("a", socket_a, "a.example"),
        ("b", socket_b, "b.example"),
    ];
    for (socket_name, socket, own_host) in sockets {
        for host in ["cli.example", "a.example", "b.example"] {
            let (status, body) = get(socket, host, "/").await.unwrap();
            if host == own_host {
                assert_eq!(status, 200, "{host} on {socket_name}");
                assert_eq!(body, host.trim_end_matches(".example"));
            } else {
                assert_eq!(status, 404, "{host} on {socket_name}: {body}");
            }
        }
    }
    assert!(gateway.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_added_opens_its_socket_and_removed_closes_it_after_its_requests_finish() {
    let mut backend = Backend::start("a").await;
    let mut gateway = Gateway::start().await;
    let socket = free_address([127, 0, 2, 1]);
    let served = |backend: &Backend| {
        (
            vec![http_listener("gateway:web/public#a", socket)],
            vec![route(
                "on-a",
                &["gateway:web/public#a"],
                &[],
                vec![service(backend, 1)],
            )],
        )
    };
    gateway.publish(Vec::new(), Vec::new());
    assert!(
        refused(socket).await,
        "nothing listens before a snapshot names it"
    );

    let (listeners, routes) = served(&backend);
    gateway.publish(listeners, routes);
    until_served(socket, "any.example", "a").await;

    let mut idle = HttpClient::connect(socket).await.unwrap();
    assert_eq!(idle.get("any.example", "/").await, (200, "a".to_owned()));
    let mut in_flight = HttpClient::connect(socket).await.unwrap();
    let slow = tokio::spawn(async move { in_flight.get("any.example", "/slow").await });
    backend.arrived().await;

    gateway.publish(Vec::new(), Vec::new());
    eventually("the socket is closed", || async {
        refused(socket).await.then_some(())
    })
    .await;
    eventually(
        "a kept-alive connection on it is closed, not left serving 404s",
        || async { idle.is_closed().then_some(()) },
    )
    .await;
    backend.release();
    assert_eq!(
        slow.await.unwrap(),
        (200, "a".to_owned()),
        "the request in flight when its socket closed is answered"
    );

    let (listeners, routes) = served(&backend);
    gateway.publish(listeners, routes);
    until_served(socket, "any.example", "a").await;
    assert!(gateway.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_sharing_an_address_share_one_socket() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut gateway = Gateway::start().await;
    let shared = free_address([127, 0, 3, 1]);
    gateway.publish(
        vec![
            http_listener_for("gateway:web/public#a", shared, "a.example"),
            http_listener_for("gateway:web/public#b", shared, "b.example"),
        ],
        vec![
            route(
                "on-a",
                &["gateway:web/public#a"],
                &["a.example"],
                vec![service(&a, 1)],
            ),
            route(
                "on-b",
                &["gateway:web/public#b"],
                &["b.example"],
                vec![service(&b, 1)],
            ),
        ],
    );
    until_served(shared, "a.example", "a").await;
    until_served(shared, "b.example", "b").await;
    assert_eq!(get(shared, "c.example", "/").await.unwrap().0, 404);
    let metrics = gateway.metrics();
    assert!(metrics.contains("weir_listener_sockets 1\n"), "{metrics}");
    assert!(gateway.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_socket_chooses_its_certificate_by_sni_then_its_default() {
    let (shop, wild) = (Backend::start("shop").await, Backend::start("wild").await);
    let mut gateway = Gateway::start().await;
    let (with_default, without_default) =
        (free_address([127, 0, 4, 1]), free_address([127, 0, 4, 2]));
    let snapshot = |shop_certificate: &str| {
        (
            vec![
                https_listener(
                    "gateway:web/public#shop",
                    with_default,
                    Some("shop.example.com"),
                    vec![certificate(shop_certificate, &["shop.example.com"])],
                ),
                https_listener(
                    "gateway:web/public#wild",
                    with_default,
                    Some("*.example.com"),
                    vec![certificate("wildcard", &["*.example.com"])],
                ),
                https_listener(
                    "gateway:web/public#any",
                    with_default,
                    None,
                    vec![certificate("default", &[])],
                ),
                https_listener(
                    "gateway:web/strict#shop",
                    without_default,
                    Some("shop.example.com"),
                    vec![certificate("shop", &["shop.example.com"])],
                ),
            ],
            vec![
                route(
                    "shop",
                    &["gateway:web/public#shop"],
                    &["shop.example.com"],
                    vec![service(&shop, 1)],
                ),
                route(
                    "wild",
                    &["gateway:web/public#wild"],
                    &["*.example.com"],
                    vec![service(&wild, 1)],
                ),
            ],
        )
    };
    let (listeners, routes) = snapshot("shop");
    gateway.publish(listeners, routes);
    let tls = TlsClient::new();
    let session = eventually("the HTTPS socket is open", || async {
        tls.connect(with_default, "shop.example.com").await.ok()
    })
    .await;
    assert_eq!(session.presented(), der("shop"), "exact host first");
    assert_eq!(session.alpn().as_deref(), Some("h2"));
    let mut before_rotation = session.http().await;
    assert_eq!(
        before_rotation.get("shop.example.com", "/").await,
        (200, "shop".to_owned())
    );

    let wildcard = tls.connect(with_default, "a.example.com").await.unwrap();
    assert_eq!(wildcard.presented(), der("wildcard"));
    assert_eq!(
        wildcard.http().await.get("a.example.com", "/").await,
        (200, "wild".to_owned())
    );
    let other = tls.connect(with_default, "other.org").await.unwrap();
    assert_eq!(
        other.presented(),
        der("default"),
        "no other match: the default"
    );
    assert_eq!(
        other.http().await.get("other.org", "/").await.0,
        404,
        "no route for that host"
    );

    let refused = tls.connect(without_default, "other.org").await;
    assert!(
        refused.is_err(),
        "no certificate and no default: the handshake is refused"
    );
    let strict = tls
        .connect(without_default, "shop.example.com")
        .await
        .unwrap();
    assert_eq!(strict.presented(), der("shop"));
    drop(strict);

    let (listeners, routes) = snapshot("shop-rotated");
    gateway.publish(listeners, routes);
    eventually("the rotated certificate is served", || async {
        let session = tls.connect(with_default, "shop.example.com").await.ok()?;
        (session.presented() == der("shop-rotated")).then_some(())
    })
    .await;
    assert_eq!(
        before_rotation.get("shop.example.com", "/").await,
        (200, "shop".to_owned()),
        "a connection established before the rotation goes on"
    );
    drop(before_rotation);
    assert!(gateway.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_cannot_be_opened_leaves_the_others_serving_and_is_tried_again() {
    let (taken_backend, free_backend) =
        (Backend::start("taken").await, Backend::start("free").await);
    let mut gateway = Gateway::start().await;
    let holder = std::net::TcpListener::bind(free_address([127, 0, 5, 1])).unwrap();
    let taken = holder.local_addr().unwrap();
    let free = free_address([127, 0, 5, 2]);
    let snapshot = || {
        (
            vec![
                http_listener("gateway:web/public#taken", taken),
                http_listener("gateway:web/public#free", free),
            ],
            vec![
                route(
                    "on-taken",
                    &["gateway:web/public#taken"],
                    &[],
                    vec![service(&taken_backend, 1)],
                ),
                route(
                    "on-free",
                    &["gateway:web/public#free"],
                    &[],
                    vec![service(&free_backend, 1)],
                ),
            ],
        )
    };
    let (listeners, routes) = snapshot();
    gateway.publish(listeners, routes);
    until_served(free, "any.example", "free").await;
    let failures = format!("weir_listener_bind_failures_total{{address=\"{taken}\"}} 1");
    let metrics = gateway.metrics();
    assert!(metrics.contains(&failures), "{failures} in {metrics}");

    drop(holder);
    let (listeners, routes) = snapshot();
    gateway.publish(listeners, routes);
    until_served(taken, "any.example", "taken").await;
    until_served(free, "any.example", "free").await;
    assert!(gateway.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_split_evenly_with_an_invalid_backend_answers_every_other_request_500() {
    let backend = Backend::start("echo").await;
    let mut gateway = Gateway::start().await;
    let socket = free_address([127, 0, 6, 1]);
    let split = || {
        vec![
            service(&backend, 1),
            invalid("Service web/gone not found", 1),
        ]
    };
    gateway.publish(
        vec![http_listener("gateway:web/public#http", socket)],
        vec![
            route("split", &[], &["split.example"], split()),
            route(
                "split-on-gateway",
                &["gateway:web/public#http"],
                &["split.example"],
                split(),
            ),
        ],
    );
    for address in [gateway.command_line, socket] {
        // Until the table is live (a 404 picks nothing), then any ten requests in a row.
        eventually("the split route is live", || async {
            let (status, _) = get(address, "split.example", "/").await.ok()?;
            (status != 404).then_some(())
        })
        .await;
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(get(address, "split.example", "/").await.unwrap());
        }
        let failed: Vec<_> = answers
            .iter()
            .filter(|(status, _)| *status == 500)
            .collect();
        assert_eq!(failed.len(), 5, "{answers:?}");
        assert!(
            failed
                .iter()
                .all(|(_, body)| body == "weir: this route's backend reference is invalid\n")
        );
        assert_eq!(
            answers
                .iter()
                .filter(|a| **a == (200, "echo".to_owned()))
                .count(),
            5
        );
    }
    let metrics = gateway.metrics();
    assert!(
        metrics.contains(r#"weir_requests_total{route="web/split",status_class="5xx"}"#),
        "{metrics}"
    );
    assert!(gateway.shutdown().await);
}
