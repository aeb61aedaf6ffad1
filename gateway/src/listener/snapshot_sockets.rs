//! The sockets of the snapshot's listeners: opened when a snapshot first names their address,
//! closed when one no longer does; each serves the routes attached to the listeners on it and,
//! for HTTPS, their certificates by SNI.
//!
//! [`SnapshotSockets`] is their one owner. The task that applies snapshots drives it
//! ([`SnapshotSockets::update`]) right after the snapshot's table went live, so a new socket's
//! first connection already finds its routes. Listeners that share an address share one
//! socket. A new address is bound as the command line's sockets are (`SO_REUSEADDR`, and
//! `SO_REUSEPORT` with `--reuse-port`, [`SnapshotSockets::with_reuse_port`]); an
//! HTTPS socket's certificates are swapped in place when they change (parsed once, by
//! [`CertificateResolver`]); the set of open sockets is published on a watch channel
//! ([`SocketSet`]).
//!
//! Every proxy thread follows that channel (`follow`): on each socket of the set it runs an
//! accept loop of its own, on its own runtime and its own copy of the socket (a duplicated
//! descriptor, as the command line's sockets are shared between threads). When a socket leaves
//! the set, each thread ends its loop and closes its copy; once the owner and every thread have
//! let go, the socket is closed and new connections are refused, while those already accepted
//! go on to their end (and drain at shutdown like any other).
//!
//! A socket that cannot be opened (its port taken, its address not local) stops nothing else:
//! it is logged with the listeners that want it, counted (`weir_listener_bind_failures_total`),
//! and tried again with the next snapshot that still names it, or by
//! [`SnapshotSockets::retry_failed`] meanwhile.

use std::{collections::BTreeMap, io, net::SocketAddr, sync::Arc, time::Duration};

use rustls::ServerConfig;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use weir_contract::{Listener, ListenerProtocol, Snapshot, TlsCertificate};

use super::{
    Worker, listen,
    tls::{self, CertificateResolver},
};
use crate::{metrics::Metrics, table::RouteScope};

/// Why a snapshot listener's socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
    /// Its protocol changed, and the open socket could not be handed to the new configuration.
    #[error("cannot reuse the socket on {address}: {source}")]
    Reuse {
        address: SocketAddr,
        source: io::Error,
    },
}

/// An open socket of the snapshot's listeners, as the proxy threads accept on it.
#[derive(Debug)]
pub struct SnapshotSocket {
    address: SocketAddr,
    /// The owner's copy; the threads accept on duplicates of it.
    listener: std::net::TcpListener,
    /// An HTTPS socket's TLS configuration; its certificates change in place.
    tls: Option<Arc<ServerConfig>>,
}

impl SnapshotSocket {
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Whether it terminates TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A copy of the socket registered with the calling thread's runtime.
    fn accept_copy(&self) -> io::Result<TcpListener> {
        TcpListener::from_std(self.listener.try_clone()?)
    }
}

/// The open sockets of the snapshot's listeners, by address. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SocketSet {
    sockets: Arc<BTreeMap<SocketAddr, Arc<SnapshotSocket>>>,
}

impl SocketSet {
    pub fn get(&self, address: &SocketAddr) -> Option<&Arc<SnapshotSocket>> {
        self.sockets.get(address)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<SnapshotSocket>> {
        self.sockets.values()
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

/// Opens and closes the sockets the snapshots' listeners ask for, and publishes them.
pub struct SnapshotSockets {
    open: BTreeMap<SocketAddr, OpenSocket>,
    /// Addresses the last snapshot names whose socket could not be opened.
    failed: BTreeMap<SocketAddr, SocketError>,
    /// The last snapshot, for [`SnapshotSockets::retry_failed`].
    last: Option<Arc<Snapshot>>,
    published: watch::Sender<SocketSet>,
    metrics: Metrics,
    /// Whether new sockets are bound with `SO_REUSEPORT`.
    reuse_port: bool,
}

/// What the owner keeps of an open socket.
struct OpenSocket {
    socket: Arc<SnapshotSocket>,
    protocol: ListenerProtocol,
    /// An HTTPS socket's certificates, which its TLS configuration reads.
    certificates: Option<Arc<CertificateResolver>>,
}

impl SnapshotSockets {
    /// No socket open yet; `metrics` counts what opens and what fails to.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            open: BTreeMap::new(),
            failed: BTreeMap::new(),
            last: None,
            published: watch::Sender::new(SocketSet::default()),
            metrics,
            reuse_port: false,
        }
    }

    /// Binds the sockets it opens with `SO_REUSEPORT` (`--reuse-port`), so that a new Weir
    /// on the same host can open them too while this one drains.
    pub fn with_reuse_port(mut self, reuse_port: bool) -> Self {
        self.reuse_port = reuse_port;
        self
    }

    /// The open sockets, now and as they change, for the proxy threads.
    pub fn subscribe(&self) -> watch::Receiver<SocketSet> {
        self.published.subscribe()
    }

    /// The sockets that could not be opened for the last snapshot, and why.
    pub fn failed(&self) -> impl Iterator<Item = (&SocketAddr, &SocketError)> {
        self.failed.iter()
    }

    /// Makes the open sockets those `snapshot`'s listeners ask for: opens the addresses it
    /// names first (and those that failed before), closes those it no longer names, and serves
    /// each HTTPS socket the certificates of its listeners. Runs inside a Tokio runtime (a new
    /// socket is registered with it to be listened on).
    pub fn update(&mut self, snapshot: &Arc<Snapshot>) {
        self.last = Some(snapshot.clone());
        let wanted = listeners_by_address(&snapshot.listeners);
        let mut changed = false;
        self.open.retain(|address, _| {
            let kept = wanted.contains_key(address);
            if !kept {
                tracing::info!(%address, "listener socket closed");
                changed = true;
            }
            kept
        });
        self.failed
            .retain(|address, _| wanted.contains_key(address));
        for (address, listeners) in &wanted {
            let address = *address;
            let names: Vec<&str> = listeners.iter().map(|l| &*l.name).collect();
            let protocol = listeners[0].protocol;
            if listeners.iter().any(|l| l.protocol != protocol) {
                // The control plane refuses such listeners; were one to slip through, the
                // first listener's protocol is the socket's.
                tracing::warn!(%address, listeners = ?names, ?protocol, "listeners sharing an address ask for different protocols; the first one's is served");
            }
            let (by_host, default) = certificates_of(listeners);
            let opened = match self.open.get(&address) {
                Some(open) if open.protocol == protocol => {
                    if let Some(resolver) = &open.certificates
                        && resolver.serve(&by_host, default)
                    {
                        tracing::info!(%address, listeners = ?names, certificates = by_host.len() + usize::from(default.is_some()), "listener certificates live");
                    }
                    continue;
                }
                Some(open) => OpenSocket::reuse(&open.socket, protocol, &by_host, default),
                None => OpenSocket::bind(address, self.reuse_port, protocol, &by_host, default),
            };
            match opened {
                Ok(open) => {
                    tracing::info!(%address, listeners = ?names, ?protocol, "listener socket open");
                    self.open.insert(address, open);
                    self.failed.remove(&address);
                    changed = true;
                }
                Err(error) => {
                    tracing::warn!(%address, listeners = ?names, %error, "cannot open the socket of these listeners; trying again with the next snapshot");
                    self.metrics.listener_bind_failed(address);
                    self.failed.insert(address, error);
                }
            }
        }
        if changed {
            self.publish();
        }
    }

    /// Tries again to open the sockets the last snapshot named that could not be opened; a
    /// port freed since then need not wait for the next snapshot.
    pub fn retry_failed(&mut self) {
        if self.failed.is_empty() {
            return;
        }
        if let Some(last) = self.last.clone() {
            self.update(&last);
        }
    }

    fn publish(&self) {
        let sockets = self
            .open
            .iter()
            .map(|(address, open)| (*address, open.socket.clone()))
            .collect();
        self.metrics.listener_sockets_open(self.open.len());
        self.published.send_replace(SocketSet {
            sockets: Arc::new(sockets),
        });
    }
}

impl OpenSocket {
    /// A new socket on `address`.
    fn bind(
        address: SocketAddr,
        reuse_port: bool,
        protocol: ListenerProtocol,
        by_host: &[Arc<TlsCertificate>],
        default: Option<&Arc<TlsCertificate>>,
    ) -> Result<Self, SocketError> {
        let listener =
            listen(address, reuse_port).map_err(|source| SocketError::Bind { address, source })?;
        Ok(Self::serving(address, listener, protocol, by_host, default))
    }

    /// The socket of `open`, now spoken to with `protocol`: the socket stays open, and the
    /// threads start accepting on it anew with the new configuration.
    fn reuse(
        open: &SnapshotSocket,
        protocol: ListenerProtocol,
        by_host: &[Arc<TlsCertificate>],
        default: Option<&Arc<TlsCertificate>>,
    ) -> Result<Self, SocketError> {
        let address = open.address;
        let listener = open
            .listener
            .try_clone()
            .map_err(|source| SocketError::Reuse { address, source })?;
        Ok(Self::serving(address, listener, protocol, by_host, default))
    }

    fn serving(
        address: SocketAddr,
        listener: std::net::TcpListener,
        protocol: ListenerProtocol,
        by_host: &[Arc<TlsCertificate>],
        default: Option<&Arc<TlsCertificate>>,
    ) -> Self {
        let certificates = match protocol {
            ListenerProtocol::Http => None,
            ListenerProtocol::Https => {
                let resolver = Arc::new(CertificateResolver::default());
                resolver.serve(by_host, default);
                Some(resolver)
            }
        };
        Self {
            socket: Arc::new(SnapshotSocket {
                address,
                listener,
                tls: certificates.clone().map(tls::server_config),
            }),
            protocol,
            certificates,
        }
    }
}

/// The snapshot's listeners grouped by address, in snapshot order within each.
fn listeners_by_address(listeners: &[Listener]) -> BTreeMap<SocketAddr, Vec<&Listener>> {
    let mut by_address: BTreeMap<SocketAddr, Vec<&Listener>> = BTreeMap::new();
    for listener in listeners {
        by_address
            .entry(listener.address)
            .or_default()
            .push(listener);
    }
    by_address
}

/// The certificates of the listeners on one socket: those served by host name, in listener
/// order, and the socket's default, the first certificate that names no host.
fn certificates_of<'s>(
    listeners: &[&'s Listener],
) -> (Vec<Arc<TlsCertificate>>, Option<&'s Arc<TlsCertificate>>) {
    let mut by_host = Vec::new();
    let mut default = None;
    for certificate in listeners.iter().flat_map(|l| &l.certificates) {
        if certificate.hosts.is_empty() {
            default.get_or_insert(certificate);
        } else {
            by_host.push(certificate.clone());
        }
    }
    (by_host, default)
}

/// This thread's accept loop on one socket, and the signal that tells the connections it
/// accepted that the socket is gone.
type Accepting = (Arc<SnapshotSocket>, JoinHandle<()>, watch::Sender<bool>);

/// Runs this thread's accept loops on the snapshot's sockets, following `sockets` until
/// shutdown: a loop starts for each socket that appears (or is replaced), and ends, closing
/// this thread's copy, for each that goes.
pub(super) async fn follow(mut sockets: watch::Receiver<SocketSet>, worker: Worker) {
    let mut accepting: BTreeMap<SocketAddr, Accepting> = BTreeMap::new();
    let mut stop = worker.stop.clone();
    loop {
        let set = sockets.borrow_and_update().clone();
        accepting.retain(|address, (socket, task, gone)| {
            let kept = set.get(address).is_some_and(|now| Arc::ptr_eq(now, socket));
            if !kept {
                // Dropping the loop closes its copy; its connections finish the requests in
                // flight and close, as at shutdown, rather than lingering on a socket whose
                // routes are gone.
                task.abort();
                let _ = gone.send(true);
            }
            kept
        });
        for socket in set.iter() {
            if accepting.contains_key(&socket.address) {
                continue;
            }
            match socket.accept_copy() {
                Ok(listener) => {
                    let (gone, closing) = watch::channel(false);
                    let task = tokio::spawn(accept(
                        worker.clone(),
                        listener,
                        socket.address,
                        socket.tls.clone(),
                        closing,
                    ));
                    accepting.insert(socket.address, (socket.clone(), task, gone));
                }
                Err(error) => {
                    tracing::error!(address = %socket.address, %error, "a proxy thread cannot accept on a listener socket; it tries again with the next change")
                }
            }
        }
        drop(set);
        let owner_gone = tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => break,
            changed = sockets.changed() => changed.is_err(),
        };
        if owner_gone {
            // The snapshots ended: what is open stays open until shutdown.
            let _ = stop.wait_for(|stopping| *stopping).await;
            break;
        }
    }
    for (_, task, gone) in accepting.into_values() {
        task.abort();
        let _ = gone.send(true);
    }
}

/// Accepts connections on this thread's copy of a snapshot socket until shutdown (or until
/// aborted, when the socket goes), within the process's connection limit. Its connections
/// drain when `closing` turns `true`: at shutdown, or when the socket goes.
async fn accept(
    worker: Worker,
    listener: TcpListener,
    address: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    closing: watch::Receiver<bool>,
) {
    let scope = RouteScope::Socket(address);
    let mut stop = worker.stop.clone();
    let stopped = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    tokio::pin!(stopped);
    loop {
        let permit = tokio::select! {
            biased;
            permit = worker.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = &mut stopped => return,
        };
        let (stream, client_address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%address, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopped => return,
        };
        worker.serve_connection(
            stream,
            client_address,
            tls.clone(),
            scope,
            permit,
            closing.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(name: &str, address: SocketAddr) -> Listener {
        Listener {
            name: name.into(),
            address,
            protocol: ListenerProtocol::Http,
            hostname: None,
            certificates: Vec::new(),
        }
    }

    fn snapshot(listeners: Vec<Listener>) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            listeners,
            ..Snapshot::default()
        })
    }

    /// A loopback address with a port free a moment ago.
    fn free_address() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn listeners_sharing_an_address_share_one_published_socket() {
        let address = free_address();
        let mut sockets = SnapshotSockets::new(Metrics::default());
        let published = sockets.subscribe();
        sockets.update(&snapshot(vec![
            listener("gateway:web/public#a", address),
            listener("gateway:web/public#b", address),
        ]));
        let set = published.borrow().clone();
        assert_eq!(set.len(), 1);
        assert_eq!(set.iter().next().unwrap().address(), address);
    }

    #[tokio::test]
    async fn an_unchanged_snapshot_keeps_the_same_socket_and_publishes_nothing() {
        let address = free_address();
        let mut sockets = SnapshotSockets::new(Metrics::default());
        let mut published = sockets.subscribe();
        let wanted = || snapshot(vec![listener("gateway:web/public#http", address)]);
        sockets.update(&wanted());
        let first = published
            .borrow_and_update()
            .get(&address)
            .cloned()
            .unwrap();
        sockets.update(&wanted());
        assert!(!published.has_changed().unwrap());
        assert!(Arc::ptr_eq(
            &first,
            published.borrow().get(&address).unwrap()
        ));
    }

    #[tokio::test]
    async fn a_protocol_change_keeps_the_socket_open_under_a_new_configuration() {
        let address = free_address();
        let mut sockets = SnapshotSockets::new(Metrics::default());
        let published = sockets.subscribe();
        sockets.update(&snapshot(vec![listener("l", address)]));
        let plain = published.borrow().get(&address).cloned().unwrap();
        let mut https = listener("l", address);
        https.protocol = ListenerProtocol::Https;
        sockets.update(&snapshot(vec![https]));
        let secure = published.borrow().get(&address).cloned().unwrap();
        assert!(!plain.is_tls() && secure.is_tls());
        assert_eq!(
            plain.listener.local_addr().unwrap(),
            secure.listener.local_addr().unwrap()
        );
        assert_eq!(sockets.failed().count(), 0);
    }

    #[test]
    fn the_first_certificate_without_hosts_is_the_default() {
        let certificate = |name: &str, hosts: &[&str]| {
            Arc::new(TlsCertificate {
                source: weir_contract::NamespacedName::new("web", name),
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                chain_pem: Vec::new(),
                key_pem: weir_contract::SecretBytes::new(Vec::new()),
            })
        };
        let address = free_address();
        let mut first = listener("a", address);
        first.certificates = vec![certificate("shop", &["shop.example.com"])];
        let mut second = listener("b", address);
        second.certificates = vec![certificate("fallback", &[]), certificate("late", &[])];
        let (by_host, default) = certificates_of(&[&first, &second]);
        assert_eq!(by_host.len(), 1);
        assert_eq!(default.unwrap().source.name, "fallback");
    }
}
