//! What each match type, filter and policy adds to a request, against a rule with none.
//!
//! `cargo bench -p weir-gateway --bench filters`. Each case is one Route whose rule has one
//! feature; a request runs every phase of the proxy but the network ([`dry_run`]): route,
//! request filters, hash key, endpoint pick, backend filters, response filters, metrics. The
//! request and the stand-in upstream response are built in each iteration, the same for every
//! case, so `none` is the baseline each other case is read against. Retries and mirrors cost
//! nothing here beyond their sampling: what they cost is in the send (a replay record, a
//! copied body), which only the side-by-side benchmark (bench/run) measures.

mod support;

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, uri::Scheme};
use weir_contract::{
    DirectResponse, Endpoint, Filter, HashKey, HeaderMatch, HeaderModifier, LoadBalancer,
    NamespacedName, OutlierDetection, PathMatch, PathModifier, Protocol, QueryMatch, RateLimit,
    RateLimitKey, RequestMirror, RequestRedirect, Rule, ServiceBackend, Snapshot, UrlRewrite,
    ValueMatch,
};
use weir_gateway::{
    metrics::Metrics,
    proxy::{Peer, dry_run},
    table::TableCompiler,
};

fn header(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

fn prefix_api(rule: &mut Rule) {
    rule.matches[0].path = PathMatch::Prefix("/api".into());
}

/// How a case changes the benchmark's one rule.
type Edit = Box<dyn Fn(&mut Rule)>;

/// Every case: its name and how it changes the rule.
fn cases() -> Vec<(&'static str, Edit)> {
    let filter = |filter: Filter| -> Edit {
        Box::new(move |rule: &mut Rule| {
            prefix_api(rule);
            rule.filters.push(filter.clone());
        })
    };
    let policy = |edit: fn(&mut weir_contract::RulePolicy)| -> Edit {
        Box::new(move |rule: &mut Rule| {
            prefix_api(rule);
            edit(&mut rule.policy);
        })
    };
    let modifier = HeaderModifier {
        set: vec![header("x-a", "1")],
        add: vec![header("x-b", "2")],
        remove: vec![HeaderName::from_static("x-c")],
    };
    let mirror = Arc::new(ServiceBackend {
        service: NamespacedName::new("default", "shadow"),
        protocol: Protocol::Http1,
        tls: None,
        endpoints: vec![Endpoint {
            address: ([127, 0, 0, 3], 8080).into(),
        }],
        unresolved: None,
    });
    vec![
        ("none", Box::new(prefix_api)),
        (
            "match/query",
            Box::new(|rule: &mut Rule| {
                prefix_api(rule);
                rule.matches[0].query.push(QueryMatch {
                    name: "page".into(),
                    value: ValueMatch::Exact("2".into()),
                });
            }),
        ),
        (
            "match/header-regex",
            Box::new(|rule: &mut Rule| {
                prefix_api(rule);
                rule.matches[0].headers.push(HeaderMatch {
                    name: HeaderName::from_static("x-user"),
                    value: ValueMatch::RegularExpression(
                        regex::Regex::new("^(?:u-[0-9]+)$").unwrap(),
                    ),
                });
            }),
        ),
        (
            "filter/request-header-modifier",
            filter(Filter::RequestHeaderModifier(modifier.clone())),
        ),
        (
            "filter/response-header-modifier",
            filter(Filter::ResponseHeaderModifier(modifier)),
        ),
        (
            "filter/url-rewrite",
            filter(Filter::UrlRewrite(UrlRewrite {
                hostname: Some(HeaderValue::from_static("internal.svc")),
                path: Some(PathModifier::ReplacePrefixMatch("/v2".into())),
            })),
        ),
        (
            "filter/request-redirect",
            filter(Filter::RequestRedirect(RequestRedirect {
                scheme: Some(Scheme::HTTPS),
                hostname: None,
                port: None,
                path: None,
                status: StatusCode::MOVED_PERMANENTLY,
            })),
        ),
        (
            "filter/direct-response",
            filter(Filter::DirectResponse(DirectResponse {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: "down for maintenance".into(),
            })),
        ),
        (
            "filter/request-mirror (sampling only)",
            filter(Filter::RequestMirror(RequestMirror {
                backend: mirror,
                percent: 10,
            })),
        ),
        (
            "policy/rate-limit",
            policy(|policy| {
                policy.rate_limit = Some(RateLimit {
                    requests: u32::MAX,
                    per: Duration::from_secs(1),
                    burst: 0,
                    key: RateLimitKey::Rule,
                })
            }),
        ),
        (
            "policy/rate-limit-by-client-ip",
            policy(|policy| {
                policy.rate_limit = Some(RateLimit {
                    requests: u32::MAX,
                    per: Duration::from_secs(1),
                    burst: 0,
                    key: RateLimitKey::ClientIp,
                })
            }),
        ),
        (
            "policy/least-request",
            policy(|policy| policy.load_balancer = LoadBalancer::LeastRequest),
        ),
        (
            "policy/consistent-hash-by-header",
            policy(|policy| {
                policy.load_balancer =
                    LoadBalancer::ConsistentHash(HashKey::Header(HeaderName::from_static("x-user")))
            }),
        ),
        (
            "policy/random",
            policy(|policy| policy.load_balancer = LoadBalancer::Random),
        ),
        (
            "policy/outlier-detection",
            policy(|policy| {
                policy.outlier_detection = Some(OutlierDetection {
                    consecutive_errors: 5,
                    interval: Duration::from_secs(10),
                    base_ejection_time: Duration::from_secs(30),
                    max_ejection_percent: 10,
                })
            }),
        ),
    ]
}

fn request() -> Request<()> {
    Request::get("/api/orders/42?page=2")
        .header("host", support::host(0))
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*")
        .header("x-user", "u-42")
        .header("x-c", "drop me")
        .body(())
        .unwrap()
}

fn upstream() -> Response<()> {
    Response::builder()
        .header("content-type", "application/json")
        .header("content-length", "128")
        .header("date", "Wed, 25 Nov 2026 12:00:00 GMT")
        .body(())
        .unwrap()
}

fn per_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Elements(1));
    let peer = Peer::new(([192, 0, 2, 7], 41000).into(), false);
    for (name, edit) in cases() {
        let compiler = TableCompiler::new(Metrics::default());
        let snapshot = Snapshot {
            generation: 1,
            routes: vec![support::route_with(0, |rule| edit(rule))],
            ..Snapshot::default()
        };
        let table = compiler.compile(Arc::new(snapshot), None);
        let status = dry_run(&table, request(), &peer, upstream()).status();
        assert!(
            matches!(status.as_u16(), 200 | 301 | 503),
            "{name}: {status}"
        );
        group.bench_function(name, |b| {
            b.iter(|| dry_run(black_box(&table), request(), black_box(&peer), upstream()))
        });
    }
    group.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
