//! Per-rule policies end to end: retries and their budget, timeouts around retries, rate
//! limits, load-balancing algorithms and outlier detection. Backends that must fail on cue,
//! or whose traffic is counted, are [`ScriptedBackend`]s; counts are taken at the backend.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use weir_e2e::{
    Behaviour, ConfigDir, Echo, HeldBackend, ScriptedBackend, Weir, eventually, eventually_within,
    manifests, manifests::route,
};

/// A Service `name` with `endpoints`, in a file of its own.
fn service(config: &ConfigDir, name: &str, endpoints: &[SocketAddr]) {
    config.write(
        &format!("service-{name}.yaml"),
        &manifests::service_with_endpoints(name, endpoints),
    );
}

/// An address nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn retry(attempts: u32, when: &[&str]) -> Value {
    json!({"attempts": attempts, "when": when, "backoff": {"base": "1ms", "max": "5ms"}})
}

#[tokio::test]
async fn a_retry_goes_to_another_endpoint_and_sends_the_same_body() {
    let failing = ScriptedBackend::start("failing", Behaviour::Status(503)).await;
    let good = ScriptedBackend::start("good", Behaviour::Answer).await;
    let config = ConfigDir::new();
    service(&config, "pair", &[failing.address(), good.address()]);
    config.write(
        "route.yaml",
        &[
            route("safe")
                .host("safe.local")
                .prefix("/")
                .backend("pair")
                .set("retry", retry(2, &["503"]))
                .into(),
            route("unsafe")
                .host("unsafe.local")
                .prefix("/")
                .backend("pair")
                .set("retry", {
                    let mut retry = retry(2, &["503"]);
                    retry["nonIdempotent"] = true.into();
                    retry
                })
                .into(),
        ],
    );
    let weir = Weir::start(&config).await;

    for _ in 0..10 {
        let reply = weir.get("safe.local", "/").await;
        assert_eq!(reply.answered_by(), "good", "{}", reply.body);
    }
    assert!(
        failing.requests() >= 5,
        "round-robin sent tries to the failing endpoint too"
    );

    // A POST is not idempotent: a 503 is the client's to see.
    let mut statuses = BTreeSet::new();
    for i in 0..10 {
        let reply = weir
            .proxy()
            .request(Method::POST, "safe.local", "/")
            .body(format!("order {i}"))
            .send()
            .await;
        statuses.insert(reply.status.as_u16());
    }
    assert_eq!(statuses, BTreeSet::from([200, 503]));

    // Unless the rule says otherwise; then the retry carries the same body.
    let before = good.bodies().len();
    for i in 0..10 {
        let reply = weir
            .proxy()
            .request(Method::POST, "unsafe.local", "/")
            .body(format!("payment {i}"))
            .send()
            .await;
        assert_eq!(reply.answered_by(), "good");
    }
    let bodies: Vec<String> = good.bodies()[before..]
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("payment {i}")).collect();
    assert_eq!(bodies, expected);
    assert!(
        weir.metric(r#"weir_retries_total{route="default/unsafe"}"#)
            .await
            >= 5.0
    );
}

#[tokio::test]
async fn connect_failures_and_resets_are_retried_as_the_rule_says() {
    let resetting = ScriptedBackend::start("resetting", Behaviour::Reset).await;
    let good = ScriptedBackend::start("good", Behaviour::Answer).await;
    let config = ConfigDir::new();
    service(&config, "refusing", &[closed_port(), good.address()]);
    service(&config, "resetting", &[resetting.address(), good.address()]);
    config.write(
        "route.yaml",
        &[
            // No `when`: connect failures and gateway errors.
            route("refused")
                .host("refused.local")
                .prefix("/")
                .backend("refusing")
                .set("retry", json!({"attempts": 1}))
                .into(),
            route("reset")
                .host("reset.local")
                .prefix("/")
                .backend("resetting")
                .set("retry", retry(1, &["reset"]))
                .into(),
            route("reset-not-retried")
                .host("strict.local")
                .prefix("/")
                .backend("resetting")
                .set("retry", retry(1, &["503"]))
                .into(),
        ],
    );
    let weir = Weir::start(&config).await;
    for _ in 0..6 {
        assert_eq!(weir.get("refused.local", "/").await.answered_by(), "good");
        // Nothing reached the refusing endpoint, so even a POST is safe to retry.
        let post = weir
            .proxy()
            .request(Method::POST, "refused.local", "/")
            .body("x")
            .send()
            .await;
        assert_eq!(post.answered_by(), "good");
        assert_eq!(weir.get("reset.local", "/").await.answered_by(), "good");
    }
    // A refused connection fails over to another endpoint within its try: no retry is spent.
    assert!(
        weir.metric(r#"weir_upstream_connect_failovers_total{route="default/refused"}"#)
            .await
            > 0.0
    );
    assert_eq!(
        weir.metric(r#"weir_retries_total{route="default/refused"}"#)
            .await,
        0.0
    );
    let statuses: BTreeSet<u16> = statuses_of(&weir, "strict.local", 6).await;
    assert!(
        statuses.contains(&502),
        "a reset not named in `when` reaches the client: {statuses:?}"
    );
}

async fn statuses_of(weir: &Weir, host: &str, n: usize) -> BTreeSet<u16> {
    let mut statuses = BTreeSet::new();
    for _ in 0..n {
        statuses.insert(weir.get(host, "/").await.status.as_u16());
    }
    statuses
}

/// Must show 3: under steady load against a backend that fails every request, the tries that
/// reach it stay within 1.2× the client's requests plus the budget's floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_holds_retries_to_a_fifth_of_requests_against_a_failing_backend() {
    let failing = ScriptedBackend::start("failing", Behaviour::Status(503)).await;
    let config = ConfigDir::new();
    service(&config, "failing", &[failing.address()]);
    config.write(
        "route.yaml",
        &[route("budget")
            .host("budget.local")
            .prefix("/")
            .backend("failing")
            .set("retry", {
                let mut retry = retry(3, &["503"]);
                retry["budget"] = json!({"percent": 20, "minPerSecond": 10});
                retry
            })
            .into()],
    );
    let weir = Weir::start(&config).await;
    let (clients, per_client) = (16, 250);
    let started = Instant::now();
    let load: Vec<_> = (0..clients)
        .map(|_| {
            let proxy = weir.proxy().clone();
            tokio::spawn(async move {
                for _ in 0..per_client {
                    let reply = proxy.get("budget.local", "/").await;
                    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
                }
            })
        })
        .collect();
    for client in load {
        client.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = (clients * per_client) as f64;
    let attempts = failing.requests() as f64;
    // The floor: 10 a second for each second the budget has existed — the load's seconds
    // rounded up, plus the second it was made in and one for the gateway's start.
    let floor = 10.0 * (seconds.ceil() + 2.0);
    eprintln!(
        "retry budget: {requests} requests, {attempts} upstream attempts ({:.3}×) in {seconds:.2}s",
        attempts / requests
    );
    assert!(
        attempts <= 1.2 * requests + floor,
        "{attempts} attempts for {requests} requests in {seconds:.2}s"
    );
    assert!(attempts > requests, "retries were made: {attempts}");
    assert!(
        weir.metric(r#"weir_retry_budget_exhausted_total{route="default/budget"}"#)
            .await
            > 0.0
    );
    assert_eq!(
        weir.metric(r#"weir_upstream_attempts_total{route="default/budget"}"#)
            .await,
        attempts
    );
}

#[tokio::test]
async fn the_request_timeout_bounds_every_try_together() {
    let echo = Echo::start("slow").await;
    let config = ConfigDir::new();
    service(&config, "slow", &[echo.address()]);
    config.write(
        "route.yaml",
        &[route("bounded")
            .host("t.local")
            .prefix("/")
            .backend("slow")
            .set(
                "timeouts",
                json!({"request": "300ms", "backendRequest": "100ms"}),
            )
            .set("retry", retry(10, &["reset"]))
            .into()],
    );
    let weir = Weir::start(&config).await;
    let reply = weir.get("t.local", "/?delay_ms=5000").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.body);
    assert!(
        weir.metric(r#"weir_retries_total{route="default/bounded"}"#)
            .await
            >= 1.0
    );
}

/// Must show 5: `requests + burst` pass, the rest get 429 with the headers; an unrelated
/// table swap keeps the bucket; keys count apart; a rule that goes takes its bucket along.
#[tokio::test]
async fn a_rate_limit_passes_its_quota_and_burst_then_answers_429() {
    let world = weir_e2e::World::start(
        &["a"],
        [route("limited")
            .host("rl.local")
            .prefix("/")
            .backend("a")
            .set("rateLimit", json!({"requests": 5, "per": "1m", "burst": 3}))
            .rule()
            .prefix("/per-key")
            .backend("a")
            .set(
                "rateLimit",
                json!({"requests": 2, "per": "1m", "key": {"header": "x-api-key"}}),
            )],
    )
    .await;
    let weir = &world.weir;
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(weir.get("rl.local", "/").await.status.as_u16());
        }
        statuses
    };
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 429, 429]);
    let refused = weir.get("rl.local", "/").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=12).contains(&retry_after),
        "one token every 12s: {retry_after}"
    );
    assert_eq!(refused.headers["ratelimit-policy"], "\"default\";q=8;w=60");
    assert_eq!(
        refused.headers["ratelimit"].to_str().unwrap(),
        format!("\"default\";r=0;t={retry_after}")
    );

    // Another Route changes: a new table, the same bucket.
    let generation = weir.debug_routes().await["generation"].as_u64().unwrap();
    world.write_route(route("other").host("other.local").prefix("/").backend("a"));
    eventually("the new table is live", async || {
        let now = weir.debug_routes().await["generation"].as_u64().unwrap();
        if now > generation {
            Ok(())
        } else {
            Err(format!("generation {now}"))
        }
    })
    .await;
    assert_eq!(
        weir.get("rl.local", "/").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Keyed by header: each key has its own bucket.
    let with_key = async |key: &str| {
        weir.proxy()
            .request(Method::GET, "rl.local", "/per-key")
            .header("x-api-key", key)
            .send()
            .await
            .status
            .as_u16()
    };
    let alice: Vec<u16> = [
        with_key("alice").await,
        with_key("alice").await,
        with_key("alice").await,
    ]
    .into();
    assert_eq!(alice, [200, 200, 429]);
    assert_eq!(with_key("bob").await, 200);
    assert!(
        weir.metric(r#"weir_rate_limited_total{route="default/limited"}"#)
            .await
            >= 4.0
    );

    // The rule goes, and comes back: a new bucket.
    world.remove_route("limited");
    eventually("the route is gone", async || {
        match weir.get("rl.local", "/").await.status {
            StatusCode::NOT_FOUND => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    world.write_route(
        route("limited")
            .host("rl.local")
            .prefix("/")
            .backend("a")
            .set("rateLimit", json!({"requests": 5, "per": "1m", "burst": 3})),
    );
    eventually("the route is back with a full bucket", async || match weir
        .get("rl.local", "/")
        .await
        .status
    {
        StatusCode::OK => Ok(()),
        other => Err(other.to_string()),
    })
    .await;
}

/// Who answered `n` requests for `host`, each with `header` set to its value for that request.
async fn tally(weir: &Weir, host: &str, n: usize) -> BTreeMap<String, usize> {
    let mut answered_by = BTreeMap::new();
    for _ in 0..n {
        *answered_by
            .entry(weir.get(host, "/").await.answered_by())
            .or_default() += 1;
    }
    answered_by
}

#[tokio::test]
async fn least_request_sends_new_requests_away_from_the_busy_endpoint() {
    let mut busy = HeldBackend::start().await;
    let idle = Echo::start("idle").await;
    let config = ConfigDir::new();
    service(&config, "pair", &[busy.address(), idle.address()]);
    config.write(
        "route.yaml",
        &[route("lr")
            .host("lr.local")
            .prefix("/")
            .backend("pair")
            .set("loadBalancer", json!({"type": "LeastRequest"}))
            .into()],
    );
    let weir = Weir::start(&config).await;
    // Requests until one is held by the busy endpoint: it stays in flight there.
    let mut held = Vec::new();
    let arrived = loop {
        let proxy = weir.proxy().clone();
        held.push(tokio::spawn(
            async move { proxy.get("lr.local", "/").await },
        ));
        tokio::select! {
            path = busy.next_arrival(Duration::from_secs(10)) => break path,
            _ = tokio::time::sleep(Duration::from_millis(50)), if held.len() < 40 => {}
        }
    };
    assert_eq!(arrived, "/");
    // Two distinct endpoints are drawn for each pick, and the idle one always has fewer.
    assert_eq!(
        tally(&weir, "lr.local", 100).await,
        BTreeMap::from([("idle".to_owned(), 100)])
    );
    busy.release();
    for request in held {
        assert_eq!(request.await.unwrap().status, StatusCode::OK);
    }
}

#[tokio::test]
async fn random_balancing_follows_the_weights() {
    let world = weir_e2e::World::start(
        &["a", "b"],
        [route("random")
            .host("rand.local")
            .prefix("/")
            .weighted_backend("a", 3)
            .weighted_backend("b", 1)
            .set("loadBalancer", json!({"type": "Random"}))],
    )
    .await;
    let answered_by = tally(&world.weir, "rand.local", 1000).await;
    let a = answered_by.get("a").copied().unwrap_or_default();
    assert_eq!(a + answered_by.get("b").copied().unwrap_or_default(), 1000);
    // 1000 draws at p = 0.75: a standard deviation of 1.4 points, so ±6 is over four.
    assert!((690..=810).contains(&a), "{answered_by:?}");
}

/// `n` echo backends named `e0`, `e1`, … behind one Service.
async fn echoes(n: usize) -> Vec<Echo> {
    let mut echoes = Vec::new();
    for i in 0..n {
        echoes.push(Echo::start(&format!("e{i}")).await);
    }
    echoes
}

/// Which endpoint each of `users` is sent to, by the `x-user` header.
async fn owners(weir: &Weir, users: &[String]) -> Vec<String> {
    let mut owners = Vec::new();
    for user in users {
        let reply = weir
            .proxy()
            .request(Method::GET, "ch.local", "/")
            .header("x-user", user)
            .send()
            .await;
        owners.push(reply.answered_by());
    }
    owners
}

/// Keys keep their endpoint; adding a fourth endpoint moves about a quarter of them, all to it.
#[tokio::test]
async fn consistent_hashing_by_header_keeps_keys_and_moves_few_when_an_endpoint_joins() {
    let mut backends = echoes(4).await;
    let fourth = backends.pop().unwrap();
    let addresses: Vec<SocketAddr> = backends.iter().map(Echo::address).collect();
    let config = ConfigDir::new();
    service(&config, "ring", &addresses);
    config.write(
        "route.yaml",
        &[route("ch")
            .host("ch.local")
            .prefix("/")
            .backend("ring")
            .set(
                "loadBalancer",
                json!({"type": "ConsistentHash", "consistentHash": {"header": "x-user"}}),
            )
            .into()],
    );
    let weir = Weir::start(&config).await;
    let users: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let before = owners(&weir, &users).await;
    assert_eq!(
        before,
        owners(&weir, &users).await,
        "every key keeps its endpoint"
    );
    let spread: BTreeSet<&String> = before.iter().collect();
    assert_eq!(
        spread.len(),
        3,
        "keys spread over every endpoint: {spread:?}"
    );

    let mut grown = addresses.clone();
    grown.push(fourth.address());
    service(&config, "ring", &grown);
    eventually("the fourth endpoint gets keys", async || {
        let now = owners(&weir, &users[..40]).await;
        if now.iter().any(|o| o == "e3") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    let after = owners(&weir, &users).await;
    let moved: Vec<(&String, &String)> =
        before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!(
        moved.iter().all(|(_, to)| *to == "e3"),
        "keys move only to the new endpoint: {moved:?}"
    );
    let share = moved.len() as f64 / users.len() as f64;
    assert!(
        (0.1..=0.4).contains(&share),
        "about a quarter of the keys move: {share}"
    );
}

#[tokio::test]
async fn consistent_hashing_by_cookie_sets_one_and_sticks_to_it() {
    let backends = echoes(3).await;
    let config = ConfigDir::new();
    service(
        &config,
        "ring",
        &backends.iter().map(Echo::address).collect::<Vec<_>>(),
    );
    config.write(
        "route.yaml",
        &[
            route("cookie")
                .host("cookie.local")
                .prefix("/")
                .backend("ring")
                .set("loadBalancer", json!({"type": "ConsistentHash", "consistentHash": {"cookie": {"name": "sid", "ttl": "1h"}}}))
                .into(),
            route("source")
                .host("source.local")
                .prefix("/")
                .backend("ring")
                .set("loadBalancer", json!({"type": "ConsistentHash", "consistentHash": {"sourceIP": {}}}))
                .into(),
        ],
    );
    let weir = Weir::start(&config).await;
    let mut sessions = BTreeSet::new();
    for _ in 0..20 {
        let first = weir.get("cookie.local", "/").await;
        let set_cookie = first.headers["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            set_cookie.ends_with("; Path=/; HttpOnly; Max-Age=3600"),
            "{set_cookie}"
        );
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let owner = first.answered_by();
        for _ in 0..5 {
            let again = weir
                .proxy()
                .request(Method::GET, "cookie.local", "/")
                .header("cookie", &format!("theme=dark; {cookie}"))
                .send()
                .await;
            assert_eq!(again.answered_by(), owner, "{cookie} sticks");
            assert!(
                !again.headers.contains_key("set-cookie"),
                "a client with the cookie keeps it"
            );
        }
        sessions.insert(owner);
    }
    assert!(sessions.len() >= 2, "new sessions spread: {sessions:?}");
    let by_source = tally(&weir, "source.local", 30).await;
    assert_eq!(
        by_source.len(),
        1,
        "one client address, one endpoint: {by_source:?}"
    );
}

/// Must show 4: one of three endpoints starts failing; it is ejected after exactly its error
/// count, gets nothing while ejected (visible in /debug/routes and metrics), and is sent
/// traffic again once the ejection time is up.
#[tokio::test]
async fn outlier_detection_ejects_a_failing_endpoint_and_brings_it_back() {
    let backends = [
        ScriptedBackend::start("s0", Behaviour::Answer).await,
        ScriptedBackend::start("s1", Behaviour::Answer).await,
        ScriptedBackend::start("s2", Behaviour::Answer).await,
    ];
    let config = ConfigDir::new();
    service(
        &config,
        "trio",
        &backends
            .iter()
            .map(ScriptedBackend::address)
            .collect::<Vec<_>>(),
    );
    config.write(
        "route.yaml",
        &[route("od")
            .host("od.local")
            .prefix("/")
            .backend("trio")
            .set(
                "outlierDetection",
                json!({"consecutiveErrors": 3, "interval": "10s", "baseEjectionTime": "3s", "maxEjectionPercent": 50}),
            )
            .into()],
    );
    let weir = Weir::start(&config).await;
    assert_eq!(tally(&weir, "od.local", 30).await.len(), 3);

    let sick = &backends[1];
    sick.behave(Behaviour::Status(500));
    let before = sick.requests();
    let mut failures = 0;
    while failures < 3 {
        if weir.get("od.local", "/").await.status == StatusCode::INTERNAL_SERVER_ERROR {
            failures += 1;
        }
    }
    let ejected_at = Instant::now();
    assert_eq!(sick.requests() - before, 3);
    // While ejected (3s), nothing reaches it: every answer is a healthy endpoint's.
    let during = tally(&weir, "od.local", 30).await;
    assert_eq!(
        sick.requests() - before,
        3,
        "no request while ejected: {during:?}"
    );
    assert!(!during.contains_key("status 500"), "{during:?}");
    assert_eq!(
        weir.metric(r#"weir_outlier_ejections_total{route="default/od"}"#)
            .await,
        1.0
    );

    // Healthy again; after its ejection time it is sent traffic again.
    sick.behave(Behaviour::Answer);
    eventually_within(
        Duration::from_secs(10),
        "the endpoint comes back",
        async || {
            let answered = weir.get("od.local", "/").await.answered_by();
            if answered == "s1" {
                Ok(())
            } else {
                Err(answered)
            }
        },
    )
    .await;
    assert!(
        ejected_at.elapsed() >= Duration::from_millis(2900),
        "back only after its ejection time: {:?}",
        ejected_at.elapsed()
    );
    let view = weir.debug_routes().await;
    let health = &view["routes"][0]["rules"][0]["backends"][0]["health"];
    assert!(
        health
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["ejected"] == false),
        "{health}"
    );
    assert_eq!(
        health
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["ejections"].as_u64().unwrap())
            .sum::<u64>(),
        1,
        "{health}"
    );
}

/// The ejection shows in /debug/routes while it lasts.
#[tokio::test]
async fn an_ejected_endpoint_shows_in_debug_routes() {
    let healthy = ScriptedBackend::start("healthy", Behaviour::Answer).await;
    let sick = ScriptedBackend::start("sick", Behaviour::Status(502)).await;
    let config = ConfigDir::new();
    service(&config, "pair", &[healthy.address(), sick.address()]);
    config.write(
        "route.yaml",
        &[route("od")
            .host("od.local")
            .prefix("/")
            .backend("pair")
            .set(
                "outlierDetection",
                json!({"consecutiveErrors": 2, "baseEjectionTime": "1h", "maxEjectionPercent": 50}),
            )
            .into()],
    );
    let weir = Weir::start(&config).await;
    for _ in 0..4 {
        weir.get("od.local", "/").await;
    }
    let view = weir.debug_routes().await;
    let health = view["routes"][0]["rules"][0]["backends"][0]["health"].clone();
    let by_endpoint: BTreeMap<String, bool> = health
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["endpoint"].as_str().unwrap().to_owned(),
                h["ejected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_endpoint,
        BTreeMap::from([
            (healthy.address().to_string(), false),
            (sick.address().to_string(), true)
        ])
    );
    let left = health
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["ejected"] == true)
        .unwrap()["ejected_for"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(left.starts_with("59m") || left.starts_with("1h"), "{left}");
    assert_eq!(
        tally(&weir, "od.local", 10).await,
        BTreeMap::from([("healthy".to_owned(), 10)])
    );
}

/// Invalid policy values are conditions on their Route, with the field; the rest serve.
#[tokio::test]
async fn invalid_filters_and_policies_are_reported_with_their_field_and_others_keep_serving() {
    let world = weir_e2e::World::start(
        &["a"],
        [
            route("good").host("good.local").prefix("/").backend("a"),
            route("bad-regex")
                .host("bad.local")
                .prefix("/")
                .header_regex("x-user", "([unclosed")
                .backend("a"),
            route("bad-percent")
                .host("bad.local")
                .prefix("/p")
                .filter(json!({"type": "RequestMirror", "requestMirror": {"backend": {"service": {"name": "a", "port": manifests::SERVICE_PORT}}, "percent": 101}}))
                .backend("a"),
            route("unknown-filter")
                .host("bad.local")
                .prefix("/u")
                .filter(json!({"type": "Teleport"}))
                .backend("a"),
            route("mirror-nowhere")
                .host("mirror.local")
                .prefix("/")
                .filter(json!({"type": "RequestMirror", "requestMirror": {"backend": {"service": {"name": "ghost", "port": manifests::SERVICE_PORT}}}}))
                .backend("a"),
        ],
    )
    .await;
    let weir = &world.weir;
    assert_eq!(weir.get("good.local", "/").await.answered_by(), "a");
    let view = weir.debug_routes().await;
    let report = |name: &str| -> Value {
        view["reports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"]["name"] == name)
            .unwrap_or_else(|| panic!("no report for {name}: {view}"))
            .clone()
    };
    let bad_regex = report("bad-regex");
    assert_eq!(bad_regex["accepted"], false, "{bad_regex}");
    assert!(
        bad_regex["message"]
            .as_str()
            .unwrap()
            .contains("spec.rules[0].matches[0].headers[0].value"),
        "{bad_regex}"
    );
    let bad_percent = report("bad-percent");
    assert_eq!(bad_percent["accepted"], false);
    assert!(
        bad_percent["message"]
            .as_str()
            .unwrap()
            .contains("spec.rules[0].filters[0].requestMirror.percent"),
        "{bad_percent}"
    );
    let unknown = report("unknown-filter");
    assert_eq!(unknown["accepted"], false);
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("spec.rules[0].filters[0].type"),
        "{unknown}"
    );
    let nowhere = report("mirror-nowhere");
    assert_eq!(nowhere["resolved_refs"], false, "{nowhere}");
    assert_eq!(
        nowhere["resolved_refs_reason"], "BackendNotFound",
        "{nowhere}"
    );
    assert!(
        nowhere["message"].as_str().unwrap().contains("ghost"),
        "{nowhere}"
    );
}
