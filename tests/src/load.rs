//! Steady load for tests that do something to the world while it is being served — kill a
//! backend, restart the gateway — and then account for every request.
//!
//! Each client is a task of its own sending one request after another (a closed loop, as a
//! user's client does) until the load is stopped, and every request is recorded: when it
//! started and ended, and what came back. The clients are [`HttpClient`]s, each with a pool of
//! its own, keep-alive or not, so the mix of connection behaviours is the test's to choose.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use http::Method;
use tokio::task::JoinHandle;

use crate::{HttpClient, eventually_within};

/// One request of the load and what it got.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Which client sent it (its index in the list the load was started with).
    pub client: usize,
    pub started: Instant,
    pub ended: Instant,
    /// `Ok(who answered)` for a 2xx echo answer ([`crate::Reply::answered_by`]); `Err` says
    /// what came instead: another status and its body, or why no answer came.
    pub answer: Result<String, String>,
}

/// Clients sending requests until stopped. Dropping it without [`Load::stop`] ends them too.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts one task per client, each sending `GET path` with `Host: host` in a loop.
    pub fn start(clients: Vec<HttpClient>, host: &str, path: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let clients = clients
            .into_iter()
            .enumerate()
            .map(|(index, client)| {
                let (stop, sent) = (stop.clone(), sent.clone());
                let (host, path) = (host.to_owned(), path.to_owned());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let reply = client.request(Method::GET, &host, &path).try_send().await;
                        let answer = match reply {
                            Ok(reply) if reply.status.is_success() => Ok(reply.answered_by()),
                            Ok(reply) => Err(format!("{}: {}", reply.status, reply.body.trim())),
                            Err(error) => Err(error),
                        };
                        let ended = Instant::now();
                        lock(&sent).push(Sent {
                            client: index,
                            started,
                            ended,
                            answer,
                        });
                    }
                })
            })
            .collect();
        Self {
            stop,
            sent,
            clients,
        }
    }

    /// Requests answered (2xx) so far.
    pub fn answered(&self) -> usize {
        lock(&self.sent).iter().filter(|s| s.answer.is_ok()).count()
    }

    /// Waits until `more` requests beyond those answered now have been answered; panics after
    /// `within`, which a load that stalls or only fails would pass.
    pub async fn wait_for_answers(&self, more: usize, within: Duration) {
        let target = self.answered() + more;
        eventually_within(within, &format!("{more} more answers"), async || {
            let answered = self.answered();
            if answered >= target {
                Ok(())
            } else {
                Err(format!("{answered} of {target}"))
            }
        })
        .await;
    }

    /// Stops every client after its request in flight, and returns every request sent.
    pub async fn stop(mut self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        for client in std::mem::take(&mut self.clients) {
            client.await.expect("a load client does not panic");
        }
        std::mem::take(&mut *lock(&self.sent))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The requests of `sent` that failed.
pub fn failures(sent: &[Sent]) -> Vec<&Sent> {
    sent.iter().filter(|s| s.answer.is_err()).collect()
}

fn lock(sent: &Mutex<Vec<Sent>>) -> std::sync::MutexGuard<'_, Vec<Sent>> {
    sent.lock().unwrap_or_else(|e| e.into_inner())
}
