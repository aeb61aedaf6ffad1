//! Richer matches (regex headers, query parameters) and every filter, end to end.

use http::{Method, StatusCode};
use serde_json::json;
use weir_e2e::{
    Behaviour, ConfigDir, HeldBackend, ScriptedBackend, Weir, World, eventually, manifests,
    manifests::route,
};

/// Rules that differ only in header and query matches: the one with more header matches
/// wins, then the one with more query matches, as Gateway API orders them.
#[tokio::test]
async fn regex_header_and_query_matches_follow_gateway_api_precedence() {
    let world = World::start(
        &["plain", "user", "debug", "both"],
        [route("m")
            .host("m.local")
            .prefix("/api")
            .backend("plain")
            .rule()
            .prefix("/api")
            .header_regex("x-user", "^u-[0-9]+$")
            .backend("user")
            .rule()
            .prefix("/api")
            .query("debug", "1")
            .backend("debug")
            .rule()
            .prefix("/api")
            .header_regex("x-user", "^u-[0-9]+$")
            .query_regex("v", "^[0-9]+$")
            .backend("both")],
    )
    .await;
    let weir = &world.weir;
    let ask = async |path: &str, user: Option<&str>| {
        let mut request = weir.proxy().request(Method::GET, "m.local", path);
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        request.send().await.answered_by()
    };
    assert_eq!(ask("/api", None).await, "plain");
    assert_eq!(ask("/api", Some("u-42")).await, "user");
    assert_eq!(
        ask("/api", Some("admin")).await,
        "plain",
        "the regex is anchored"
    );
    assert_eq!(ask("/api?debug=1", None).await, "debug");
    assert_eq!(
        ask("/api?debug=%31", None).await,
        "debug",
        "values are decoded"
    );
    assert_eq!(ask("/api?debug=2", None).await, "plain");
    assert_eq!(ask("/api?x=1&debug=1", None).await, "debug");
    assert_eq!(
        ask("/api?debug=1", Some("u-7")).await,
        "user",
        "a header match outranks a query match"
    );
    assert_eq!(
        ask("/api?v=12", Some("u-7")).await,
        "both",
        "with equal header matches, more query matches win"
    );
    assert_eq!(ask("/api?v=x", Some("u-7")).await, "user");
}

#[tokio::test]
async fn header_modifiers_change_requests_and_responses_per_rule_and_per_backend() {
    let world = World::start(
        &["a"],
        [route("h")
            .host("h.local")
            .prefix("/")
            .filter(json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "x-a", "value": "1"}],
                "add": [{"name": "x-b", "value": "2"}],
                "remove": ["x-c"],
            }}))
            .filter(json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "set": [{"name": "x-served-by", "value": "weir"}],
                "add": [{"name": "x-extra", "value": "yes"}],
                "remove": ["content-type"],
            }}))
            .backend("a")
            .backend_filter(json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "x-backend", "value": "a"}, {"name": "x-a", "value": "from-backend"}],
            }}))
            .backend_filter(json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "set": [{"name": "x-backend-said", "value": "hi"}],
            }}))],
    )
    .await;
    let reply = world
        .weir
        .proxy()
        .request(Method::GET, "h.local", "/")
        .header("x-a", "client")
        .header("x-b", "1")
        .header("x-c", "secret")
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header_seen_upstream("x-a").as_deref(),
        Some("from-backend"),
        "set replaces; the backend's filters run after the rule's"
    );
    assert_eq!(
        reply.header_seen_upstream("x-b").as_deref(),
        Some("1, 2"),
        "add keeps"
    );
    assert_eq!(reply.header_seen_upstream("x-c"), None, "remove removes");
    assert_eq!(
        reply.header_seen_upstream("x-backend").as_deref(),
        Some("a")
    );
    assert_eq!(reply.headers["x-served-by"], "weir");
    assert_eq!(reply.headers["x-extra"], "yes");
    assert_eq!(reply.headers["x-backend-said"], "hi");
    assert!(!reply.headers.contains_key("content-type"));
}

#[tokio::test]
async fn url_rewrite_replaces_the_matched_prefix_or_the_whole_path_and_the_host() {
    let world = World::start(
        &["a"],
        [route("rw")
            .host("rw.local")
            .prefix("/api")
            .filter(json!({"type": "URLRewrite", "urlRewrite": {
                "hostname": "internal.svc",
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"},
            }}))
            .backend("a")
            .rule()
            .prefix("/strip")
            .filter(json!({"type": "URLRewrite", "urlRewrite": {
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"},
            }}))
            .backend("a")
            .rule()
            .exact("/old")
            .filter(json!({"type": "URLRewrite", "urlRewrite": {
                "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"},
            }}))
            .backend("a")],
    )
    .await;
    let upstream = async |path: &str| {
        let reply = world.weir.get("rw.local", path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        let echo: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        let host = echo["headers"]["host"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let query = echo["query"]
            .as_str()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        (format!("{}{query}", echo["path"].as_str().unwrap()), host)
    };
    assert_eq!(
        upstream("/api/users?page=2").await,
        ("/v2/users?page=2".into(), "internal.svc".into())
    );
    assert_eq!(upstream("/api").await.0, "/v2");
    assert_eq!(
        upstream("/strip/x/y").await,
        ("/x/y".into(), "rw.local".into())
    );
    assert_eq!(upstream("/strip").await.0, "/");
    assert_eq!(upstream("/old?q=1").await.0, "/new?q=1");
}

/// A Service named `name` whose one endpoint is `backend`, in its own file.
fn scripted_service(config: &ConfigDir, name: &str, backend: &ScriptedBackend) {
    config.write(
        &format!("service-{name}.yaml"),
        &manifests::service_with_endpoints(name, &[backend.address()]),
    );
}

#[tokio::test]
async fn redirects_and_direct_responses_answer_without_touching_a_backend() {
    let backend = ScriptedBackend::start("untouched", Behaviour::Answer).await;
    let config = ConfigDir::new();
    scripted_service(&config, "untouched", &backend);
    config.write(
        "route.yaml",
        &[route("answers")
            .host("r.local")
            .prefix("/http")
            .filter(json!({"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}))
            .backend("untouched")
            .rule()
            .prefix("/moved")
            .filter(json!({"type": "RequestRedirect", "requestRedirect": {
                "hostname": "new.example", "port": 8443,
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"},
                "statusCode": 308,
            }}))
            .rule()
            .prefix("/maintenance")
            .filter(json!({"type": "DirectResponse", "directResponse": {"status": 503, "body": "down for maintenance"}}))
            .into()],
    );
    let weir = Weir::start(&config).await;

    let to_https = weir.get("r.local:8080", "/http/x?q=1").await;
    assert_eq!(to_https.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        to_https.headers["location"], "https://r.local/http/x?q=1",
        "a new scheme means its default port"
    );
    let moved = weir.get("r.local", "/moved/a/b").await;
    assert_eq!(moved.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(moved.headers["location"], "http://new.example:8443/v2/a/b");

    let maintenance = weir.get("r.local", "/maintenance").await;
    assert_eq!(maintenance.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(maintenance.body, "down for maintenance");
    assert_eq!(backend.requests(), 0, "no backend was asked");
}

#[tokio::test]
async fn a_mirror_gets_a_copy_of_each_request_with_its_body() {
    let primary = ScriptedBackend::start("primary", Behaviour::Answer).await;
    let shadow = ScriptedBackend::start("shadow", Behaviour::Status(500)).await;
    let config = ConfigDir::new();
    scripted_service(&config, "primary", &primary);
    scripted_service(&config, "shadow", &shadow);
    config.write(
        "route.yaml",
        &[route("mirrored")
            .host("m.local")
            .prefix("/")
            .filter(json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-step", "value": "filtered"}]}}))
            .filter(json!({"type": "RequestMirror", "requestMirror": {"backend": {"service": {"name": "shadow", "port": manifests::SERVICE_PORT}}, "percent": 100}}))
            .backend("primary")
            .into()],
    );
    let weir = Weir::start(&config).await;
    for i in 0..5 {
        let reply = weir
            .proxy()
            .request(Method::POST, "m.local", "/orders")
            .body(format!("order {i}"))
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "the mirror's 500 is not the client's"
        );
        assert_eq!(reply.answered_by(), "primary");
    }
    eventually("the shadow has a copy of each request", async || {
        let bodies = shadow.bodies();
        if bodies.len() == 5 {
            Ok(())
        } else {
            Err(format!("{} copies", bodies.len()))
        }
    })
    .await;
    let mut copies: Vec<String> = shadow
        .bodies()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    copies.sort();
    assert_eq!(
        copies,
        ["order 0", "order 1", "order 2", "order 3", "order 4"]
    );
    assert_eq!(primary.requests(), 5);
    eventually("mirror outcomes are counted", async || {
        let failed = weir
            .metric(r#"weir_mirrored_requests_total{route="default/mirrored",outcome="sent"}"#)
            .await;
        if failed == 5.0 {
            Ok(())
        } else {
            Err(format!("{failed}"))
        }
    })
    .await;
}

/// A mirror that never answers, and one that refuses connections, cost the client nothing.
#[tokio::test]
async fn a_slow_or_dead_mirror_never_delays_or_fails_the_request() {
    let primary = ScriptedBackend::start("primary", Behaviour::Answer).await;
    let stuck = HeldBackend::start().await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
        // Dropped: nothing listens there any more.
    };
    let config = ConfigDir::new();
    scripted_service(&config, "primary", &primary);
    config.write(
        "service-stuck.yaml",
        &manifests::service_with_endpoints("stuck", &[stuck.address()]),
    );
    config.write(
        "service-dead.yaml",
        &manifests::service_with_endpoints("dead", &[dead]),
    );
    let mirror = |service: &str| json!({"type": "RequestMirror", "requestMirror": {"backend": {"service": {"name": service, "port": manifests::SERVICE_PORT}}}});
    config.write(
        "route.yaml",
        &[
            route("to-stuck")
                .host("stuck.local")
                .prefix("/")
                .filter(mirror("stuck"))
                .backend("primary")
                .into(),
            route("to-dead")
                .host("dead.local")
                .prefix("/")
                .filter(mirror("dead"))
                .backend("primary")
                .into(),
        ],
    );
    let weir = Weir::start(&config).await;
    // Each request would wait forever if it waited for the stuck mirror's answer.
    for _ in 0..20 {
        assert_eq!(weir.get("stuck.local", "/").await.status, StatusCode::OK);
        assert_eq!(weir.get("dead.local", "/").await.status, StatusCode::OK);
    }
    assert_eq!(primary.requests(), 40);
    eventually("the dead mirror's failures are counted", async || {
        let failed = weir
            .metric(r#"weir_mirrored_requests_total{route="default/to-dead",outcome="failed"}"#)
            .await;
        if failed == 20.0 {
            Ok(())
        } else {
            Err(format!("{failed}"))
        }
    })
    .await;
    stuck.release();
}
