//! One test group per phase of [`Proxy::handle`], each on a table compiled from a contract
//! snapshot, as the control plane would hand it over.

use std::time::Duration;

use http::{HeaderName, Method, StatusCode};
use weir_contract::{
    Backend, Endpoint, Filter, HeaderModifier, NamespacedName, PathMatch, Protocol, Route, RouteId,
    RouteKind, RouteMatch, Rule, RuleBackend, RulePolicy, ServiceBackend, Snapshot,
};

use super::*;
use crate::{metrics::Metrics, table::TableCompiler};

/// A table with route `r` for host `h`, prefix `/`, whose rule has `filters` and sends to
/// `endpoints` (none: no ready endpoint).
fn table(filters: Vec<Filter>, endpoints: &[u16]) -> RoutingTable {
    counted_table(&Metrics::default(), filters, endpoints)
}

/// [`table`], counted in `metrics`.
fn counted_table(metrics: &Metrics, filters: Vec<Filter>, endpoints: &[u16]) -> RoutingTable {
    let rule = Rule {
        matches: vec![RouteMatch {
            path: PathMatch::Prefix("/".into()),
            ..RouteMatch::any()
        }],
        filters,
        backends: vec![echo(endpoints)],
        policy: RulePolicy::default(),
    };
    let snapshot = Snapshot {
        generation: 1,
        routes: vec![Arc::new(Route {
            listeners: Vec::new(),
            id: RouteId::new(RouteKind::Route, NamespacedName::new("default", "r")),
            hosts: vec!["h".into()],
            rules: vec![rule],
        })],
        ..Snapshot::default()
    };
    TableCompiler::new(metrics.clone()).compile(Arc::new(snapshot), None)
}

/// Service `default/echo`, weight 1, with endpoints at 127.0.0.1:`endpoints`.
fn echo(endpoints: &[u16]) -> RuleBackend {
    RuleBackend {
        weight: 1,
        filters: Vec::new(),
        backend: Backend::Service(ServiceBackend {
            service: NamespacedName::new("default", "echo"),
            protocol: Protocol::Http1,
            tls: None,
            endpoints: endpoints
                .iter()
                .map(|port| Endpoint {
                    address: ([127, 0, 0, 1], *port).into(),
                })
                .collect(),
            unresolved: None,
        }),
    }
}

fn request(host: &str, path: &str) -> Request<()> {
    Request::get(path).header(HOST, host).body(()).unwrap()
}

fn peer() -> Peer {
    Peer::new(([192, 0, 2, 7], 4000).into(), false)
}

/// The context of a request for host `h` after the route phase, on `table`.
fn routed<'r>(table: &'r RoutingTable, peer: &'r Peer) -> (RequestCtx<'r>, Option<RequestHost>) {
    let routed = route(table, &RouteScope::CommandLine, &request("h", "/")).unwrap();
    let ctx = RequestCtx {
        started: Instant::now(),
        peer,
        target: routed.target,
        prefix: routed.prefix,
        grpc: false,
    };
    (ctx, routed.host)
}

fn set(name: &'static str, value: &'static str) -> HeaderModifier {
    HeaderModifier {
        set: vec![(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )],
        ..HeaderModifier::default()
    }
}

#[test]
fn route_finds_the_rule_and_the_host_or_fails_with_no_route() {
    let table = table(Vec::new(), &[1]);
    let routed = route(&table, &RouteScope::CommandLine, &request("h", "/x")).unwrap();
    assert_eq!(&*routed.target.route, "default/r");
    assert_eq!(routed.host.unwrap().value(), "h");
    let unrouted = route(&table, &RouteScope::CommandLine, &request("other", "/x"))
        .err()
        .unwrap();
    assert_eq!(unrouted.status(), StatusCode::NOT_FOUND);
}

#[test]
fn route_refuses_two_host_headers_and_prefers_an_absolute_targets_authority() {
    let table = table(Vec::new(), &[1]);
    let twice = Request::get("/")
        .header(HOST, "h")
        .header(HOST, "other")
        .body(())
        .unwrap();
    assert_eq!(
        route(&table, &RouteScope::CommandLine, &twice)
            .err()
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    let absolute = Request::get("http://h/x")
        .header(HOST, "other")
        .body(())
        .unwrap();
    assert_eq!(
        route(&table, &RouteScope::CommandLine, &absolute)
            .unwrap()
            .host
            .unwrap()
            .value(),
        "h"
    );
}

#[test]
fn route_matches_the_normalized_path_and_refuses_one_above_the_root() {
    let table = table(Vec::new(), &[1]);
    let routed = route(
        &table,
        &RouteScope::CommandLine,
        &request("h", "/a/%2e%2e/b"),
    )
    .unwrap();
    assert_eq!(routed.normalized_path.as_deref(), Some("/b"));
    assert!(
        route(&table, &RouteScope::CommandLine, &request("h", "/x"))
            .unwrap()
            .normalized_path
            .is_none()
    );
    let above = route(&table, &RouteScope::CommandLine, &request("h", "/.."))
        .err()
        .unwrap();
    assert_eq!(above.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn request_filters_run_after_the_forwarding_headers_so_they_can_change_them() {
    let table = table(
        vec![Filter::RequestHeaderModifier(set(
            "x-forwarded-proto",
            "https",
        ))],
        &[1],
    );
    let peer = peer();
    let (ctx, host) = routed(&table, &peer);
    let (mut parts, ()) = request("h", "/").into_parts();
    request_filters(&ctx, &mut parts, host);
    assert_eq!(parts.headers["x-forwarded-proto"], "https");
    assert_eq!(parts.headers["x-forwarded-for"], "192.0.2.7");
}

#[test]
fn select_names_no_upstream_when_no_endpoint_is_ready() {
    let peer = peer();
    let empty = table(Vec::new(), &[]);
    assert!(select(&routed(&empty, &peer).0, None).is_none());
    let ready = table(Vec::new(), &[7]);
    let (ctx, _) = routed(&ready, &peer);
    let selected = select(&ctx, None).unwrap();
    assert_eq!(selected.endpoint.target.to_string(), "127.0.0.1:7");
}

#[test]
fn select_avoids_what_a_retry_already_tried_while_another_endpoint_is_left() {
    let peer = peer();
    let table = table(Vec::new(), &[7, 8]);
    let (ctx, _) = routed(&table, &peer);
    for _ in 0..4 {
        let first = select(&ctx, None).unwrap().endpoint;
        let second = select_retry(&ctx, None, &[first]).unwrap().endpoint;
        assert!(
            !std::ptr::eq(first, second),
            "a retry goes to the other endpoint"
        );
        let third = select_retry(&ctx, None, &[first, second]).unwrap();
        assert!(
            ["127.0.0.1:7", "127.0.0.1:8"].contains(&third.endpoint.target.to_string().as_str()),
            "with every endpoint tried, one is still chosen"
        );
    }
}

#[test]
fn response_filters_drop_hop_by_hop_headers_then_apply_the_rules() {
    let table = table(
        vec![Filter::ResponseHeaderModifier(set("x-served-by", "weir"))],
        &[1],
    );
    let peer = peer();
    let (ctx, _) = routed(&table, &peer);
    let mut response = Response::builder()
        .header("connection", "close")
        .body(())
        .unwrap();
    let selected = select(&ctx, None).unwrap();
    response_filters(&ctx, &selected, None, &mut response);
    assert!(!response.headers().contains_key("connection"));
    assert_eq!(response.headers()["x-served-by"], "weir");
}

#[test]
fn record_answers_a_failure_with_its_status() {
    let table = table(Vec::new(), &[]);
    let peer = peer();
    let (ctx, _) = routed(&table, &peer);
    let response = record(&ctx, None, Err(Failure::NoEndpoint));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A table whose route `r` (host `h`) sends half its requests to a Service at 127.0.0.1:`port`
/// and half to an invalid backend.
fn half_invalid(metrics: &Metrics, port: u16) -> RoutingTable {
    let service = echo(&[port]);
    let invalid = RuleBackend {
        weight: 1,
        filters: Vec::new(),
        backend: Backend::Invalid("Service default/gone not found".into()),
    };
    let snapshot = Snapshot {
        generation: 1,
        routes: vec![Arc::new(Route {
            listeners: Vec::new(),
            id: RouteId::new(RouteKind::Route, NamespacedName::new("default", "r")),
            hosts: vec!["h".into()],
            rules: vec![Rule {
                matches: vec![RouteMatch::any()],
                filters: Vec::new(),
                backends: vec![service, invalid],
                policy: RulePolicy::default(),
            }],
        })],
        ..Snapshot::default()
    };
    TableCompiler::new(metrics.clone()).compile(Arc::new(snapshot), None)
}

#[test]
fn an_invalid_backends_share_is_answered_500_and_counted_for_its_route() {
    let metrics = Metrics::default();
    let table = half_invalid(&metrics, 1);
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            let upstream = Response::new(());
            dry_run(&table, request("h", "/"), &peer(), upstream)
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses, [200, 500, 200, 500, 200, 500]);
    let mut registry = prometheus_client::registry::Registry::with_prefix("weir");
    metrics.register(&mut registry);
    let text = crate::metrics::encode_registry(&registry);
    assert!(
        text.contains(r#"weir_requests_total{route="default/r",status_class="5xx"} 3"#),
        "{text}"
    );
}

#[test]
fn a_retry_never_goes_to_the_invalid_backend() {
    let table = half_invalid(&Metrics::default(), 7);
    let peer = peer();
    let (ctx, _) = routed(&table, &peer);
    let service = ctx.target.balancer.backends()[0].endpoints.first().unwrap();
    for _ in 0..4 {
        let retried = select_retry(&ctx, None, &[service]).unwrap();
        assert!(retried.backend.invalid.is_none());
        assert!(
            std::ptr::eq(retried.endpoint, service),
            "the only valid one, tried again"
        );
    }
}

/// A proxy serving `table` behind a loopback HTTP/1.1 server (so that requests arrive with
/// `Incoming` bodies, as from a client), and a keep-alive connection to it.
async fn front(
    table: RoutingTable,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>> {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let proxy = Arc::new(Proxy::new(
        Arc::new(ArcSwap::from_pointee(table)),
        ProxySettings::default(),
    ));
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_address = front.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, client) = front.accept().await.unwrap();
        let peer = Peer::new(client, false);
        let service = service_fn(move |request| {
            let (proxy, peer) = (proxy.clone(), peer.clone());
            async move {
                Ok::<_, std::convert::Infallible>(
                    proxy.handle(request, &peer, &RouteScope::CommandLine).await,
                )
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let stream = tokio::net::TcpStream::connect(front_address).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

#[tokio::test]
async fn handle_runs_the_phases_end_to_end_against_a_real_backend() {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    // A backend that echoes the x-forwarded-for it received.
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = backend.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (stream, _) = backend.accept().await.unwrap();
        let service = service_fn(|request: Request<Incoming>| async move {
            let forwarded = request.headers()["x-forwarded-for"].clone();
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::copy_from_slice(
                forwarded.as_bytes(),
            ))))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let mut sender = front(table(Vec::new(), &[port])).await;
    let ask = |host: &'static str| {
        Request::builder()
            .method(Method::GET)
            .uri("/")
            .header(HOST, host)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap()
    };
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(ask("h")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "127.0.0.1");
    let missing = sender.send_request(ask("nowhere")).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

proptest::proptest! {
    /// `X-Forwarded-For` names an IPv4 client exactly as `Display` would.
    #[test]
    fn forwarded_for_writes_ipv4_as_display_does(octets: [u8; 4], port: u16) {
        let ip = Ipv4Addr::from(octets);
        let peer = Peer::new(SocketAddr::new(IpAddr::V4(ip), port), false);
        proptest::prop_assert_eq!(peer.forwarded_for(), ip.to_string());
    }
}

#[test]
fn forwarded_for_writes_the_extremes_and_ipv6() {
    for text in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "1.20.255.0"] {
        let peer = Peer::new(SocketAddr::new(text.parse().unwrap(), 1), false);
        assert_eq!(peer.forwarded_for(), text);
    }
    let peer = Peer::new("[2001:db8::1]:443".parse().unwrap(), true);
    assert_eq!(peer.forwarded_for(), "2001:db8::1");
}

/// Connect failover: a request whose connection cannot be opened goes to another endpoint.
mod failover {
    use super::*;

    /// A port nothing listens on: connecting to it is refused.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A backend answering every request 200 `live`.
    async fn live_backend() -> u16 {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = service_fn(|_request: Request<Incoming>| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"live"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        port
    }

    fn ask(grpc: bool) -> Request<http_body_util::Empty<Bytes>> {
        let mut request = Request::post("/").header(HOST, "h");
        if grpc {
            request = request.header(CONTENT_TYPE, "application/grpc");
        }
        request.body(http_body_util::Empty::new()).unwrap()
    }

    /// The route's connect failovers so far.
    fn failovers(metrics: &Metrics) -> u64 {
        let mut registry = prometheus_client::registry::Registry::with_prefix("weir");
        metrics.register(&mut registry);
        let text = crate::metrics::encode_registry(&registry);
        let series = r#"weir_upstream_connect_failovers_total{route="default/r"} "#;
        text.lines()
            .find_map(|line| line.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn a_request_to_a_closed_endpoint_goes_to_the_live_one_without_a_policy() {
        let metrics = Metrics::default();
        let table = counted_table(&metrics, Vec::new(), &[closed_port(), live_backend().await]);
        let mut client = front(table).await;
        for i in 0..20 {
            let response = client.send_request(ask(false)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "request {i}");
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(body, "live", "request {i}");
        }
        // Round-robin picks the closed endpoint for every other request.
        assert_eq!(failovers(&metrics), 10);
    }

    #[tokio::test]
    async fn with_every_endpoint_closed_each_is_tried_once_and_the_answer_is_502() {
        let metrics = Metrics::default();
        let table = counted_table(&metrics, Vec::new(), &[closed_port(), closed_port()]);
        let mut client = front(table).await;
        for i in 0..5 {
            let response = client.send_request(ask(false)).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "request {i}");
        }
        // One failover each: the other endpoint, and never the refused one again.
        assert_eq!(failovers(&metrics), 5);

        let grpc = client.send_request(ask(true)).await.unwrap();
        assert_eq!(
            grpc.status(),
            StatusCode::OK,
            "gRPC failures are trailers-only"
        );
        assert_eq!(grpc.headers()["grpc-status"], "14", "UNAVAILABLE");
        assert_eq!(failovers(&metrics), 6);
    }

    #[tokio::test]
    async fn a_backend_of_closed_endpoints_costs_a_request_at_most_three_connects() {
        let metrics = Metrics::default();
        let closed: Vec<u16> = (0..5).map(|_| closed_port()).collect();
        let table = counted_table(&metrics, Vec::new(), &closed);
        let mut client = front(table).await;
        for i in 0..4 {
            let response = client.send_request(ask(false)).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "request {i}");
        }
        assert_eq!(
            failovers(&metrics),
            4 * super::super::failover::MORE_ENDPOINTS as u64
        );
    }
}
