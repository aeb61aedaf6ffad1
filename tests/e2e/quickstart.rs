//! The quickstart: the manifests in examples/quickstart route as their comments promise.

use http::{Method, StatusCode};
use weir_e2e::{ConfigDir, Echo, Weir};

/// A file of examples/quickstart, as shipped.
fn quickstart_file(name: &str) -> String {
    let path = format!(
        "{}/../examples/quickstart/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

#[tokio::test]
async fn the_quickstart_manifests_route_as_documented() {
    let mut backends = quickstart_file("backends.yaml");
    // The quickstart's fixed ports become the free ports these backends got.
    let mut echoes = Vec::new();
    for (name, fixed_port) in [("a", 9001), ("b", 9002), ("canary", 9003)] {
        let echo = Echo::start(name).await;
        let fixed = format!("port: {fixed_port}\n");
        assert!(backends.contains(&fixed), "backends.yaml has {fixed}");
        backends = backends.replace(&fixed, &format!("port: {}\n", echo.address().port()));
        echoes.push(echo);
    }
    let config = ConfigDir::new();
    config.write_text("backends.yaml", &backends);
    config.write_text("routes.yaml", &quickstart_file("routes.yaml"));
    let weir = Weir::start(&config).await;

    let debug_routes = weir.debug_routes().await;
    assert_eq!(
        debug_routes["source_problems"],
        serde_json::json!([]),
        "{debug_routes}"
    );
    for report in debug_routes["reports"]
        .as_array()
        .expect("reports is a list")
    {
        assert_eq!(report["accepted"], true, "{report}");
        assert_eq!(report["resolved_refs"], true, "{report}");
    }

    let documented: [(&str, &str, &[&str]); 5] = [
        ("echo.local", "/api/hello", &["a", "b"]),
        ("echo.local", "/apix", &["status 404"]),
        ("echo.local", "/weighted", &["a", "b", "canary"]),
        ("shop.example.com", "/", &["a", "b"]),
        ("example.com", "/", &["status 404"]),
    ];
    for (host, path, expected) in documented {
        let answered_by = weir.get(host, path).await.answered_by();
        assert!(
            expected.contains(&answered_by.as_str()),
            "{host}{path} answered by {answered_by}, expected one of {expected:?}"
        );
    }
    let canary = weir
        .proxy()
        .request(Method::GET, "echo.local", "/api/hello")
        .header("x-canary", "1")
        .send()
        .await;
    assert_eq!(
        (canary.status, canary.answered_by().as_str()),
        (StatusCode::OK, "canary")
    );
}
