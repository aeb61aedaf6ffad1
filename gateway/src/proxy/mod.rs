//! The reverse proxy: one request, start to end, as named phases over one per-request context.
//!
//! [`Proxy::handle`] is the list of phases, in order; it is the one place that order is written:
//!
//! 1. **route** — load the live table once (an `Arc`, so a swap mid-request never shows a
//!    half table), decide the host (two `Host` headers: 400; an absolute-form target's
//!    authority wins over `Host`), normalize the path ([`normalize`]), and find the rule
//!    ([`route`]);
//! 2. **request filters** — Weir's own forwarding headers, then the rule's filters, so a
//!    filter can change what Weir set ([`request_filters`]);
//! 3. **select upstream** — the rule's balancer chooses a backend and an endpoint ([`select`]);
//! 4. **forward** — the backend's filters, the request body held to the rule's limits, then
//!    send to the endpoint's target within the rule's timeout ([`forward()`]); an upgrade
//!    (WebSocket) becomes a tunnel once the upstream agrees; retries and mirrors belong here,
//!    around the send;
//! 5. **response filters** — hop-by-hop headers out, then the rule's response filters
//!    ([`response_filters`]);
//! 6. **record** — metrics always, a log line for every error, and Weir's own answer when
//!    the request failed, shaped for gRPC clients when the request was gRPC ([`record`]).
//!
//! Bodies stream both ways; nothing is buffered unless a policy needs to replay it. Each
//! phase is a plain function, inlined into `handle`: a rule with no filters and no policy pays
//! for no phase it does not use.

mod failure;
mod forward;
pub mod normalize;

use std::{borrow::Cow, net::SocketAddr, sync::Arc, time::Duration, time::Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{
    HeaderValue, Request, Response, StatusCode, Uri,
    header::{CONTENT_LENGTH, CONTENT_TYPE, HOST},
    request::Parts,
};
use http_body_util::{Either, Full};
use hyper::body::{Body, Incoming};
use weir_contract::BodyTimeout;

pub use failure::Failure;

use crate::{
    balance::BackendEndpoints,
    table::{RoutingTable, RuleTarget},
    upstream::{GuardedBody, PoolSettings, RequestBody, Target, UpstreamBody, Upstreams},
};

/// A response body: the upstream's, streamed, or a short text of Weir's own.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// Proxies requests by the live routing table.
pub struct Proxy {
    table: Arc<ArcSwap<RoutingTable>>,
    upstreams: Upstreams,
    settings: ProxySettings,
}

/// Defaults a rule may override.
#[derive(Debug, Clone, Copy)]
pub struct ProxySettings {
    /// The longest pause while a client sends a request body, for rules that set none.
    pub request_body_timeout: Option<Duration>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            request_body_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// The client end of a connection, with its `X-Forwarded-For` entry formatted once.
///
/// ```
/// # use weir_gateway::proxy::Peer;
/// let peer = Peer::new(([192, 0, 2, 7], 41000).into(), false);
/// assert_eq!(peer.forwarded_for(), "192.0.2.7");
/// ```
#[derive(Clone, Debug)]
pub struct Peer {
    pub address: SocketAddr,
    /// Whether the client came in over TLS.
    pub secure: bool,
    forwarded_for: HeaderValue,
}

impl Peer {
    pub fn new(address: SocketAddr, secure: bool) -> Self {
        let forwarded_for = HeaderValue::try_from(address.ip().to_string())
            .expect("an IP address is a valid header value");
        Self {
            address,
            secure,
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

/// One request's state, threaded through the phases after it was routed.
struct RequestCtx<'r> {
    started: Instant,
    peer: &'r Peer,
    /// The rule the request matched, in the table the request holds.
    target: &'r RuleTarget,
    /// Whether the client speaks gRPC, so Weir's own failures are gRPC statuses.
    grpc: bool,
}

/// What routing decided.
struct Routed<'t> {
    target: &'t RuleTarget,
    host: Option<RequestHost>,
    /// The normalized path, when it differs from the one sent.
    normalized_path: Option<String>,
}

/// The upstream a request goes to: a backend of its rule and one of its endpoints.
struct Selected<'r> {
    backend: &'r BackendEndpoints,
    endpoint: &'r Target,
}

impl Proxy {
    pub fn new(table: Arc<ArcSwap<RoutingTable>>, settings: ProxySettings) -> Self {
        Self {
            table,
            upstreams: Upstreams::new(PoolSettings::default()),
            settings,
        }
    }

    /// Serves one request; never fails, errors become responses.
    pub async fn handle(&self, request: Request<Incoming>, peer: &Peer) -> Response<ProxyBody> {
        let started = Instant::now();
        // This Arc keeps the table whole for the rest of the request.
        let table = self.table.load_full();

        let routed = match route(&table, &request) {
            Ok(routed) => routed,
            Err(failure) => return record_unrouted(&table, &request, started, failure),
        };
        let (mut parts, body) = request.into_parts();
        let ctx = RequestCtx {
            started,
            peer,
            target: routed.target,
            grpc: is_grpc(&parts),
        };
        if let Some(path) = routed.normalized_path {
            set_path(&mut parts, &path);
        }
        let upgrade = request_filters(&ctx, &mut parts, routed.host);
        let Some(selected) = select(&ctx) else {
            return record(&ctx, None, Err(Failure::NoEndpoint));
        };
        let outcome = forward(self, &ctx, &selected, parts, body, upgrade)
            .await
            .map(|mut response| {
                response_filters(&ctx, &mut response);
                response
            });
        record(&ctx, Some(&selected), outcome)
    }
}

/// The host a request is for, and where that came from.
enum RequestHost {
    /// The Host header, already on the request.
    Header(HeaderValue),
    /// The authority of an HTTP/2 or absolute-form request (RFC 9112 §3.2.2: it wins over Host).
    Authority(HeaderValue),
}

impl RequestHost {
    fn value(&self) -> &HeaderValue {
        match self {
            RequestHost::Header(value) | RequestHost::Authority(value) => value,
        }
    }

    /// The host from the request: its target's authority if it has one, else its one Host
    /// header; two Host headers are refused.
    fn of<B>(request: &Request<B>) -> Result<Option<Self>, Failure> {
        if let Some(authority) = request.uri().authority() {
            return Ok(HeaderValue::from_str(authority.as_str())
                .ok()
                .map(RequestHost::Authority));
        }
        let mut hosts = request.headers().get_all(HOST).iter();
        let host = hosts.next().cloned().map(RequestHost::Header);
        if hosts.next().is_some() {
            return Err(Failure::BadRequest("weir: more than one Host header\n"));
        }
        Ok(host)
    }
}

/// Phase 1, route: the rule the request matches in `table`, the host it is for, and its
/// normalized path.
fn route<'t, B>(table: &'t RoutingTable, request: &Request<B>) -> Result<Routed<'t>, Failure> {
    let host = RequestHost::of(request)?;
    let host_name = host
        .as_ref()
        .and_then(|h| h.value().to_str().ok())
        .unwrap_or_default();
    let uri = request.uri();
    let path = normalize::normalize(uri.path())
        .map_err(|_| Failure::BadRequest("weir: the path climbs above the root\n"))?;
    let target = table
        .find(
            host_name,
            request.method(),
            &path,
            uri.query(),
            request.headers(),
        )
        .ok_or(Failure::NoRoute)?;
    Ok(Routed {
        target,
        host,
        normalized_path: match path {
            Cow::Borrowed(_) => None,
            Cow::Owned(path) => Some(path),
        },
    })
}

/// Phase 2, request filters: Weir's forwarding headers, then the rule's filters. Returns the
/// protocol the client asked to upgrade to, if any.
fn request_filters(
    ctx: &RequestCtx<'_>,
    parts: &mut Parts,
    host: Option<RequestHost>,
) -> Option<HeaderValue> {
    let upgrade = forward::prepare(parts, host, ctx.peer);
    ctx.target.filters.apply_request(&mut parts.headers);
    upgrade
}

/// Phase 3, select upstream: the backend and endpoint the rule's balancer picks next; `None`
/// when no backend has a ready endpoint.
fn select<'r>(ctx: &RequestCtx<'r>) -> Option<Selected<'r>> {
    let (backend, endpoint) = ctx.target.balancer.pick()?;
    Some(Selected { backend, endpoint })
}

/// Phase 4, forward: the backend's own filters, the body held to the rule's limits, then the
/// request goes to the endpoint; an upgrade the upstream accepts becomes a tunnel.
async fn forward(
    proxy: &Proxy,
    ctx: &RequestCtx<'_>,
    selected: &Selected<'_>,
    mut parts: Parts,
    body: Incoming,
    upgrade: Option<HeaderValue>,
) -> Result<Response<UpstreamBody>, Failure> {
    if !selected.backend.filters.is_empty() {
        crate::filters::apply_request(&selected.backend.filters, &mut parts.headers);
    }
    let body = guard_body(proxy, ctx, &parts, body)?;
    let extended_connect = forward::websocket_over_http2(&parts);
    let client_upgrade = match upgrade {
        _ if extended_connect && forward::can_upgrade(selected.endpoint) => {
            forward::ask_websocket_of_http2_client(&mut parts)
        }
        Some(protocol) if forward::can_upgrade(selected.endpoint) => {
            forward::ask_upgrade(&mut parts, protocol)
        }
        _ => None,
    };
    let mut response = forward::send(
        &proxy.upstreams,
        selected.endpoint,
        parts,
        body,
        ctx.target.policy.timeouts.backend_request,
    )
    .await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        forward::tunnel(client_upgrade, &mut response, ctx.target.route.clone());
        if extended_connect {
            forward::answer_extended_connect(&mut response);
        }
    }
    Ok(response)
}

/// The request body, held to the rule's size limit and pause limit; a body whose declared
/// length is over the limit is refused before anything is sent.
fn guard_body(
    proxy: &Proxy,
    ctx: &RequestCtx<'_>,
    parts: &Parts,
    body: Incoming,
) -> Result<RequestBody, Failure> {
    let policy = &ctx.target.policy;
    let max_bytes = policy.max_request_body_bytes;
    if let Some(limit) = max_bytes
        && let Some(length) = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        && length > limit
    {
        return Err(Failure::BodyTooLarge);
    }
    if body.is_end_stream() {
        return Ok(RequestBody::Incoming(body));
    }
    let max_pause = match policy.timeouts.request_body {
        BodyTimeout::GatewayDefault => proxy.settings.request_body_timeout,
        BodyTimeout::Disabled => None,
        BodyTimeout::After(limit) => Some(limit),
    };
    if max_bytes.is_none() && max_pause.is_none() {
        return Ok(RequestBody::Incoming(body));
    }
    Ok(RequestBody::Guarded(GuardedBody::new(
        body, max_bytes, max_pause,
    )))
}

/// Phase 5, response filters: the upstream's hop-by-hop headers out (but those of an
/// accepted upgrade), the rule's filters in.
fn response_filters<B>(ctx: &RequestCtx<'_>, response: &mut Response<B>) {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        forward::remove_hop_by_hop(response.headers_mut());
    }
    ctx.target.filters.apply_response(response.headers_mut());
}

/// Phase 6, record: the rule's metrics, a log line for a failure, and the response the
/// client gets.
fn record(
    ctx: &RequestCtx<'_>,
    selected: Option<&Selected<'_>>,
    outcome: Result<Response<UpstreamBody>, Failure>,
) -> Response<ProxyBody> {
    let target = ctx.target;
    match outcome {
        Ok(response) => {
            target
                .metrics()
                .record(response.status(), ctx.started.elapsed());
            response.map(Either::Left)
        }
        Err(failure) => {
            let status = failure.status();
            match selected {
                None => {
                    let services: Vec<_> = target.balancer.services().collect();
                    tracing::warn!(route = %target.route, rule = target.rule_index, ?services, status = status.as_u16(), "{}", failure.summary());
                }
                Some(selected) => tracing::warn!(
                    route = %target.route,
                    rule = target.rule_index,
                    service = %selected.backend.service,
                    upstream = %selected.endpoint,
                    status = status.as_u16(),
                    error = failure.error_chain(),
                    duration_ms = ctx.started.elapsed().as_millis() as u64,
                    "{}",
                    failure.summary()
                ),
            }
            target.metrics().record(status, ctx.started.elapsed());
            failure.response(ctx.grpc)
        }
    }
}

/// Phase 6 for a request no rule matched (or one Weir refused to route).
fn record_unrouted<B>(
    table: &RoutingTable,
    request: &Request<B>,
    started: Instant,
    failure: Failure,
) -> Response<ProxyBody> {
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| request.headers().get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or_default();
    tracing::info!(
        host,
        path = request.uri().path(),
        status = failure.status().as_u16(),
        "{}",
        if matches!(failure, Failure::NoRoute) {
            "no route"
        } else {
            failure.summary()
        }
    );
    table
        .unmatched_metrics()
        .record(failure.status(), started.elapsed());
    let grpc = request
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    failure.response(grpc)
}

fn is_grpc(parts: &Parts) -> bool {
    parts
        .headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Replaces the request's path, keeping its query.
fn set_path(parts: &mut Parts, path: &str) {
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.path_and_query = path_and_query.parse().ok();
    parts.uri = Uri::from_parts(uri).unwrap_or_else(|_| Uri::from_static("/"));
}

#[cfg(test)]
mod tests;
