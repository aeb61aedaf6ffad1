//! A load balancer in front of Weir replicas, as kube-proxy or a cloud load balancer with
//! health checks is: it takes client connections on an address of its own and hands each new
//! one to a replica whose `/readyz` last answered 200, round robin. The replicas are probed
//! every [`PROBE_EVERY`]; a connection stays with its replica until either end closes it.
//!
//! It forwards bytes and nothing else (a TCP proxy, as kube-proxy's iptables or IPVS rules
//! are), so what clients see is what the replicas do. A client connection that finds no ready
//! replica, or whose replica refuses it, is closed: the client sees that as a failure.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{Method, StatusCode};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::{HttpClient, Weir, eventually_within};

/// How often each replica's readiness is probed (kube-proxy learns of an endpoint's readiness
/// through the API server within about a second; a cloud balancer probes every few).
pub const PROBE_EVERY: Duration = Duration::from_millis(100);

/// One replica behind the front.
struct Replica {
    proxy: SocketAddr,
    admin: HttpClient,
    /// What the last probe said.
    ready: AtomicBool,
    /// Client connections handed to it so far.
    connections: AtomicUsize,
}

/// The load balancer: its address, its replicas, and the tasks that accept and probe (ended
/// when it is dropped).
pub struct Front {
    address: SocketAddr,
    replicas: Arc<Mutex<Vec<Arc<Replica>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Front {
    /// Listens on a free loopback port, with no replica yet.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let replicas: Arc<Mutex<Vec<Arc<Replica>>>> = Arc::default();
        let accepting = tokio::spawn(accept(listener, replicas.clone()));
        let probing = tokio::spawn(probe(replicas.clone()));
        Self {
            address,
            replicas,
            tasks: vec![accepting, probing],
        }
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Puts `weir` behind the front, and returns once a probe has found it ready.
    pub async fn add(&self, weir: &Weir) {
        let replica = Arc::new(Replica {
            proxy: weir.proxy().address(),
            admin: HttpClient::new(weir.admin().address()),
            ready: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        lock(&self.replicas).push(replica.clone());
        eventually_within(
            Duration::from_secs(10),
            "the front probes the new replica ready",
            async || {
                if replica.ready.load(Ordering::Relaxed) {
                    Ok(())
                } else {
                    Err("not ready".to_owned())
                }
            },
        )
        .await;
    }

    /// Client connections handed to `weir` so far.
    pub fn connections_to(&self, weir: &Weir) -> usize {
        let proxy = weir.proxy().address();
        lock(&self.replicas)
            .iter()
            .filter(|replica| replica.proxy == proxy)
            .map(|replica| replica.connections.load(Ordering::Relaxed))
            .sum()
    }

    /// Whether the last probe found `weir` ready.
    pub fn sees_ready(&self, weir: &Weir) -> bool {
        let proxy = weir.proxy().address();
        lock(&self.replicas)
            .iter()
            .any(|replica| replica.proxy == proxy && replica.ready.load(Ordering::Relaxed))
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Hands each client connection to the next ready replica, and joins the two.
async fn accept(listener: TcpListener, replicas: Arc<Mutex<Vec<Arc<Replica>>>>) {
    let mut next = 0usize;
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let ready: Vec<Arc<Replica>> = lock(&replicas)
            .iter()
            .filter(|replica| replica.ready.load(Ordering::Relaxed))
            .cloned()
            .collect();
        if ready.is_empty() {
            continue;
        }
        let replica = ready[next % ready.len()].clone();
        next = next.wrapping_add(1);
        replica.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let Ok(mut upstream) = TcpStream::connect(replica.proxy).await else {
                return;
            };
            let _ = upstream.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}

/// Probes every replica's `/readyz` every [`PROBE_EVERY`]; one that does not answer 200 (or
/// at all) is not ready.
async fn probe(replicas: Arc<Mutex<Vec<Arc<Replica>>>>) {
    loop {
        let now: Vec<Arc<Replica>> = lock(&replicas).clone();
        for replica in now {
            let reply = replica.admin.request(Method::GET, "admin", "/readyz");
            let ready =
                matches!(reply.try_send().await, Ok(reply) if reply.status == StatusCode::OK);
            replica.ready.store(ready, Ordering::Relaxed);
        }
        // The probe's pacing, as a balancer's probe period is.
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
