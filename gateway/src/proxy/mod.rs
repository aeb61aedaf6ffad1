//! The reverse proxy: one request, start to end, as named phases.
//!
//! 1. **route** — load the live table once (an `Arc`, so a swap mid-request never shows a
//!    half table) and find the rule;
//! 2. **pick upstream** — the rule's balancer chooses an endpoint;
//! 3. **rewrite** — point the request at the endpoint, drop hop-by-hop headers, add the
//!    forwarding headers;
//! 4. **forward** — over a pooled keep-alive connection ([`crate::upstream`]), within the
//!    rule's timeout;
//! 5. **respond** — drop hop-by-hop headers from the response and stream its body back;
//! 6. **record** — metrics always, a log line for every error.
//!
//! Bodies stream both ways; nothing is buffered. Failures map to the statuses users know:
//! 404 no route, 503 no ready endpoint, 502 upstream connect or protocol error, 504 timeout.
//!
//! This is the hot path, and it is kept lean: nothing is formatted or allocated per request
//! that can be done once per connection ([`Peer`]) or once per table, and headers are only
//! removed when present.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version,
    header::{CONNECTION, CONTENT_TYPE, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE},
};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::{
    table::RoutingTable,
    upstream::{PoolSettings, UpstreamBody, UpstreamError, Upstreams},
};

/// A response body: the upstream's, streamed, or a short error text of Weir's own.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [&HeaderName; 7] = [
    &CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &TE,
    &TRAILER,
    &TRANSFER_ENCODING,
    &UPGRADE,
];

/// Proxies requests by the live routing table.
pub struct Proxy {
    table: Arc<ArcSwap<RoutingTable>>,
    upstreams: Upstreams,
}

/// The client end of a connection, with its `X-Forwarded-For` entry formatted once.
///
/// ```
/// # use weir_gateway::proxy::Peer;
/// let peer = Peer::new(([192, 0, 2, 7], 41000).into());
/// assert_eq!(peer.forwarded_for(), "192.0.2.7");
/// ```
#[derive(Clone, Debug)]
pub struct Peer {
    pub address: SocketAddr,
    forwarded_for: HeaderValue,
}

impl Peer {
    pub fn new(address: SocketAddr) -> Self {
        let forwarded_for = HeaderValue::try_from(address.ip().to_string())
            .expect("an IP address is a valid header value");
        Self {
            address,
            forwarded_for,
        }
    }

    /// The client's IP address as `X-Forwarded-For` names it.
    pub fn forwarded_for(&self) -> &str {
        self.forwarded_for
            .to_str()
            .expect("an IP address is visible ASCII")
    }
}

/// Why a request got an error of Weir's own, with what the log line needs.
enum Failure {
    NoRoute,
    NoEndpoint,
    Connect(UpstreamError),
    Upstream(UpstreamError),
    Timeout,
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Failure::NoRoute => StatusCode::NOT_FOUND,
            Failure::NoEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Connect(_) | Failure::Upstream(_) => StatusCode::BAD_GATEWAY,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn body(&self) -> &'static str {
        match self {
            Failure::NoRoute => "weir: no route for this host and path\n",
            Failure::NoEndpoint => "weir: no ready endpoint for this route\n",
            Failure::Connect(_) => "weir: upstream connect error\n",
            Failure::Upstream(_) => "weir: upstream protocol error\n",
            Failure::Timeout => "weir: upstream timed out\n",
        }
    }
}

impl Proxy {
    pub fn new(table: Arc<ArcSwap<RoutingTable>>) -> Self {
        Self {
            table,
            upstreams: Upstreams::new(PoolSettings::default()),
        }
    }

    /// Serves one request; never fails, errors become responses.
    pub async fn handle(&self, request: Request<Incoming>, peer: &Peer) -> Response<ProxyBody> {
        let started = Instant::now();
        // Phase 1: route. This Arc keeps the table whole for the rest of the request.
        let table = self.table.load_full();
        let host = host_of(&request);
        let host_name = host
            .as_ref()
            .and_then(|h| h.value().to_str().ok())
            .unwrap_or_default();
        let Some(target) = table.find(
            host_name,
            request.method(),
            request.uri().path(),
            request.headers(),
        ) else {
            tracing::info!(
                host = host_name,
                path = request.uri().path(),
                status = 404,
                "no route"
            );
            table
                .unmatched_metrics
                .record(StatusCode::NOT_FOUND, started.elapsed());
            return error_response(&Failure::NoRoute);
        };

        // Phase 2: pick upstream.
        let Some((backend, endpoint)) = target.balancer.pick() else {
            let services: Vec<_> = target.balancer.services().collect();
            tracing::warn!(route = %target.route, rule = target.rule_index, ?services, status = 503, "no ready endpoint");
            target
                .metrics
                .record(StatusCode::SERVICE_UNAVAILABLE, started.elapsed());
            return error_response(&Failure::NoEndpoint);
        };

        // Phase 3: rewrite.
        let upstream_request = rewrite_request(request, &endpoint.authority, host, peer);

        // Phase 4: forward.
        let forwarded = self.upstreams.send(endpoint.address, upstream_request);
        let outcome = match target.timeout {
            Some(limit) => tokio::time::timeout(limit, forwarded)
                .await
                .map_err(|_| Failure::Timeout),
            None => Ok(forwarded.await),
        }
        .and_then(|result| {
            result.map_err(|error| {
                if error.is_connect() {
                    Failure::Connect(error)
                } else {
                    Failure::Upstream(error)
                }
            })
        });

        // Phases 5 and 6: respond and record.
        match outcome {
            Ok(mut response) => {
                remove_hop_by_hop(response.headers_mut());
                target.metrics.record(response.status(), started.elapsed());
                response.map(Either::Left)
            }
            Err(failure) => {
                let error = match &failure {
                    Failure::Connect(e) | Failure::Upstream(e) => Some(error_chain(e)),
                    _ => None,
                };
                tracing::warn!(
                    route = %target.route,
                    rule = target.rule_index,
                    service = %backend.service,
                    upstream = %endpoint.address,
                    status = failure.status().as_u16(),
                    error,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "{}",
                    failure.body().trim_start_matches("weir: ").trim_end()
                );
                target.metrics.record(failure.status(), started.elapsed());
                error_response(&failure)
            }
        }
    }
}

/// The host a request is for, and where that came from.
enum RequestHost {
    /// The Host header, already on the request.
    Header(HeaderValue),
    /// The authority of an HTTP/2 (or absolute-form) request without a Host header.
    Authority(HeaderValue),
}

impl RequestHost {
    fn value(&self) -> &HeaderValue {
        match self {
            RequestHost::Header(value) | RequestHost::Authority(value) => value,
        }
    }
}

/// The host a request is for: its Host header, or the authority of an HTTP/2 request.
fn host_of<B>(request: &Request<B>) -> Option<RequestHost> {
    match request.headers().get(HOST) {
        Some(host) => Some(RequestHost::Header(host.clone())),
        None => {
            let authority = request.uri().authority()?;
            HeaderValue::from_str(authority.as_str())
                .ok()
                .map(RequestHost::Authority)
        }
    }
}

/// Points the request at the upstream and fixes its headers for the next hop.
///
/// The URI goes out in origin form (`/path?query`); the client's Host is kept, or set from
/// the authority it used, or else the endpoint's address.
fn rewrite_request(
    request: Request<Incoming>,
    upstream: &http::uri::Authority,
    host: Option<RequestHost>,
    peer: &Peer,
) -> Request<Incoming> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = match parts.uri.path_and_query() {
            Some(path_and_query) => Uri::from(path_and_query.clone()),
            None => Uri::from_static("/"),
        };
    }
    // Upstreams are spoken to in HTTP/1.1, whatever the client spoke.
    parts.version = Version::HTTP_11;

    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    let forwarded_for = match headers.get(&X_FORWARDED_FOR) {
        None => peer.forwarded_for.clone(),
        Some(earlier) => {
            let mut value = Vec::with_capacity(earlier.len() + 2 + peer.forwarded_for.len());
            value.extend_from_slice(earlier.as_bytes());
            value.extend_from_slice(b", ");
            value.extend_from_slice(peer.forwarded_for.as_bytes());
            HeaderValue::from_bytes(&value).unwrap_or_else(|_| peer.forwarded_for.clone())
        }
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host.value().clone());
            if let RequestHost::Authority(authority) = host {
                headers.insert(HOST, authority);
            }
        }
        // HTTP/1.0 without Host: name the endpoint, as the next hop expects a Host.
        None => {
            if let Ok(authority) = HeaderValue::from_str(upstream.as_str()) {
                headers.insert(HOST, authority);
            }
        }
    }
    Request::from_parts(parts, body)
}

/// Removes the headers that belong to one connection, including those `Connection` names.
///
/// Most messages carry none of them: one pass over the names finds out, and the removals
/// (each a hash lookup) are only made when there is something to remove.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(&name)) {
        return;
    }
    if let Some(connection) = headers.get(CONNECTION).and_then(|v| v.to_str().ok()) {
        let named: Vec<HeaderName> = connection
            .split(',')
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn error_response(failure: &Failure) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        failure.body().as_bytes(),
    ))));
    *response.status_mut() = failure.status();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An error and its causes on one line: hyper's top-level messages alone say little.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_hop_by_hop_headers_and_those_connection_names() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        let names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }
}
