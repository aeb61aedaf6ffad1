//! Routing: which backend a request reaches, by host, path, method and headers.

use std::{process::Command, time::Duration};

use http::{Method, StatusCode, header::CONTENT_TYPE};
use weir_e2e::{Weir, World, manifests::route, run_to_exit};

/// Sends a GET for each `(host, path, expected)` and compares who answered (an echo instance,
/// or `status <code>`) with `expected`, all cases at once so a failure shows the whole table.
async fn assert_answers(weir: &Weir, cases: &[(&str, &str, &str)]) {
    let mut answered = Vec::new();
    let mut expected = Vec::new();
    for (host, path, expected_by) in cases {
        let answered_by = weir.get(host, path).await.answered_by();
        answered.push(format!("{host}{path} -> {answered_by}"));
        expected.push(format!("{host}{path} -> {expected_by}"));
    }
    assert_eq!(answered, expected);
}

#[tokio::test]
async fn path_prefix_matches_whole_segments_only() {
    let world = World::start(
        &["a"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    assert_answers(
        &world.weir,
        &[
            ("echo.local", "/api", "a"),
            ("echo.local", "/api/", "a"),
            ("echo.local", "/api/x", "a"),
            ("echo.local", "/api/x/y?q=1", "a"),
            ("echo.local", "/apix", "status 404"),
            ("echo.local", "/", "status 404"),
        ],
    )
    .await;
}

#[tokio::test]
async fn exact_path_matches_only_that_path() {
    let world = World::start(
        &["a", "b"],
        [
            route("api").host("echo.local").prefix("/api").backend("a"),
            route("health")
                .host("echo.local")
                .exact("/health")
                .backend("b"),
        ],
    )
    .await;
    assert_answers(
        &world.weir,
        &[
            ("echo.local", "/health", "b"),
            ("echo.local", "/health?verbose=1", "b"),
            ("echo.local", "/health/", "status 404"),
            ("echo.local", "/health/x", "status 404"),
            ("echo.local", "/healthz", "status 404"),
            ("echo.local", "/api/health", "a"),
        ],
    )
    .await;
}

#[tokio::test]
async fn wildcard_host_matches_subdomains_only() {
    let world = World::start(
        &["a"],
        [route("wildcard").host("*.example.com").backend("a")],
    )
    .await;
    assert_answers(
        &world.weir,
        &[
            ("a.example.com", "/", "a"),
            ("www.example.com", "/any/path", "a"),
            ("example.com", "/", "status 404"),
            ("a.example.org", "/", "status 404"),
            ("aexample.com", "/", "status 404"),
        ],
    )
    .await;
}

#[tokio::test]
async fn exact_host_wins_over_wildcard() {
    let world = World::start(
        &["a", "b"],
        [
            route("wildcard").host("*.example.com").backend("a"),
            route("api").host("api.example.com").backend("b"),
        ],
    )
    .await;
    assert_answers(
        &world.weir,
        &[("api.example.com", "/", "b"), ("www.example.com", "/", "a")],
    )
    .await;
}

#[tokio::test]
async fn host_matching_ignores_case_and_port() {
    let world = World::start(
        &["a"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    assert_answers(
        &world.weir,
        &[
            ("Echo.Local", "/api", "a"),
            ("echo.local:8080", "/api", "a"),
        ],
    )
    .await;
}

#[tokio::test]
async fn method_match_admits_only_that_method() {
    let world = World::start(
        &["a"],
        [route("submit")
            .host("echo.local")
            .prefix("/submit")
            .method("POST")
            .backend("a")],
    )
    .await;
    let proxy = world.weir.proxy();
    let post = proxy
        .request(Method::POST, "echo.local", "/submit")
        .send()
        .await;
    assert_eq!(post.answered_by(), "a");
    let get = proxy
        .request(Method::GET, "echo.local", "/submit")
        .send()
        .await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn header_match_sends_canary_requests_to_the_canary_backend() {
    let world = World::start(
        &["a", "canary"],
        [route("api")
            .host("echo.local")
            .prefix("/api")
            .header("x-canary", "1")
            .backend("canary")
            .rule()
            .prefix("/api")
            .backend("a")],
    )
    .await;
    let proxy = world.weir.proxy();
    let with_header = |value| {
        proxy
            .request(Method::GET, "echo.local", "/api/x")
            .header("x-canary", value)
            .send()
    };
    assert_eq!(with_header("1").await.answered_by(), "canary");
    assert_eq!(with_header("2").await.answered_by(), "a");
    assert_eq!(
        world.weir.get("echo.local", "/api/x").await.answered_by(),
        "a"
    );
}

#[tokio::test]
async fn unknown_host_or_path_answers_404_in_plain_text() {
    let world = World::start(
        &["a"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    for (host, path) in [("unknown.local", "/api"), ("echo.local", "/unknown")] {
        let reply = world.weir.get(host, path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{host}{path}");
        let content_type = reply.headers[CONTENT_TYPE].to_str().unwrap_or_default();
        assert!(
            content_type.starts_with("text/plain"),
            "{host}{path}: {content_type}"
        );
        assert!(!reply.body.is_empty(), "{host}{path}: a 404 says why");
    }
}

#[tokio::test]
async fn the_backend_sees_the_original_host_and_forwarded_headers() {
    let world = World::start(&["a"], [route("api").host("echo.local").backend("a")]).await;
    let reply = world.weir.get("echo.local", "/api").await;
    assert_eq!(reply.answered_by(), "a");
    let seen = |name| reply.header_seen_upstream(name);
    assert_eq!(seen("host").as_deref(), Some("echo.local"));
    assert_eq!(seen("x-forwarded-host").as_deref(), Some("echo.local"));
    assert_eq!(seen("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen("x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn curl_reaches_the_backend_as_a_user_would() {
    let world = World::start(
        &["a"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    let url = format!("http://{}/api/hello", world.weir.proxy().address());
    let output = run_to_exit(
        Command::new("curl").args([
            "--silent",
            "--show-error",
            "--fail",
            "-H",
            "Host: echo.local",
            &url,
        ]),
        Duration::from_secs(10),
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "curl {url}: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("the echo answers JSON");
    assert_eq!(answer["instance"], "a");
    assert_eq!(answer["path"], "/api/hello");
}
