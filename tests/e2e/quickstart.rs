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

#[tokio::test]
async fn the_quickstart_ai_model_answers_the_openai_sdk_and_curl_as_documented() {
    let mock = weir_e2e::MockLlm::start("mock", "sk-quickstart-provider").await;
    let manifests = quickstart_file("ai.yaml");
    let fixed = "http://127.0.0.1:9100/v1";
    assert!(manifests.contains(fixed), "ai.yaml names {fixed}");
    let config = ConfigDir::new();
    config.write_text(
        "ai.yaml",
        &manifests.replace(fixed, &format!("{}/v1", mock.url())),
    );
    let weir = Weir::start(&config).await;

    // The README's Python lines.
    let answer = crate::ai::sdk(&weir, "openai-chat", "weir-demo-key", "assistant", &[]).await;
    let answer = crate::ai::ok(&answer);
    assert!(
        answer["content"].as_str().unwrap().starts_with("tok1 tok2"),
        "{answer}"
    );
    // The README's curl line: no content type, as `curl -d` sends it.
    let reply = weir
        .proxy()
        .request(Method::POST, "localhost", "/v1/chat/completions")
        .header("authorization", "Bearer weir-demo-key")
        .body(r#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}"#)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["x-ratelimit-limit-tokens"], "20000");
    let models = weir
        .proxy()
        .request(Method::GET, "localhost", "/v1/models")
        .header("authorization", "Bearer weir-demo-key")
        .send()
        .await;
    assert!(
        models.body.contains(r#""id":"assistant""#),
        "{}",
        models.body
    );
    // The prompt endpoint, as the README calls it.
    let prompt = weir
        .proxy()
        .request(Method::POST, "localhost", "/prompts/summarize")
        .header("authorization", "Bearer weir-demo-key")
        .body(r#"{"variables": {"text": "Weir is a Kubernetes API gateway.", "audience": "executives"}}"#)
        .send()
        .await;
    assert_eq!(prompt.status, StatusCode::OK, "{}", prompt.body);
    let sent = mock.requests().await;
    let system = &sent.last().expect("the prompt reached the provider")["body"]["messages"][0];
    assert_eq!(
        system["content"],
        "Summarise for executives in at most 100 words."
    );
}
