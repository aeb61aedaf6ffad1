//! Tokens counted and limited: accounting that matches the provider's count whether or not
//! the answer was streamed, and per-key quotas that hold under concurrency, in one process
//! (memory) and across two sharing a real `redis-server`.

use futures::future::join_all;
use serde_json::{Value, json};
use weir_e2e::{ConfigDir, MockLlm, RedisServer, Reply, Weir};

use crate::ai::{
    CLIENT_KEY, OTHER_CLIENT_KEY, PROVIDER_KEY, ai_model, client_key, err, gateway, ok, provider,
    provider_key, sdk,
};

const MAX_TOKENS: u64 = 20;

/// The chat request the quota tests send, raw.
fn chat_body() -> Value {
    json!({"model": "chat", "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": "count my tokens please"}]})
}

/// What Weir reserves for [`chat_body`]: its prompt estimate plus `max_tokens`.
fn one_reservation() -> u64 {
    weir_ai_wire::tokens::estimate_prompt_tokens(&chat_body()) + MAX_TOKENS
}

async fn chat(weir: &Weir, key: &str) -> Reply {
    weir.proxy()
        .request(http::Method::POST, "any", "/v1/chat/completions")
        .header("authorization", &format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(chat_body().to_string())
        .send()
        .await
}

fn total_tokens(reply: &Reply) -> u64 {
    let body: Value = serde_json::from_str(&reply.body).expect("a JSON answer");
    body["usage"]["total_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no usage in {body}"))
}

fn with_quota(mock: &MockLlm, quota: Value) -> Value {
    ai_model(
        "chat",
        vec![provider("primary", "OpenAI", mock, "mock", 0)],
        json!({"quotas": [quota]}),
    )
}

#[tokio::test]
async fn a_token_quota_holds_under_50_concurrent_requests_and_each_key_counts_on_its_own() {
    const LIMIT: u64 = 300;
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![with_quota(
        &mock,
        json!({"keys": {}, "tokens": {"limit": LIMIT, "per": "1h"}}),
    )])
    .await;

    let replies = join_all((0..50).map(|_| chat(&weir, CLIENT_KEY))).await;
    let admitted: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let refused = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(admitted.len() + refused, 50, "only 200 and 429 expected");
    assert!(
        refused > 0,
        "50 requests of ~{} tokens fit a limit of {LIMIT}",
        one_reservation()
    );
    let used: u64 = admitted.iter().map(|r| total_tokens(r)).sum();
    assert!(
        used <= LIMIT + one_reservation(),
        "{used} tokens used under a limit of {LIMIT}: more than one reservation ({}) over",
        one_reservation()
    );

    // Whatever the burst left, the key runs out; the other key, counted on its own, does not.
    let mut answered = used;
    let mut exhausted = false;
    for _ in 0..50 {
        let reply = chat(&weir, CLIENT_KEY).await;
        if reply.status == 429 {
            exhausted = true;
            break;
        }
        answered += total_tokens(&reply);
    }
    assert!(
        answered <= LIMIT + one_reservation(),
        "{answered} tokens answered"
    );
    assert!(exhausted, "the key never ran out of tokens");
    assert_eq!(chat(&weir, OTHER_CLIENT_KEY).await.status, 200);

    // The refusal as the SDKs see it: 429 in their dialect, with when to come back, and told
    // not to retry (the refusal is counted once per SDK call).
    let refusals_before = weir
        .metric(r#"weir_ai_requests_total{model="ai/chat",provider="",key="team-search",outcome="quota_refused"}"#)
        .await;
    let openai = sdk(&weir, "openai-chat", CLIENT_KEY, "chat", &[]).await;
    let openai = err(&openai);
    assert_eq!(openai["class"], "RateLimitError");
    assert_eq!(openai["status_code"], 429);
    assert_eq!(openai["code"], "rate_limit_exceeded");
    assert_eq!(openai["headers"]["x-should-retry"], "false");
    assert_eq!(openai["headers"]["x-ratelimit-remaining-tokens"], "0");
    let retry_after: u64 = openai["headers"]["retry-after"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let anthropic = sdk(&weir, "anthropic", CLIENT_KEY, "chat", &[]).await;
    let anthropic = err(&anthropic);
    assert_eq!(anthropic["status_code"], 429);
    assert_eq!(anthropic["body"]["error"]["type"], "rate_limit_error");
    let refusals_after = weir
        .metric(r#"weir_ai_requests_total{model="ai/chat",provider="",key="team-search",outcome="quota_refused"}"#)
        .await;
    assert_eq!(refusals_after - refusals_before, 2.0);

    // What was counted against the key is exactly what the provider reported.
    let mut counted = 0.0;
    for kind in ["input", "cached", "output"] {
        counted += weir
            .metric(&format!(
                r#"weir_ai_tokens_total{{model="ai/chat",provider="primary",key="team-search",type="{kind}"}}"#
            ))
            .await;
    }
    assert_eq!(counted, answered as f64);
}

#[tokio::test]
async fn two_weir_processes_share_one_quota_through_redis() {
    const LIMIT: usize = 10;
    let mut redis = RedisServer::start().await;
    let mock = MockLlm::start("primary", PROVIDER_KEY).await;
    let config = ConfigDir::new();
    config.write(
        "keys.yaml",
        &[
            client_key("team-search", CLIENT_KEY, json!({"tier": "free"})),
            client_key("team-other", OTHER_CLIENT_KEY, json!({"tier": "paid"})),
            provider_key("provider-key", PROVIDER_KEY),
        ],
    );
    config.write(
        "models.yaml",
        &[with_quota(
            &mock,
            json!({"keys": {"matchLabels": {"tier": "free"}},
                "requests": {"limit": LIMIT, "per": "1h"}}),
        )],
    );
    let url = redis.url();
    let admits = Weir::start_with_args(&config, &["--quota-store", &url]).await;
    let refuses = Weir::start_with_args(
        &config,
        &["--quota-store", &url, "--quota-store-down", "refuse"],
    )
    .await;

    // 30 at once, split between the two: exactly the limit is served between them.
    let replies = join_all((0..30).map(|i| {
        let weir = if i % 2 == 0 { &admits } else { &refuses };
        chat(weir, CLIENT_KEY)
    }))
    .await;
    let served = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        served,
        LIMIT,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(chat(&admits, CLIENT_KEY).await.status, 429);
    assert_eq!(chat(&refuses, CLIENT_KEY).await.status, 429);
    // A key no quota selects is not limited.
    assert_eq!(chat(&refuses, OTHER_CLIENT_KEY).await.status, 200);
    assert_eq!(mock.requests().await.len(), LIMIT + 1);

    // Redis goes away: each replica does what it was told, and says so.
    redis.stop();
    let admitted = chat(&admits, CLIENT_KEY).await;
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    let refused = chat(&refuses, CLIENT_KEY).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    let body: Value = serde_json::from_str(&refused.body).expect("a JSON error");
    assert_eq!(body["error"]["code"], "quota_store_unavailable");
    assert!(
        !refused.body.contains(&url),
        "the store's URL leaked: {}",
        refused.body
    );
    assert!(admits.metric("weir_ai_quota_store_errors_total").await >= 1.0);
    assert!(refuses.metric("weir_ai_quota_store_errors_total").await >= 1.0);
}

#[tokio::test]
async fn streamed_and_whole_answers_are_counted_alike_and_as_the_provider_counted() {
    let openai_mock = MockLlm::start("openai", PROVIDER_KEY).await;
    let anthropic_mock = MockLlm::start("anthropic", PROVIDER_KEY).await;
    let (_config, weir) = gateway(vec![
        ai_model(
            "via-openai",
            vec![provider("openai", "OpenAI", &openai_mock, "mock+cache", 0)],
            json!({}),
        ),
        ai_model(
            "via-anthropic",
            vec![provider(
                "anthropic",
                "Anthropic",
                &anthropic_mock,
                "mock+cache",
                0,
            )],
            json!({}),
        ),
    ])
    .await;

    for (model, provider) in [("via-openai", "openai"), ("via-anthropic", "anthropic")] {
        let series = |kind: &str| {
            format!(
                r#"weir_ai_tokens_total{{model="ai/{model}",provider="{provider}",key="team-search",type="{kind}"}}"#
            )
        };
        let mut seen = [0.0; 3];
        // What the last call added to the uncached prompt (cache writes included, as OpenAI's
        // usage can't tell them apart), cache-read and output counts.
        let mut delta = async || {
            let now = [
                weir.metric(&series("input")).await + weir.metric(&series("cache_write")).await,
                weir.metric(&series("cached")).await,
                weir.metric(&series("output")).await,
            ];
            let added = [now[0] - seen[0], now[1] - seen[1], now[2] - seen[2]];
            seen = now;
            added
        };
        for call in ["anthropic", "openai-chat"] {
            let whole = sdk(&weir, call, CLIENT_KEY, model, &[]).await;
            let usage = &ok(&whole)["usage"];
            // The usage the SDK read; where its dialect is the provider's, the provider's own.
            let reported = match call {
                "anthropic" => [
                    usage["input_tokens"].as_f64().unwrap()
                        + usage["cache_creation_input_tokens"].as_f64().unwrap_or(0.0),
                    usage["cache_read_input_tokens"].as_f64().unwrap_or(0.0),
                    usage["output_tokens"].as_f64().unwrap(),
                ],
                _ => {
                    let cached = usage["prompt_tokens_details"]["cached_tokens"]
                        .as_f64()
                        .unwrap_or(0.0);
                    [
                        usage["prompt_tokens"].as_f64().unwrap() - cached,
                        cached,
                        usage["completion_tokens"].as_f64().unwrap(),
                    ]
                }
            };
            assert!(
                reported[1] > 0.0,
                "{model}/{call}: the mock reports cached tokens: {usage}"
            );
            assert_eq!(
                delta().await,
                reported,
                "{model}/{call}: counted unlike reported"
            );
            // The same request streamed: counted exactly the same.
            let streamed = sdk(&weir, call, CLIENT_KEY, model, &["--stream"]).await;
            ok(&streamed);
            assert_eq!(
                delta().await,
                reported,
                "{model}/{call}: streamed counted unlike whole"
            );
        }
    }
}
