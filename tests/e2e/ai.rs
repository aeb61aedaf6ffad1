//! The AI gateway, driven by the official OpenAI and Anthropic Python SDKs through Weir
//! (standalone, AIModel and Secrets from the directory) to mock providers.
//!
//! Each test starts its own mock providers; faults are chosen by the upstream model name
//! (`mock+status-429+retry-after-30`), so one AIModel per behaviour says which provider fails
//! how.

use std::time::Duration;

use serde_json::{Value, json};
use weir_e2e::{
    ConfigDir, Echo, MockLlm, Weir, eventually_within,
    manifests::{route, service_with_endpoints},
    python::Script,
};

pub(crate) const CLIENT_KEY: &str = "weir-client-key-7f3a9c";
pub(crate) const OTHER_CLIENT_KEY: &str = "weir-client-key-other-51d2";
pub(crate) const PROVIDER_KEY: &str = "sk-provider-secret-0b8e";
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn client_key(name: &str, key: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["weir.dev/ai-key"] = json!("true");
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "ai", "labels": labels},
        "stringData": {"key": key}})
}

pub(crate) fn provider_key(name: &str, key: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "ai", "labels": {"weir.dev/ai-credentials": "true"}},
        "stringData": {"apiKey": key}})
}

/// A provider entry of an AIModel.
pub(crate) fn provider(
    name: &str,
    kind: &str,
    mock: &MockLlm,
    model: &str,
    priority: u32,
) -> Value {
    let url = match kind {
        "OpenAI" => format!("{}/v1", mock.url()),
        _ => mock.url(),
    };
    json!({"name": name, "type": kind, "model": model, "endpoint": {"url": url},
        "credentials": {"secretRef": {"name": "provider-key", "key": "apiKey"}},
        "priority": priority})
}

pub(crate) fn ai_model(name: &str, providers: Vec<Value>, extra: Value) -> Value {
    let mut spec = json!({"providers": providers});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "weir.dev/v1alpha1", "kind": "AIModel",
        "metadata": {"name": name, "namespace": "ai"}, "spec": spec})
}

/// A gateway serving `models`, with the two client keys and the provider key.
pub(crate) async fn gateway(models: Vec<Value>) -> (ConfigDir, Weir) {
    gateway_with(models, &[]).await
}

/// [`gateway`] with other objects (Routes, Services) beside the models.
async fn gateway_with(models: Vec<Value>, others: &[Value]) -> (ConfigDir, Weir) {
    let config = ConfigDir::new();
    config.write(
        "keys.yaml",
        &[
            client_key("team-search", CLIENT_KEY, json!({"team": "search"})),
            client_key("team-other", OTHER_CLIENT_KEY, json!({"team": "other"})),
            provider_key("provider-key", PROVIDER_KEY),
        ],
    );
    config.write("models.yaml", &models);
    if !others.is_empty() {
        config.write("others.yaml", others);
    }
    let weir = Weir::start(&config).await;
    (config, weir)
}

/// Runs `ai_client.py` and returns its result line.
pub(crate) async fn sdk(weir: &Weir, call: &str, key: &str, model: &str, extra: &[&str]) -> Value {
    let base = match call {
        // Anthropic's paths and prompt endpoints are at the root, not under /v1.
        "anthropic" | "anthropic-count" | "openai-prompt" | "openai-prompt-openapi" => {
            format!("http://{}", weir.proxy().address())
        }
        _ => format!("http://{}/v1", weir.proxy().address()),
    };
    let mut args = vec![call, "--base", &base, "--key", key, "--model", model];
    args.extend_from_slice(extra);
    let finished = Script::start("ai_client.py", &args)
        .finish(SCRIPT_DEADLINE)
        .await;
    finished.expect_success()
}

pub(crate) fn ok(result: &Value) -> &Value {
    result
        .get("ok")
        .unwrap_or_else(|| panic!("the SDK call failed: {result:#}"))
}

pub(crate) fn err(result: &Value) -> &Value {
    result
        .get("error")
        .unwrap_or_else(|| panic!("the SDK call succeeded where it should not: {result:#}"))
}

#[tokio::test]
async fn openai_sdk_chat_streams_with_and_without_usage_and_the_provider_sees_only_its_own_key() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![ai_model(
        "chat",
        vec![provider("primary", "OpenAI", &mock, "mock-upstream", 0)],
        json!({}),
    )])
    .await;

    let whole = sdk(&weir, "openai-chat", CLIENT_KEY, "chat", &[]).await;
    let whole = ok(&whole);
    assert_eq!(
        whole["content"],
        "tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8 tok9 tok10 tok11 tok12"
    );
    assert_eq!(whole["usage"]["completion_tokens"], 12);
    let prompt_tokens = whole["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens > 0);

    let with_usage = sdk(
        &weir,
        "openai-chat",
        CLIENT_KEY,
        "chat",
        &["--stream", "--include-usage"],
    )
    .await;
    let with_usage = ok(&with_usage);
    assert_eq!(with_usage["content"], whole["content"]);
    assert_eq!(with_usage["finish_reason"], "stop");
    let usage_chunks = with_usage["usage_chunks"].as_array().unwrap();
    assert_eq!(usage_chunks.len(), 1, "{with_usage:#}");
    assert_eq!(usage_chunks[0]["choices"], 0);
    assert_eq!(usage_chunks[0]["usage"]["completion_tokens"], 12);
    assert_eq!(usage_chunks[0]["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(with_usage["usage_chunk_last"], true);

    let without = sdk(&weir, "openai-chat", CLIENT_KEY, "chat", &["--stream"]).await;
    let without = ok(&without);
    assert_eq!(without["content"], whole["content"]);
    assert_eq!(
        without["usage_chunks"],
        json!([]),
        "the injected usage chunk leaked: {without:#}"
    );

    // The provider saw its own key, its own model name, and was asked for usage every time.
    let requests = mock.requests().await;
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(
            request["headers"]["authorization"],
            format!("Bearer {PROVIDER_KEY}")
        );
        assert_eq!(request["body"]["model"], "mock-upstream");
        assert!(!request.to_string().contains(CLIENT_KEY));
    }
    assert_eq!(requests[2]["body"]["stream_options"]["include_usage"], true);

    // Three requests, identical usage each: the streamed ones counted exactly like the whole.
    let output = weir
        .metric(r#"weir_ai_tokens_total{model="ai/chat",provider="primary",key="team-search",type="output"}"#)
        .await;
    assert_eq!(output, 36.0);
}

#[tokio::test]
async fn openai_sdk_reaches_an_anthropic_provider_with_tools_and_system_messages() {
    let mock = MockLlm::start("claude", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![
        ai_model(
            "text",
            vec![provider("claude", "Anthropic", &mock, "mock+cache", 0)],
            json!({}),
        ),
        ai_model(
            "tools",
            vec![provider("claude", "Anthropic", &mock, "mock+tools-2", 0)],
            json!({}),
        ),
    ])
    .await;

    let text = sdk(&weir, "openai-chat", CLIENT_KEY, "text", &[]).await;
    let text = ok(&text);
    assert_eq!(text["finish_reason"], "stop");
    assert!(text["content"].as_str().unwrap().starts_with("tok1 tok2"));
    // prompt_tokens counts cache reads and writes (4 + 2) on top of input.
    let usage = &text["usage"];
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 4);

    let streamed = sdk(
        &weir,
        "openai-chat",
        CLIENT_KEY,
        "tools",
        &["--stream", "--tools", "--include-usage"],
    )
    .await;
    let streamed = ok(&streamed);
    assert_eq!(streamed["finish_reason"], "tool_calls", "{streamed:#}");
    let calls = streamed["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{streamed:#}");
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(call["index"], i);
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("arguments of call {i} are not JSON ({e}): {call}"));
        assert_eq!(arguments["n"], i + 1);
    }
    assert_eq!(streamed["role_chunks"], 1);

    let requests = mock.requests().await;
    let first = &requests[0];
    assert_eq!(first["path"], "/v1/messages");
    assert_eq!(first["headers"]["x-api-key"], PROVIDER_KEY);
    assert_eq!(first["body"]["model"], "mock+cache");
    // Both system messages, in order; max_tokens defaulted for Anthropic.
    let system = first["body"]["system"].to_string();
    assert!(
        system.contains("first system words") && system.contains("second system"),
        "{system}"
    );
    assert!(system.find("first").unwrap() < system.find("second").unwrap());
    assert_eq!(first["body"]["max_tokens"], 4096);
}

#[tokio::test]
async fn anthropic_sdk_reaches_an_openai_provider_with_tools_and_counts_tokens() {
    let mock = MockLlm::start("gpt", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![
        ai_model(
            "text",
            vec![provider("gpt", "OpenAI", &mock, "mock", 0)],
            json!({}),
        ),
        ai_model(
            "tools",
            vec![provider("gpt", "OpenAI", &mock, "mock+tools-2", 0)],
            json!({}),
        ),
    ])
    .await;

    let whole = sdk(&weir, "anthropic", CLIENT_KEY, "text", &[]).await;
    let whole = ok(&whole);
    assert_eq!(whole["stop_reason"], "end_turn");
    assert_eq!(whole["usage"]["output_tokens"], 12);

    let streamed = sdk(
        &weir,
        "anthropic",
        CLIENT_KEY,
        "tools",
        &["--stream", "--tools"],
    )
    .await;
    let streamed = ok(&streamed);
    assert_eq!(streamed["stop_reason"], "tool_use", "{streamed:#}");
    let uses = streamed["tool_uses"].as_array().unwrap();
    assert_eq!(uses.len(), 2, "{streamed:#}");
    assert_eq!(uses[1]["input"]["n"], 2);
    assert_eq!(streamed["usage"]["output_tokens"], 10);
    let events = streamed["events"].as_array().unwrap();
    assert_eq!(events.first().unwrap(), "message_start");

    let counted = sdk(&weir, "anthropic-count", CLIENT_KEY, "text", &[]).await;
    assert!(ok(&counted)["input_tokens"].as_u64().unwrap() > 0);

    let requests = mock.requests().await;
    assert_eq!(requests[0]["path"], "/v1/chat/completions");
    assert_eq!(
        requests[0]["headers"]["authorization"],
        format!("Bearer {PROVIDER_KEY}")
    );
}

#[tokio::test]
async fn falls_back_before_the_first_byte_on_each_listed_failure() {
    let failing = MockLlm::start("failing", PROVIDER_KEY).await;
    let backup = MockLlm::start("backup", PROVIDER_KEY).await;
    let faults = [
        ("on-429", "mock+status-429+retry-after-30"),
        ("on-503", "mock+status-503"),
        ("on-529", "mock+status-529"),
        ("on-slow-first-byte", "mock+slow-ttft-5000"),
        ("on-headers-then-close", "mock+headers-then-close"),
    ];
    let mut models: Vec<Value> = faults
        .iter()
        .map(|(name, fault)| {
            ai_model(
                name,
                vec![
                    provider("failing", "OpenAI", &failing, fault, 0),
                    provider("backup", "OpenAI", &backup, "mock", 1),
                ],
                json!({"timeouts": {"firstByte": "1s"}}),
            )
        })
        .collect();
    // Nothing listens on port 9 of loopback: a connect error.
    models.push(ai_model(
        "on-connect-error",
        vec![
            json!({"name": "nowhere", "type": "OpenAI", "model": "mock",
                "endpoint": {"url": "http://127.0.0.1:9/v1"}}),
            provider("backup", "OpenAI", &backup, "mock", 1),
        ],
        json!({}),
    ));
    let (_config, weir) = gateway(models).await;

    for name in faults
        .iter()
        .map(|(name, _)| *name)
        .chain(["on-connect-error"])
    {
        let result = sdk(
            &weir,
            "openai-chat",
            CLIENT_KEY,
            name,
            &["--stream", "--include-usage"],
        )
        .await;
        let result = ok(&result);
        assert_eq!(result["finish_reason"], "stop", "{name}: {result:#}");
        assert_eq!(
            result["role_chunks"], 1,
            "{name}: one role chunk, no duplicated prefix"
        );
        assert!(
            result["content"].as_str().unwrap().starts_with("tok1 tok2"),
            "{name}"
        );
    }
    // The failing provider was called once per fault (no SDK retry multiplied it), the
    // backup once per model.
    assert_eq!(failing.requests().await.len(), faults.len());
    assert_eq!(backup.requests().await.len(), faults.len() + 1);
}

#[tokio::test]
async fn a_cut_after_content_ends_with_an_in_band_error_in_both_dialects() {
    let mock = MockLlm::start("cut", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![
        ai_model(
            "cut-openai",
            vec![provider("cut", "OpenAI", &mock, "mock+cut-after-5", 0)],
            json!({}),
        ),
        ai_model(
            "cut-anthropic",
            vec![provider("cut", "Anthropic", &mock, "mock+cut-after-5", 0)],
            json!({}),
        ),
    ])
    .await;

    let openai = sdk(
        &weir,
        "openai-chat",
        CLIENT_KEY,
        "cut-openai",
        &["--stream"],
    )
    .await;
    let error = err(&openai);
    assert_eq!(error["class"], "APIError", "{error:#}");

    let anthropic = sdk(
        &weir,
        "anthropic",
        CLIENT_KEY,
        "cut-anthropic",
        &["--stream"],
    )
    .await;
    let error = err(&anthropic);
    assert!(
        error["class"].as_str().unwrap().ends_with("Error"),
        "{error:#}"
    );
    assert!(error.to_string().contains("api_error"), "{error:#}");

    let partial = weir
        .metric(r#"weir_ai_requests_total{model="ai/cut-openai",provider="cut",key="team-search",outcome="provider_failed_mid_stream"}"#)
        .await;
    assert_eq!(partial, 1.0);
}

#[tokio::test]
async fn errors_are_json_in_the_callers_dialect() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![
        ai_model(
            "chat",
            vec![provider("primary", "OpenAI", &mock, "mock", 0)],
            json!({}),
        ),
        ai_model(
            "bad-request",
            vec![provider("primary", "OpenAI", &mock, "mock+status-400", 0)],
            json!({}),
        ),
        ai_model(
            "always-503",
            vec![provider("primary", "OpenAI", &mock, "mock+status-503", 0)],
            json!({}),
        ),
    ])
    .await;

    let unknown = sdk(&weir, "openai-chat", CLIENT_KEY, "no-such-model", &[]).await;
    let unknown = err(&unknown);
    assert_eq!(unknown["class"], "NotFoundError");
    assert_eq!(unknown["code"], "model_not_found");
    assert_eq!(unknown["param"], "model");

    let no_key = sdk(&weir, "openai-chat", "not-a-key", "chat", &[]).await;
    assert_eq!(err(&no_key)["class"], "AuthenticationError");

    let anthropic_unknown = sdk(&weir, "anthropic", CLIENT_KEY, "no-such-model", &[]).await;
    let anthropic_unknown = err(&anthropic_unknown);
    assert_eq!(anthropic_unknown["class"], "NotFoundError");
    assert_eq!(anthropic_unknown["body"]["type"], "error");

    // A 400 is the client's to fix: returned as it is, not retried on another provider.
    let bad = sdk(&weir, "openai-chat", CLIENT_KEY, "bad-request", &[]).await;
    assert_eq!(err(&bad)["class"], "BadRequestError");

    // Fallbacks exhausted: the SDK is told not to retry, so the provider is called once.
    let before = mock.requests().await.len();
    let exhausted = sdk(&weir, "openai-chat", CLIENT_KEY, "always-503", &[]).await;
    let exhausted = err(&exhausted);
    assert_eq!(exhausted["status_code"], 503);
    assert_eq!(exhausted["headers"]["x-should-retry"], "false");
    assert_eq!(mock.requests().await.len() - before, 1);

    // Bad JSON, with curl-like raw requests: still JSON in the dialect.
    let reply = weir
        .proxy()
        .request(http::Method::POST, "any", "/v1/chat/completions")
        .header("authorization", &format!("Bearer {CLIENT_KEY}"))
        .body("{not json")
        .send()
        .await;
    assert_eq!(reply.status, 400);
    let body: Value = serde_json::from_str(&reply.body).expect("the error is JSON");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn models_lists_what_each_key_may_use() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![
        ai_model(
            "for-everyone",
            vec![provider("p", "OpenAI", &mock, "mock", 0)],
            json!({}),
        ),
        ai_model(
            "for-search",
            vec![provider("p", "OpenAI", &mock, "mock", 0)],
            json!({"names": ["search-model", "search-alias"],
                "access": {"keySelector": {"matchLabels": {"team": "search"}}}}),
        ),
    ])
    .await;

    let search = sdk(&weir, "openai-models", CLIENT_KEY, "", &[]).await;
    assert_eq!(
        ok(&search)["ids"],
        json!(["for-everyone", "search-alias", "search-model"])
    );
    let other = sdk(&weir, "openai-models", OTHER_CLIENT_KEY, "", &[]).await;
    assert_eq!(ok(&other)["ids"], json!(["for-everyone"]));
    // The other team's key cannot call the model it cannot see.
    let refused = sdk(&weir, "openai-chat", OTHER_CLIENT_KEY, "search-model", &[]).await;
    assert_eq!(err(&refused)["code"], "model_not_found");
}

#[tokio::test]
async fn embeddings_and_responses_pass_through_with_usage() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![ai_model(
        "embed",
        vec![provider("p", "OpenAI", &mock, "mock", 0)],
        json!({}),
    )])
    .await;
    let embeddings = sdk(&weir, "openai-embeddings", CLIENT_KEY, "embed", &[]).await;
    let embeddings = ok(&embeddings);
    assert_eq!(embeddings["count"], 2);
    assert!(embeddings["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let responses = sdk(&weir, "openai-responses", CLIENT_KEY, "embed", &[]).await;
    assert!(ok(&responses)["text"].as_str().unwrap().starts_with("tok1"));
    let input = weir
        .metric(
            r#"weir_ai_tokens_total{model="ai/embed",provider="p",key="team-search",type="input"}"#,
        )
        .await;
    assert!(input > 0.0);
}

#[tokio::test]
async fn large_prompts_pass_and_a_body_above_the_cap_gets_a_json_413() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let config = ConfigDir::new();
    config.write(
        "keys.yaml",
        &[
            client_key("team-search", CLIENT_KEY, json!({"team": "search"})),
            provider_key("provider-key", PROVIDER_KEY),
        ],
    );
    config.write(
        "models.yaml",
        &[ai_model(
            "chat",
            vec![provider("p", "OpenAI", &mock, "mock", 0)],
            json!({}),
        )],
    );
    let weir = Weir::start_with_args(&config, &["--ai-max-request-size", "4Mi"]).await;

    let two_mib = (2 << 20).to_string();
    let large = sdk(
        &weir,
        "openai-chat",
        CLIENT_KEY,
        "chat",
        &["--prompt-bytes", &two_mib],
    )
    .await;
    assert_eq!(ok(&large)["finish_reason"], "stop");

    let five_mib = (5 << 20).to_string();
    let too_large = sdk(
        &weir,
        "openai-chat",
        CLIENT_KEY,
        "chat",
        &["--prompt-bytes", &five_mib],
    )
    .await;
    let too_large = err(&too_large);
    assert_eq!(too_large["status_code"], 413);
    assert_eq!(too_large["body"]["code"], "request_too_large");
}

#[tokio::test]
async fn keys_rotate_without_a_restart_and_never_show() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let (config, weir) = gateway(vec![ai_model(
        "chat",
        vec![provider("p", "OpenAI", &mock, "mock", 0)],
        json!({}),
    )])
    .await;
    assert!(ok(&sdk(&weir, "openai-chat", CLIENT_KEY, "chat", &[]).await)["content"].is_string());

    let rotated = "weir-client-key-rotated-99aa";
    config.write(
        "keys.yaml",
        &[
            client_key("team-search", rotated, json!({"team": "search"})),
            provider_key("provider-key", PROVIDER_KEY),
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = weir
            .proxy()
            .request(http::Method::GET, "any", "/v1/models")
            .header("authorization", &format!("Bearer {rotated}"))
            .send()
            .await;
        if reply.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated key was not accepted in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let old = sdk(&weir, "openai-chat", CLIENT_KEY, "chat", &[]).await;
    assert_eq!(err(&old)["class"], "AuthenticationError");
    assert!(ok(&sdk(&weir, "openai-chat", rotated, "chat", &[]).await)["content"].is_string());

    // No key, client or provider, anywhere an operator looks.
    let debug = weir.debug_routes().await.to_string();
    let metrics = weir
        .admin()
        .request(http::Method::GET, "admin", "/metrics")
        .send()
        .await
        .body;
    for secret in [CLIENT_KEY, rotated, PROVIDER_KEY] {
        assert!(!debug.contains(secret), "/debug/routes shows a key");
        assert!(!metrics.contains(secret), "/metrics shows a key");
        assert_eq!(weir.log_lines_containing(secret), 0, "the log shows a key");
    }
}

/// The prompt of the issue: free text in the user turn, an enum and an integer in the system
/// turn, both with defaults.
fn summarize_prompt(name: &str) -> Value {
    json!({
        "name": name,
        "system": "Summarise for {{audience}} in at most {{words}} words.",
        "user": "{{text}}",
        "variables": {
            "text": {"type": "string", "required": true, "maxLength": 50000},
            "audience": {"type": "string", "enum": ["engineers", "executives"], "default": "engineers"},
            "words": {"type": "integer", "minimum": 10, "maximum": 500, "default": 100},
        },
        "params": {"temperature": 0.2, "max_tokens": 512},
    })
}

/// Calls prompt `name` with `variables` through the OpenAI SDK.
async fn call_prompt(
    weir: &Weir,
    key: &str,
    name: &str,
    variables: Value,
    extra: &[&str],
) -> Value {
    let variables = variables.to_string();
    let mut args = vec!["--prompt-name", name, "--variables", &variables];
    args.extend_from_slice(extra);
    sdk(weir, "openai-prompt", key, "", &args).await
}

/// What the chat messages a provider received say, as `role: content` lines.
fn turns(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages: {body}"))
        .iter()
        .map(|m| {
            format!(
                "{}: {}",
                m["role"].as_str().unwrap(),
                m["content"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_prompt_answers_as_a_chat_completion_whole_and_streamed_with_its_turns_rendered() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![ai_model(
        "chat",
        vec![provider("primary", "OpenAI", &mock, "mock-upstream", 0)],
        json!({"prompts": [summarize_prompt("summarize")]}),
    )])
    .await;
    // Looks like placeholders; must reach the provider as written.
    let text = "Read {{audience}} and {{ words }} as they are.";

    let whole = call_prompt(&weir, CLIENT_KEY, "summarize", json!({"text": text}), &[]).await;
    let whole = ok(&whole);
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["finish_reason"], "stop");
    assert!(
        whole["content"].as_str().unwrap().starts_with("tok1 tok2"),
        "{whole:#}"
    );
    assert_eq!(whole["usage"]["completion_tokens"], 12);

    let streamed = call_prompt(
        &weir,
        CLIENT_KEY,
        "summarize",
        json!({"text": text, "audience": "executives", "words": 250}),
        &["--stream"],
    )
    .await;
    let streamed = ok(&streamed);
    assert_eq!(streamed["objects"], json!(["chat.completion.chunk"]));
    assert_eq!(streamed["content"], whole["content"]);
    assert_eq!(streamed["finish_reason"], "stop");

    let requests = mock.requests().await;
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let first = &requests[0]["body"];
    assert_eq!(requests[0]["path"], "/v1/chat/completions");
    assert_eq!(
        turns(first),
        [
            "system: Summarise for engineers in at most 100 words.",
            &format!("user: {text}"),
        ]
    );
    assert_eq!(first["model"], "mock-upstream");
    assert_eq!(first["temperature"], 0.2);
    assert_eq!(first["max_tokens"], 512);
    assert_eq!(first.get("stream"), None);
    let second = &requests[1]["body"];
    assert_eq!(
        turns(second)[0],
        "system: Summarise for executives in at most 250 words."
    );
    assert_eq!(second["stream"], true);

    // Counted as the model's requests, and as the prompt's.
    let rendered = weir
        .metric(r#"weir_ai_prompt_requests_total{model="ai/chat",prompt="summarize",outcome="rendered"}"#)
        .await;
    assert_eq!(rendered, 2.0);
    let output = weir
        .metric(r#"weir_ai_tokens_total{model="ai/chat",provider="primary",key="team-search",type="output"}"#)
        .await;
    assert_eq!(output, 24.0);
}

#[tokio::test]
async fn a_prompt_of_a_model_served_by_anthropic_sends_its_system_turn_as_system() {
    let mock = MockLlm::start("claude", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![ai_model(
        "claude",
        vec![provider("claude", "Anthropic", &mock, "mock", 0)],
        json!({"prompts": [summarize_prompt("summarize")]}),
    )])
    .await;
    let streamed = call_prompt(
        &weir,
        CLIENT_KEY,
        "summarize",
        json!({"text": "the report"}),
        &["--stream"],
    )
    .await;
    assert_eq!(ok(&streamed)["finish_reason"], "stop", "{streamed:#}");

    let requests = mock.requests().await;
    assert_eq!(requests[0]["path"], "/v1/messages");
    let body = &requests[0]["body"];
    assert!(
        body["system"]
            .to_string()
            .contains("Summarise for engineers in at most 100 words."),
        "{body:#}"
    );
    assert_eq!(body["messages"][0]["role"], "user");
    assert!(
        body["messages"][0].to_string().contains("the report"),
        "{body:#}"
    );
    assert_eq!(body["max_tokens"], 512);
}

#[tokio::test]
async fn a_bad_variable_gets_a_400_naming_it_and_never_reaches_the_provider() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![ai_model(
        "chat",
        vec![provider("primary", "OpenAI", &mock, "mock", 0)],
        json!({"prompts": [summarize_prompt("summarize")]}),
    )])
    .await;
    let cases = [
        (
            json!({"audience": "engineers"}),
            "variables.text",
            "missing_required_parameter",
        ),
        (
            json!({"text": "t", "words": "many"}),
            "variables.words",
            "invalid_type",
        ),
        (
            json!({"text": "t", "words": 501}),
            "variables.words",
            "invalid_value",
        ),
        (
            json!({"text": "t", "audience": "everyone"}),
            "variables.audience",
            "invalid_value",
        ),
        (
            json!({"text": "x".repeat(50_001)}),
            "variables.text",
            "string_above_max_length",
        ),
        (
            json!({"text": "t", "tone": "dry"}),
            "variables.tone",
            "unknown_parameter",
        ),
    ];
    for (variables, param, code) in cases {
        let result = call_prompt(&weir, CLIENT_KEY, "summarize", variables.clone(), &[]).await;
        let error = err(&result);
        assert_eq!(error["class"], "BadRequestError", "{variables}: {error:#}");
        assert_eq!(error["param"], param, "{variables}: {error:#}");
        assert_eq!(error["code"], code, "{variables}: {error:#}");
        assert_eq!(error["body"]["type"], "invalid_request_error", "{error:#}");
        let name = param.trim_start_matches("variables.");
        assert!(
            error["body"]["message"].as_str().unwrap().contains(name),
            "{error:#}"
        );
    }
    assert_eq!(mock.requests().await.len(), 0);
    let invalid = weir
        .metric(r#"weir_ai_prompt_requests_total{model="ai/chat",prompt="summarize",outcome="invalid"}"#)
        .await;
    assert_eq!(invalid, 6.0);
}

#[tokio::test]
async fn a_prompts_openapi_document_describes_its_variables() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![ai_model(
        "chat",
        vec![provider("primary", "OpenAI", &mock, "mock", 0)],
        json!({"prompts": [summarize_prompt("summarize")]}),
    )])
    .await;
    let result = sdk(
        &weir,
        "openai-prompt-openapi",
        CLIENT_KEY,
        "",
        &["--prompt-name", "summarize"],
    )
    .await;
    let document = ok(&result);
    assert_eq!(document["openapi"], "3.1.0");
    let operation = &document["paths"]["/prompts/summarize"]["post"];
    assert!(operation.is_object(), "{document:#}");
    let variables = &document["components"]["schemas"]["Variables"];
    let names: Vec<&String> = variables["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(names, ["audience", "text", "words"]);
    assert_eq!(variables["required"], json!(["text"]));
    assert_eq!(
        variables["properties"]["words"],
        json!({"type": "integer", "minimum": 10, "maximum": 500, "default": 100})
    );
    assert_eq!(
        variables["properties"]["audience"]["enum"],
        json!(["engineers", "executives"])
    );
    assert_eq!(variables["properties"]["text"]["maxLength"], 50000);
    // The operator's templates stay the operator's.
    assert!(!document.to_string().contains("Summarise"));
}

#[tokio::test]
async fn prompts_are_found_by_host_and_key_and_other_paths_fall_through_to_routes() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let site = Echo::start("site").await;
    let mut others = service_with_endpoints("site", &[site.address()]);
    others.push(route("site").prefix("/prompts").backend("site").into());
    let (_config, weir) = gateway_with(
        vec![
            ai_model(
                "chat",
                vec![provider("primary", "OpenAI", &mock, "mock", 0)],
                json!({"prompts": [summarize_prompt("summarize")]}),
            ),
            ai_model(
                "search-only",
                vec![provider("primary", "OpenAI", &mock, "mock", 0)],
                json!({"access": {"keySelector": {"matchLabels": {"team": "search"}}},
                    "prompts": [summarize_prompt("search-summary")]}),
            ),
        ],
        &others,
    )
    .await;

    // The key's own prompt works; another team's key is told it does not exist.
    let allowed = call_prompt(
        &weir,
        CLIENT_KEY,
        "search-summary",
        json!({"text": "t"}),
        &[],
    )
    .await;
    assert_eq!(ok(&allowed)["finish_reason"], "stop");
    let refused = call_prompt(
        &weir,
        OTHER_CLIENT_KEY,
        "search-summary",
        json!({"text": "t"}),
        &[],
    )
    .await;
    let refused = err(&refused);
    assert_eq!(refused["class"], "NotFoundError", "{refused:#}");
    assert_eq!(refused["code"], "prompt_not_found");
    let unknown_key = call_prompt(&weir, "not-a-key", "summarize", json!({"text": "t"}), &[]).await;
    assert_eq!(err(&unknown_key)["class"], "AuthenticationError");

    // A prompt no model declares is not the AI gateway's: the Route on /prompts answers it
    // (without a Route it is the routing table's 404).
    let reply = weir.get("any", "/prompts/no-such-prompt").await;
    assert_eq!(reply.answered_by(), "site");
    let reply = weir.get("any", "/prompts/summarize/other").await;
    assert_eq!(reply.answered_by(), "site");
    // A declared prompt is the AI gateway's, whatever the Route says.
    let reply = weir.get("any", "/prompts/summarize").await;
    assert_eq!(reply.status, 405);
    let body: Value = serde_json::from_str(&reply.body).expect("the error is JSON");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn an_unknown_prompt_without_a_route_is_not_found() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![ai_model(
        "chat",
        vec![provider("primary", "OpenAI", &mock, "mock", 0)],
        json!({"prompts": [summarize_prompt("summarize")]}),
    )])
    .await;
    let unknown = call_prompt(&weir, CLIENT_KEY, "no-such-prompt", json!({}), &[]).await;
    let unknown = err(&unknown);
    assert_eq!(unknown["class"], "NotFoundError", "{unknown:#}");
    assert_eq!(unknown["status_code"], 404);
    assert_eq!(mock.requests().await.len(), 0);
}

#[tokio::test]
async fn a_model_whose_system_turn_uses_free_text_is_not_served_and_the_others_are() {
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let mut leaky = summarize_prompt("leaky-summary");
    leaky["system"] = json!("Summarise {{text}} for {{audience}}.");
    let (_config, weir) = gateway(vec![
        ai_model(
            "leaky",
            vec![provider("primary", "OpenAI", &mock, "mock", 0)],
            json!({"prompts": [leaky]}),
        ),
        ai_model(
            "chat",
            vec![provider("primary", "OpenAI", &mock, "mock", 0)],
            json!({"prompts": [summarize_prompt("summarize")]}),
        ),
    ])
    .await;

    eventually_within(
        Duration::from_secs(10),
        "the leaky model's problem is logged, naming the field",
        async || {
            let problems = weir.log_lines_with("AI model has problems");
            problems
                .iter()
                .any(|line| line.contains("ai/leaky") && line.contains("spec.prompts[0].system"))
                .then_some(())
                .ok_or_else(|| format!("{problems:#?}"))
        },
    )
    .await;
    let leaky_chat = sdk(&weir, "openai-chat", CLIENT_KEY, "leaky", &[]).await;
    assert_eq!(err(&leaky_chat)["code"], "model_not_found");
    let leaky_prompt = call_prompt(
        &weir,
        CLIENT_KEY,
        "leaky-summary",
        json!({"text": "t"}),
        &[],
    )
    .await;
    assert_eq!(err(&leaky_prompt)["status_code"], 404);
    let good = call_prompt(&weir, CLIENT_KEY, "summarize", json!({"text": "t"}), &[]).await;
    assert_eq!(ok(&good)["finish_reason"], "stop");
}

#[tokio::test]
async fn a_stream_in_flight_finishes_on_its_provider_while_the_model_moves_to_another() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let first = MockLlm::start("first", PROVIDER_KEY).await;
    let second = MockLlm::start("second", PROVIDER_KEY).await;
    // The first provider pauses after three words: the stream is surely in flight while the
    // model is edited.
    let (config, weir) = gateway(vec![ai_model(
        "chat",
        vec![provider(
            "first",
            "OpenAI",
            &first,
            "first+stall-after-3-3000",
            0,
        )],
        json!({}),
    )])
    .await;

    // A raw HTTP/1.1 stream, read as it arrives.
    let mut stream = tokio::net::TcpStream::connect(weir.proxy().address())
        .await
        .expect("Weir accepts connections");
    let body = json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "a long answer please"}]})
    .to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: ai\r\nauthorization: Bearer {CLIENT_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    while !String::from_utf8_lossy(&received).contains("tok3") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("the first words within 10 s")
            .unwrap();
        assert!(
            read > 0,
            "the stream ended early: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..read]);
    }

    // The model moves to the second provider; new requests go there.
    config.write(
        "models.yaml",
        &[ai_model(
            "chat",
            vec![provider("second", "OpenAI", &second, "second", 0)],
            json!({}),
        )],
    );
    weir_e2e::eventually("new requests reach the second provider", async || {
        let reply = weir
            .proxy()
            .request(http::Method::POST, "ai", "/v1/chat/completions")
            .header("authorization", &format!("Bearer {CLIENT_KEY}"))
            .body(r#"{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}"#)
            .send()
            .await;
        match serde_json::from_str::<Value>(&reply.body) {
            Ok(body) if body["model"] == "second" => Ok(()),
            _ => Err(reply.body),
        }
    })
    .await;
    let seen_before_the_end = String::from_utf8_lossy(&received).into_owned();
    assert!(
        !seen_before_the_end.contains("tok12"),
        "the stream had already finished before the edit: {seen_before_the_end}"
    );

    // The stream in flight finishes, whole, on the provider it started with.
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received))
        .await
        .expect("the stream ends")
        .unwrap();
    let received = String::from_utf8_lossy(&received);
    assert!(received.contains("tok12"), "{received}");
    assert!(received.contains("data: [DONE]"), "{received}");
    assert!(!received.contains("\"error\""), "{received}");
    assert!(received.contains("first+stall-after-3-3000"), "{received}");
    // (Probes sent before the edit took effect went to the first provider too.)
    assert_eq!(first.requests().await[0]["body"]["stream"], true);
    assert!(!second.requests().await.is_empty());
}

#[tokio::test]
async fn ai_keys_show_in_no_debug_log_page_metric_or_error_on_any_path() {
    const CLIENT_MARKER: &str = "AUDIT-client-key-93ab0c";
    const ROTATED_MARKER: &str = "AUDIT-rotated-client-key-41ff";
    const PRESENTED_MARKER: &str = "AUDIT-presented-unknown-5d2e";
    const PROVIDER_MARKER: &str = "sk-AUDIT-provider-7c1e";
    const ROTATED_PROVIDER_MARKER: &str = "sk-AUDIT-provider-rotated-2b9d";
    let mock = MockLlm::start("primary", PROVIDER_MARKER).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let config = ConfigDir::new();
    let keys = |client: &str, provider: &str| {
        vec![
            client_key("audited", client, json!({"tier": "free"})),
            provider_key("provider-key", provider),
        ]
    };
    config.write("keys.yaml", &keys(CLIENT_MARKER, PROVIDER_MARKER));
    let refused_after_one = json!({"quotas": [{"keys": {}, "requests": {"limit": 1, "per": "1h"}}],
        "prompts": [{"name": "echo", "user": "{{text}}",
            "variables": {"text": {"type": "string", "required": true}}}]});
    config.write(
        "models.yaml",
        &[
            ai_model(
                "chat",
                vec![provider("primary", "OpenAI", &mock, "mock", 0)],
                json!({}),
            ),
            ai_model(
                "limited",
                vec![provider("primary", "OpenAI", &mock, "mock", 0)],
                refused_after_one,
            ),
            // Connect errors, then a provider that refuses the credential.
            ai_model(
                "failing",
                vec![
                    json!({"name": "down", "type": "OpenAI", "model": "m",
                        "endpoint": {"url": closed_url},
                        "credentials": {"secretRef": {"name": "provider-key", "key": "apiKey"}}}),
                    provider("primary", "Anthropic", &mock, "mock+status-401", 1),
                ],
                json!({}),
            ),
        ],
    );
    let weir = Weir::start_with_env(&config, &[], &[("RUST_LOG", "debug")]).await;

    let mut answers = Vec::new();
    let mut call = async |key: &str, path: &str, body: Value| {
        let reply = weir
            .proxy()
            .request(http::Method::POST, "ai", path)
            .header("authorization", &format!("Bearer {key}"))
            .body(body.to_string())
            .send()
            .await;
        answers.push(format!(
            "{} {:?} {}",
            reply.status, reply.headers, reply.body
        ));
        reply.status
    };
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        call(CLIENT_MARKER, "/v1/chat/completions", chat("chat")).await,
        200
    );
    let stream =
        json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        call(CLIENT_MARKER, "/v1/chat/completions", stream).await,
        200
    );
    assert_eq!(
        call(PRESENTED_MARKER, "/v1/chat/completions", chat("chat")).await,
        401
    );
    assert_eq!(
        call(CLIENT_MARKER, "/v1/chat/completions", chat("failing")).await,
        401
    );
    let prompt = json!({"variables": {"text": "hello"}});
    assert_eq!(
        call(CLIENT_MARKER, "/prompts/echo", prompt.clone()).await,
        200
    );
    assert_eq!(call(CLIENT_MARKER, "/prompts/echo", prompt).await, 429);
    let messages =
        json!({"model": "chat", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(call(CLIENT_MARKER, "/v1/messages", messages).await, 200);

    // Both keys rotate: the old ones stop working, the new ones serve.
    config.write("keys.yaml", &keys(ROTATED_MARKER, ROTATED_PROVIDER_MARKER));
    let rotated = MockLlm::start("rotated", ROTATED_PROVIDER_MARKER).await;
    config.write(
        "models.yaml",
        &[ai_model(
            "chat",
            vec![provider("primary", "OpenAI", &rotated, "mock", 0)],
            json!({}),
        )],
    );
    weir_e2e::eventually("the rotated keys serve", async || {
        match call(ROTATED_MARKER, "/v1/chat/completions", chat("chat")).await {
            http::StatusCode::OK => Ok(()),
            status => Err(status.to_string()),
        }
    })
    .await;
    assert_eq!(
        call(CLIENT_MARKER, "/v1/chat/completions", chat("chat")).await,
        401
    );

    let debug = weir.debug_routes().await.to_string();
    let metrics = weir
        .admin()
        .request(http::Method::GET, "admin", "/metrics")
        .send()
        .await
        .body;
    let logs = weir.log_lines_with("").join("\n");
    assert!(logs.contains("DEBUG"), "the log is at debug level");
    let answers = answers.join("\n");
    for marker in [
        CLIENT_MARKER,
        ROTATED_MARKER,
        PRESENTED_MARKER,
        PROVIDER_MARKER,
        ROTATED_PROVIDER_MARKER,
    ] {
        for (place, text) in [
            ("/debug/routes", &debug),
            ("/metrics", &metrics),
            ("the log", &logs),
            ("an answer", &answers),
        ] {
            assert!(!text.contains(marker), "{place} shows {marker}");
        }
    }
}

#[tokio::test]
async fn retry_after_weights_and_hosts_shape_where_a_request_goes() {
    let limited = MockLlm::start("limited", PROVIDER_KEY).await;
    let heavy = MockLlm::start("heavy", PROVIDER_KEY).await;
    let light = MockLlm::start("light", PROVIDER_KEY).await;
    let backup = MockLlm::start("backup", PROVIDER_KEY).await;
    let weighted = |mock: &MockLlm, name: &str, weight: u32| {
        let mut entry = provider(name, "OpenAI", mock, name, 0);
        entry["weight"] = json!(weight);
        entry
    };
    let (_config, weir) = gateway(vec![
        ai_model(
            "short-wait",
            vec![
                provider(
                    "limited",
                    "OpenAI",
                    &limited,
                    "mock+status-429+retry-after-1",
                    0,
                ),
                provider("backup", "OpenAI", &backup, "backup", 1),
            ],
            json!({"fallback": {"honorRetryAfterUpTo": "2s"}}),
        ),
        ai_model(
            "long-wait",
            vec![
                provider(
                    "limited",
                    "OpenAI",
                    &limited,
                    "mock+status-429+retry-after-30",
                    0,
                ),
                provider("backup", "OpenAI", &backup, "backup", 1),
            ],
            json!({"fallback": {"honorRetryAfterUpTo": "2s"}}),
        ),
        ai_model(
            "weighted",
            vec![weighted(&heavy, "heavy", 3), weighted(&light, "light", 1)],
            json!({}),
        ),
        ai_model(
            "hosted",
            vec![provider("backup", "OpenAI", &backup, "backup", 0)],
            json!({"hosts": ["ai.example.com"]}),
        ),
    ])
    .await;
    let chat = async |host: &str, model: &str| {
        let reply = weir
            .proxy()
            .request(http::Method::POST, host, "/v1/chat/completions")
            .header("authorization", &format!("Bearer {CLIENT_KEY}"))
            .body(
                json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
                    .to_string(),
            )
            .send()
            .await;
        let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        (reply.status, body)
    };

    // A Retry-After within honorRetryAfterUpTo is waited out before the next provider; a
    // longer one is not waited for at all.
    let started = std::time::Instant::now();
    let (status, body) = chat("ai", "short-wait").await;
    assert_eq!(
        (status.as_u16(), body["model"].clone()),
        (200, json!("backup"))
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the 1 s Retry-After was not waited out"
    );
    let started = std::time::Instant::now();
    let (status, body) = chat("ai", "long-wait").await;
    assert_eq!(
        (status.as_u16(), body["model"].clone()),
        (200, json!("backup"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "a 30 s Retry-After was waited for"
    );

    // Equal priorities share by weight, 3:1 (random, so within a wide margin: ±5σ).
    for _ in 0..400 {
        assert_eq!(chat("ai", "weighted").await.0, 200);
    }
    let (to_heavy, to_light) = (heavy.requests().await.len(), light.requests().await.len());
    assert_eq!(to_heavy + to_light, 400);
    assert!(
        (250..=350).contains(&to_heavy),
        "heavy {to_heavy}, light {to_light}"
    );

    // A model with hosts is found only on them.
    assert_eq!(chat("ai.example.com", "hosted").await.0, 200);
    let (status, body) = chat("other.example.com", "hosted").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
}
