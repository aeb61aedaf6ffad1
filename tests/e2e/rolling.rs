//! Rolling restarts under load: Weir replicas replaced one by one while clients keep sending,
//! and what the clients lose.
//!
//! Behind a load balancer ([`Front`], which probes `/readyz` as kube-proxy or a cloud load
//! balancer does), the roll loses nothing: on SIGTERM a replica turns unready at once but goes
//! on accepting and serving for `--shutdown-delay`, closing keep-alive connections after their
//! response, so the balancer stops sending it connections and its clients move theirs to the
//! new replica; only then does it stop accepting and drain. The clients are hyper-util's
//! legacy client (what `reqwest` is built on), some with keep-alive, some opening a connection
//! per request; neither retries a request that was sent.
//!
//! With `--reuse-port`, a new Weir binds the address the old one listens on and the kernel
//! spreads new connections over both; the old one then leaves as above. Connections still
//! queued on its socket when it closes are reset by the kernel (unless
//! `net.ipv4.tcp_migrate_req` is 1), so there the losses are measured and printed, not promised
//! to be none.

use std::{net::SocketAddr, time::Duration};

use http::{Method, StatusCode};
use weir_e2e::{
    ConfigDir, Echo, Front, HttpClient, Load, Weir, eventually,
    load::{Sent, failures},
    manifests::{self, route},
};

/// How long a replica serves on after SIGTERM: ten probe periods of the front, so the front
/// has long stopped sending it connections when it stops accepting.
const SHUTDOWN_DELAY: &str = "1s";

/// Requests each phase of the roll waits for, so every client has sent many in it.
const PER_PHASE: usize = 300;

/// How long a phase may take (far more than it needs).
const PHASE_DEADLINE: Duration = Duration::from_secs(60);

/// Each request waits this long at the backend, so that some are in flight at every step.
const PATH: &str = "/?delay_ms=5";

/// Clients of each kind: keep-alive, and a new connection per request.
const CLIENTS_OF_EACH_KIND: usize = 4;

/// Two echo backends behind Service `echo`, routed to from `echo.local`.
async fn backends() -> (ConfigDir, Vec<Echo>) {
    let echoes = vec![Echo::start("a").await, Echo::start("b").await];
    let config = ConfigDir::new();
    let addresses: Vec<SocketAddr> = echoes.iter().map(Echo::address).collect();
    config.write(
        "service.yaml",
        &manifests::service_with_endpoints("echo", &addresses),
    );
    config.write(
        "route.yaml",
        &[route("echo")
            .host("echo.local")
            .prefix("/")
            .backend("echo")
            .into()],
    );
    (config, echoes)
}

/// A replica: Weir on `config`, leaving as a replica behind a balancer should.
async fn replica(config: &ConfigDir, more: &[&str]) -> Weir {
    let mut args = vec!["--shutdown-delay", SHUTDOWN_DELAY, "--drain-timeout", "10s"];
    args.extend_from_slice(more);
    Weir::start_with_args(config, &args).await
}

/// The load's clients, all sending to `address`.
fn clients(address: SocketAddr) -> Vec<HttpClient> {
    (0..CLIENTS_OF_EACH_KIND)
        .map(|_| HttpClient::new(address))
        .chain((0..CLIENTS_OF_EACH_KIND).map(|_| HttpClient::without_keep_alive(address)))
        .collect()
}

/// Requests the replica counted as answered 2xx on the route so far.
async fn served(weir: &Weir) -> f64 {
    weir.metric(r#"weir_requests_total{route="default/echo",status_class="2xx"}"#)
        .await
}

/// SIGTERMs `old`, sees it turn unready while it still serves, and waits for it to exit 0,
/// the load still running.
async fn retire(mut old: Weir) {
    old.terminate();
    eventually("/readyz answers 503 after SIGTERM", async || {
        let reply = old.admin().request(Method::GET, "admin", "/readyz");
        match reply.try_send().await?.status {
            StatusCode::SERVICE_UNAVAILABLE => Ok(()),
            status => Err(status.to_string()),
        }
    })
    .await;
    // Within the shutdown delay: unready, and still accepting and serving.
    let fresh = HttpClient::without_keep_alive(old.proxy().address());
    let reply = fresh.get("echo.local", "/").await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "served while leaving: {}",
        reply.body
    );
    let status = old.exit_status(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "the old replica exits 0: {status}");
}

fn report(test: &str, sent: &[Sent]) {
    let failed = failures(sent);
    eprintln!(
        "{test}: {} requests from {CLIENTS_OF_EACH_KIND} keep-alive and {CLIENTS_OF_EACH_KIND} \
         connection-per-request clients, {} failed",
        sent.len(),
        failed.len()
    );
    for failure in failed.iter().take(12) {
        let kind = if failure.client < CLIENTS_OF_EACH_KIND {
            "keep-alive"
        } else {
            "connection-per-request"
        };
        eprintln!(
            "  client {} ({kind}): {}",
            failure.client,
            failure.answer.as_ref().unwrap_err()
        );
    }
}

/// A full roll behind the balancer: A serves; B starts, A leaves; C starts, B leaves. Not one
/// request fails, and every replica served its part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_a_load_balancer_loses_no_request() {
    let (config, _echoes) = backends().await;
    let front = Front::start().await;
    let mut current = replica(&config, &[]).await;
    front.add(&current).await;
    let load = Load::start(clients(front.address()), "echo.local", PATH);
    load.wait_for_answers(PER_PHASE, PHASE_DEADLINE).await;

    let mut connections = Vec::new();
    for name in ["B", "C"] {
        let next = replica(&config, &[]).await;
        front.add(&next).await;
        load.wait_for_answers(PER_PHASE, PHASE_DEADLINE).await;
        assert!(
            front.connections_to(&next) > 0,
            "{name} got connections while both were ready"
        );
        let (old_connections, old_served) =
            (front.connections_to(&current), served(&current).await);
        assert!(old_served > 0.0, "the old replica served requests");
        connections.push(old_connections);
        let old = std::mem::replace(&mut current, next);
        let retiring = retire(old);
        // The load goes on while the old replica leaves and drains.
        let (_, ()) = tokio::join!(load.wait_for_answers(PER_PHASE, PHASE_DEADLINE), retiring);
        eprintln!(
            "roll to {name}: the old replica had {old_connections} connections and had served {old_served} requests when told to stop"
        );
        load.wait_for_answers(PER_PHASE, PHASE_DEADLINE).await;
    }
    let sent = load.stop().await;
    report("rolling restart behind a load balancer", &sent);
    let failed = failures(&sent);
    assert!(failed.is_empty(), "{} requests failed", failed.len());
    assert!(served(&current).await > 0.0, "the last replica serves");
}

/// Two Weirs on one port with `--reuse-port`: the old one leaves under load and the new one
/// takes all of it. Measured: requests lost to the kernel's resets when the old socket closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_a_shared_port_with_reuse_port_hands_the_load_over() {
    let (config, _echoes) = backends().await;
    let old = replica(&config, &["--reuse-port"]).await;
    let address = old.proxy().address().to_string();
    let new = replica(&config, &["--reuse-port", "--listen", &address]).await;
    assert_eq!(new.proxy().address(), old.proxy().address());

    let load = Load::start(clients(old.proxy().address()), "echo.local", PATH);
    load.wait_for_answers(PER_PHASE, PHASE_DEADLINE).await;
    let (old_served, new_served) = (served(&old).await, served(&new).await);
    assert!(
        old_served > 0.0 && new_served > 0.0,
        "the kernel spreads connections over both: {old_served} and {new_served}"
    );
    let (_, ()) = tokio::join!(
        load.wait_for_answers(PER_PHASE, PHASE_DEADLINE),
        retire(old)
    );
    let after_old_left = served(&new).await;
    load.wait_for_answers(PER_PHASE, PHASE_DEADLINE).await;
    let sent = load.stop().await;
    report("restart on a shared port (SO_REUSEPORT)", &sent);
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").unwrap_or_default();
    eprintln!("  net.ipv4.tcp_migrate_req = {}", migrate.trim());
    assert!(
        served(&new).await >= after_old_left + PER_PHASE as f64,
        "the new Weir serves all the load once the old one left"
    );
}
