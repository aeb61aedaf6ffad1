//! The end-to-end harness: Weir and its backends as real processes on loopback.
//!
//! A test builds its world from these parts: [`Echo`] backends (each a `weir-echo` process),
//! a [`ConfigDir`] of manifests written with the builders in [`manifests`], and a [`Weir`]
//! gateway reading that directory; [`World`] puts the usual arrangement together. Every
//! process listens on port 0 and every test has its own directory, so tests run concurrently
//! without clashing; every process is killed when the value that owns it is dropped, so a
//! failing test leaves nothing behind.
//!
//! Nothing here sleeps to wait for something to happen: waiting is [`eventually`], which polls
//! with a deadline and says what it last saw when the deadline passes.

pub mod binaries;
pub mod certs;
mod client;
pub mod cluster;
mod config_dir;
mod echo;
pub mod front;
mod gateway;
pub mod held;
pub mod load;
pub mod manifests;
pub mod mock_llm;
mod process;
pub mod python;
pub mod redis;
pub mod scripted;
pub mod test_host;
pub mod tls_client;
mod world;

use std::time::Duration;

pub use client::{HttpClient, Reply};
pub use config_dir::ConfigDir;
pub use echo::Echo;
pub use front::Front;
pub use gateway::Weir;
pub use held::HeldBackend;
pub use load::Load;
pub use mock_llm::MockLlm;
pub use process::run_to_exit;
pub use redis::RedisServer;
pub use scripted::{Behaviour, ScriptedBackend};
pub use world::{World, route_file};

/// How long a change to the configuration may take to show in routing.
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(5);

/// How often [`eventually`] probes.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Probes until `probe` returns `Ok`, and returns its value.
///
/// Panics after [`CHANGE_DEADLINE`], naming `what` was awaited and the last `Err` seen.
///
/// ```no_run
/// # async fn example(weir: &weir_e2e::Weir) {
/// weir_e2e::eventually("/api moves to b", async || {
///     let answered_by = weir.get("echo.local", "/api").await.answered_by();
///     if answered_by == "b" { Ok(()) } else { Err(answered_by) }
/// })
/// .await;
/// # }
/// ```
pub async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    eventually_within(CHANGE_DEADLINE, what, probe).await
}

/// [`eventually`] with a deadline of its own.
pub async fn eventually_within<T>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last_seen = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {within:?}; last seen: {last_seen}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
