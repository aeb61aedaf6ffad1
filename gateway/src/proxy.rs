//! The reverse proxy: one request, start to end, as named phases.
//!
//! 1. **route** — load the live table once (an `Arc`, so a swap mid-request never shows a
//!    half table) and find the rule;
//! 2. **pick upstream** — the rule's balancer chooses an endpoint;
//! 3. **rewrite** — point the request at the endpoint, drop hop-by-hop headers, add the
//!    forwarding headers;
//! 4. **forward** — through a pooled keep-alive client, within the rule's timeout;
//! 5. **respond** — drop hop-by-hop headers from the response and stream its body back;
//! 6. **record** — metrics always, a log line for every error.
//!
//! Bodies stream both ways; nothing is buffered. Failures map to the statuses users know:
//! 404 no route, 503 no ready endpoint, 502 upstream connect or protocol error, 504 timeout.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version,
    header::{CONNECTION, CONTENT_TYPE, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE},
    uri::{PathAndQuery, Scheme},
};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::table::RoutingTable;

/// A response body: the upstream's, streamed, or a short error text of Weir's own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

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
    client: Client<HttpConnector, Incoming>,
}

/// Why a request got an error of Weir's own, with what the log line needs.
enum Failure {
    NoRoute,
    NoEndpoint,
    Connect(hyper_util::client::legacy::Error),
    Upstream(hyper_util::client::legacy::Error),
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
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Self { table, client }
    }

    /// Serves one request; never fails, errors become responses.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client_address: SocketAddr,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        // Phase 1: route. This Arc keeps the table whole for the rest of the request.
        let table = self.table.load_full();
        let host = host_of(&request);
        let Some(target) = table.find(
            host.as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default(),
            request.method(),
            request.uri().path(),
            request.headers(),
        ) else {
            let host = host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            tracing::info!(host, path = request.uri().path(), status = 404, "no route");
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
        let upstream_request = rewrite_request(request, &endpoint.authority, host, client_address);

        // Phase 4: forward.
        let forwarded = self.client.request(upstream_request);
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

/// The host a request is for: its Host header, or the authority of an HTTP/2 request.
fn host_of<B>(request: &Request<B>) -> Option<HeaderValue> {
    request.headers().get(HOST).cloned().or_else(|| {
        let authority = request.uri().authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    })
}

/// Points the request at the upstream and fixes its headers for the next hop.
fn rewrite_request(
    request: Request<Incoming>,
    upstream: &http::uri::Authority,
    host: Option<HeaderValue>,
    client_address: SocketAddr,
) -> Request<Incoming> {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(upstream.clone());
    uri.path_and_query = Some(path_and_query);
    parts.uri = Uri::from_parts(uri).expect("scheme, authority and path make a valid URI");
    // Upstreams are spoken to in HTTP/1.1, whatever the client spoke.
    parts.version = Version::HTTP_11;

    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    let client_ip = client_address.ip().to_string();
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client_ip}"),
        None => client_ip,
    };
    if let Ok(value) = HeaderValue::try_from(forwarded_for) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        // Keep the client's Host; the client would otherwise send the endpoint address.
        headers.insert(HOST, host);
    }
    Request::from_parts(parts, body)
}

/// Removes the headers that belong to one connection, including those `Connection` names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
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
