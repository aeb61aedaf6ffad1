//! Backend death under load: one of three endpoints is killed (SIGKILL, its connections reset)
//! while several keep-alive clients send requests through Weir. What fails, and for how long,
//! depends on the rule's policy:
//! - none: the requests in flight on the killed endpoint fail (its connections are reset under
//!   them); a request the balancer sends there afterwards finds its connection refused before
//!   anything was sent, and Weir sends it to another endpoint, so nothing else fails, before
//!   or after the endpoint leaves the Service (in a cluster, when its EndpointSlice is
//!   updated; here, when the test rewrites it);
//! - `outlierDetection`: the failures stop once the endpoint is ejected, a few failures later;
//! - `retry` on connect failures and resets: no client sees a failure at all.
//!
//! Each test prints what the load saw (requests, failures and what they were) to stderr.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration, time::Instant};

use serde_json::{Value, json};
use weir_e2e::{
    ConfigDir, Echo, HttpClient, Load, Weir, eventually,
    load::{Sent, failures},
    manifests::{self, route},
};

/// Concurrent keep-alive clients: the most requests that can be in flight at once, on any
/// endpoint.
const CLIENTS: usize = 8;

/// Each request waits this long at the backend, so that some are in flight at the kill.
const PATH: &str = "/?delay_ms=20";

/// Requests answered after each step before the next: enough for every client to have sent
/// many, and for the balancer to have picked the killed endpoint many times over.
const OBSERVED: usize = 600;

/// How long the load may take to answer [`OBSERVED`] requests (far more than it needs).
const LOAD_DEADLINE: Duration = Duration::from_secs(60);

/// Three echo backends behind Service `trio`, a Route to it with `policy` set on its rule,
/// and a gateway; the load is running and every backend has answered.
struct Trio {
    config: ConfigDir,
    backends: Vec<Echo>,
    weir: Weir,
    load: Load,
}

impl Trio {
    async fn start(policy: &[(&str, Value)]) -> Self {
        let mut backends = Vec::new();
        for name in ["e0", "e1", "e2"] {
            backends.push(Echo::start(name).await);
        }
        let config = ConfigDir::new();
        let addresses: Vec<SocketAddr> = backends.iter().map(Echo::address).collect();
        config.write(
            "service.yaml",
            &manifests::service_with_endpoints("trio", &addresses),
        );
        let mut rule = route("trio").host("trio.local").prefix("/").backend("trio");
        for (field, value) in policy {
            rule = rule.set(field, value.clone());
        }
        config.write("route.yaml", &[rule.into()]);
        let weir = Weir::start(&config).await;
        let clients = (0..CLIENTS)
            .map(|_| HttpClient::new(weir.proxy().address()))
            .collect();
        let load = Load::start(clients, "trio.local", PATH);
        load.wait_for_answers(OBSERVED, LOAD_DEADLINE).await;
        Self {
            config,
            backends,
            weir,
            load,
        }
    }

    /// Kills `e1`; returns when.
    fn kill_one(&self) -> Instant {
        self.backends[1].kill();
        Instant::now()
    }

    async fn observe(&self) {
        self.load.wait_for_answers(OBSERVED, LOAD_DEADLINE).await;
    }

    /// Stops the load and prints what it saw.
    async fn finish(self, test: &str, killed_at: Instant) -> Vec<Sent> {
        let Trio { load, .. } = self;
        let sent = load.stop().await;
        report(test, &sent, killed_at);
        sent
    }
}

/// Prints the load's figures: requests, who answered, and the failures (the first few listed,
/// with when each started relative to the kill).
fn report(test: &str, sent: &[Sent], killed_at: Instant) {
    let mut answered_by: BTreeMap<&str, usize> = BTreeMap::new();
    for request in sent {
        if let Ok(by) = &request.answer {
            *answered_by.entry(by).or_default() += 1;
        }
    }
    let failed = failures(sent);
    eprintln!(
        "{test}: {} requests from {CLIENTS} keep-alive clients, {} failed; answered by {answered_by:?}",
        sent.len(),
        failed.len()
    );
    const LISTED: usize = 12;
    if failed.len() > LISTED {
        eprintln!("  the first {LISTED}:");
    }
    for failure in failed.iter().take(LISTED) {
        eprintln!(
            "  client {} started {:+.1}ms from the kill: {}",
            failure.client,
            millis_from(killed_at, failure.started),
            failure.answer.as_ref().unwrap_err()
        );
    }
}

/// `at` relative to `origin`, in milliseconds (negative: before).
fn millis_from(origin: Instant, at: Instant) -> f64 {
    if at >= origin {
        at.duration_since(origin).as_secs_f64() * 1000.0
    } else {
        -(origin.duration_since(at).as_secs_f64() * 1000.0)
    }
}

/// Every failure is Weir's 502, an answer, never a dropped connection or a hang.
fn assert_all_bad_gateway(failed: &[&Sent]) {
    for failure in failed {
        let answer = failure.answer.as_ref().unwrap_err();
        assert!(answer.starts_with("502"), "not a 502: {answer}");
    }
}

/// Without a policy, the kill fails the requests in flight on the killed endpoint and no
/// other: every request sent after them that the balancer picks the dead endpoint for is
/// refused a connection, and goes to another endpoint. Once Weir's table no longer has the
/// endpoint, it is not even tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_a_killed_endpoint_fails_only_the_requests_in_flight_on_it() {
    let trio = Trio::start(&[]).await;
    let killed_at = trio.kill_one();
    trio.observe().await;
    let failovers = r#"weir_upstream_connect_failovers_total{route="default/trio"}"#;
    let failovers_before_removal = trio.weir.metric(failovers).await;

    // The Service's owner (the EndpointSlice controller, in a cluster) removes the endpoint.
    let dead = trio.backends[1].address().to_string();
    let alive: Vec<SocketAddr> = [0, 2].map(|i| trio.backends[i].address()).into();
    trio.config.write(
        "service.yaml",
        &manifests::service_with_endpoints("trio", &alive),
    );
    eventually("the live table drops the killed endpoint", async || {
        if trio.weir.debug_routes().await.to_string().contains(&dead) {
            Err("still listed".into())
        } else {
            Ok(())
        }
    })
    .await;
    let removed_at = Instant::now();
    let failovers_at_removal = trio.weir.metric(failovers).await;
    trio.observe().await;
    let failovers_after_removal = trio.weir.metric(failovers).await - failovers_at_removal;

    let sent = trio
        .finish("no policy (kill, then removal)", killed_at)
        .await;
    let failed = failures(&sent);
    assert_all_bad_gateway(&failed);
    // In flight at the kill: begun before it, not ended by then.
    let in_flight = sent
        .iter()
        .filter(|s| s.started < killed_at && s.ended >= killed_at)
        .count();
    let begun_after: Vec<_> = failed.iter().filter(|f| f.started >= killed_at).collect();
    eprintln!(
        "  {} failed: {} begun before the kill ({in_flight} requests were in flight then), {} \
         after it; {failovers_before_removal} requests failed over to another endpoint between \
         the kill and the removal ({:.0}ms), {failovers_after_removal} after",
        failed.len(),
        failed.len() - begun_after.len(),
        begun_after.len(),
        removed_at.duration_since(killed_at).as_secs_f64() * 1000.0
    );
    assert!(
        failed.len() <= CLIENTS,
        "{} failures: more than the {CLIENTS} requests that can be in flight at the kill",
        failed.len()
    );
    assert!(
        begun_after.is_empty(),
        "requests begun after the kill failed: {begun_after:?}"
    );
    assert!(
        failovers_before_removal > 0.0,
        "the balancer picked the killed endpoint, and its requests went elsewhere"
    );
    assert_eq!(
        failovers_after_removal, 0.0,
        "an endpoint that left the Service is not tried"
    );
}

/// With outlier detection, the failures are the requests in flight on the killed endpoint
/// and those sent to it before it was ejected: at most one per client plus the run that
/// ejects it. None after the ejection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_outlier_detection_a_killed_endpoint_fails_only_until_it_is_ejected() {
    const CONSECUTIVE_ERRORS: usize = 3;
    let trio = Trio::start(&[(
        "outlierDetection",
        json!({"consecutiveErrors": CONSECUTIVE_ERRORS, "interval": "10s", "baseEjectionTime": "5m", "maxEjectionPercent": 50}),
    )])
    .await;
    let killed_at = trio.kill_one();
    let ejections = r#"weir_outlier_ejections_total{route="default/trio"}"#;
    eventually("the killed endpoint is ejected", async || {
        match trio.weir.metric(ejections).await {
            1.0 => Ok(()),
            other => Err(format!("{other} ejections")),
        }
    })
    .await;
    let ejected_seen_at = Instant::now();
    trio.observe().await;

    let sent = trio.finish("outlier detection", killed_at).await;
    let failed = failures(&sent);
    assert_all_bad_gateway(&failed);
    assert!(
        failed.len() <= CLIENTS + CONSECUTIVE_ERRORS,
        "{} failures: more than the {CLIENTS} requests that can be in flight plus the \
         {CONSECUTIVE_ERRORS} that eject",
        failed.len()
    );
    assert!(!failed.is_empty(), "the kill reset the requests in flight");
    let late: Vec<_> = failed
        .iter()
        .filter(|f| f.started >= ejected_seen_at)
        .collect();
    assert!(late.is_empty(), "failures after the ejection: {late:?}");
}

/// With retries on connect failures and resets, the kill costs no client a request: a reset
/// in flight is tried again on another endpoint, and a refused connection fails over to one
/// within its try, costing no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_retries_a_killed_endpoint_fails_no_request() {
    let trio = Trio::start(&[(
        "retry",
        json!({"attempts": 2, "when": ["connect-failure", "reset"], "backoff": {"base": "1ms", "max": "5ms"}}),
    )])
    .await;
    let killed_at = trio.kill_one();
    trio.observe().await;
    let retries = trio
        .weir
        .metric(r#"weir_retries_total{route="default/trio"}"#)
        .await;
    let failovers = trio
        .weir
        .metric(r#"weir_upstream_connect_failovers_total{route="default/trio"}"#)
        .await;
    let sent = trio.finish("retries", killed_at).await;
    eprintln!("  {retries} retries, {failovers} connect failovers");
    let failed = failures(&sent);
    assert!(failed.is_empty(), "{} requests failed", failed.len());
    assert!(retries > 0.0, "the requests reset in flight were retried");
    assert!(
        failovers > 0.0,
        "the killed endpoint was picked, and its refused connections failed over"
    );
}
