//! The reverse proxy: one request, start to end, as named phases over one per-request context.
//!
//! [`Proxy::handle`] is the list of phases, in order; it is the one place that order is written:
//!
//! 1. **route** — load the live table once (an `Arc`, so a swap mid-request never shows a
//!    half table) and find the rule ([`route`]);
//! 2. **request filters** — Weir's own forwarding headers, then the rule's filters, so a
//!    filter can change what Weir set ([`request_filters`]);
//! 3. **select upstream** — the rule's balancer chooses a backend and an endpoint ([`select`]);
//! 4. **forward** — the backend's filters, then send to the endpoint's target within the rule's
//!    timeout ([`forward()`]); retries and mirrors belong here, around the send;
//! 5. **response filters** — hop-by-hop headers out, then the rule's response filters
//!    ([`response_filters`]);
//! 6. **record** — metrics always, a log line for every error, and Weir's own answer when
//!    the request failed ([`record`]).
//!
//! Bodies stream both ways; nothing is buffered unless a policy needs to replay it. Each
//! phase is a plain function, inlined into `handle`: a rule with no filters and no policy pays
//! for no phase it does not use.

mod failure;
mod forward;

use std::{net::SocketAddr, sync::Arc, time::Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header::HOST, request::Parts};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

pub use failure::Failure;

use crate::{
    balance::BackendEndpoints,
    table::{RoutingTable, RuleTarget},
    upstream::{PoolSettings, Target, UpstreamBody, Upstreams},
};

/// A response body: the upstream's, streamed, or a short text of Weir's own.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

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

/// One request's state, threaded through the phases after it was routed.
struct RequestCtx<'r> {
    started: Instant,
    peer: &'r Peer,
    /// The rule the request matched, in the table the request holds.
    target: &'r RuleTarget,
}

/// The upstream a request goes to: a backend of its rule and one of its endpoints.
struct Selected<'r> {
    backend: &'r BackendEndpoints,
    endpoint: &'r Target,
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
        // This Arc keeps the table whole for the rest of the request.
        let table = self.table.load_full();

        let (target, host) = match route(&table, &request) {
            Ok(routed) => routed,
            Err(failure) => return record_unrouted(&table, &request, started, failure),
        };
        let ctx = RequestCtx {
            started,
            peer,
            target,
        };
        let (mut parts, body) = request.into_parts();
        request_filters(&ctx, &mut parts, host);
        let Some(selected) = select(&ctx) else {
            return record(&ctx, None, Err(Failure::NoEndpoint));
        };
        let outcome = forward(&self.upstreams, &ctx, &selected, parts, body)
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
    /// The authority of an HTTP/2 (or absolute-form) request without a Host header.
    Authority(HeaderValue),
}

impl RequestHost {
    fn value(&self) -> &HeaderValue {
        match self {
            RequestHost::Header(value) | RequestHost::Authority(value) => value,
        }
    }

    /// The host from the request: its Host header, or the authority of an HTTP/2 request.
    fn of<B>(request: &Request<B>) -> Option<Self> {
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
}

/// Phase 1, route: the rule the request matches in `table`, and the host it is for.
fn route<'t, B>(
    table: &'t RoutingTable,
    request: &Request<B>,
) -> Result<(&'t RuleTarget, Option<RequestHost>), Failure> {
    let host = RequestHost::of(request);
    let host_name = host
        .as_ref()
        .and_then(|h| h.value().to_str().ok())
        .unwrap_or_default();
    let uri = request.uri();
    match table.find(
        host_name,
        request.method(),
        uri.path(),
        uri.query(),
        request.headers(),
    ) {
        Some(target) => Ok((target, host)),
        None => Err(Failure::NoRoute),
    }
}

/// Phase 2, request filters: Weir's forwarding headers, then the rule's filters.
fn request_filters(ctx: &RequestCtx<'_>, parts: &mut Parts, host: Option<RequestHost>) {
    forward::prepare(parts, host, ctx.peer);
    ctx.target.filters.apply_request(&mut parts.headers);
}

/// Phase 3, select upstream: the backend and endpoint the rule's balancer picks next; `None`
/// when no backend has a ready endpoint.
fn select<'r>(ctx: &RequestCtx<'r>) -> Option<Selected<'r>> {
    let (backend, endpoint) = ctx.target.balancer.pick()?;
    Some(Selected { backend, endpoint })
}

/// Phase 4, forward: the backend's own filters, then the request goes to the endpoint.
async fn forward(
    upstreams: &Upstreams,
    ctx: &RequestCtx<'_>,
    selected: &Selected<'_>,
    mut parts: Parts,
    body: Incoming,
) -> Result<Response<UpstreamBody>, Failure> {
    if !selected.backend.filters.is_empty() {
        crate::filters::apply_request(&selected.backend.filters, &mut parts.headers);
    }
    forward::send(
        upstreams,
        selected.endpoint,
        parts,
        body,
        ctx.target.timeouts.backend_request,
    )
    .await
}

/// Phase 5, response filters: the upstream's hop-by-hop headers out, the rule's filters in.
fn response_filters<B>(ctx: &RequestCtx<'_>, response: &mut Response<B>) {
    forward::remove_hop_by_hop(response.headers_mut());
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
            failure.response()
        }
    }
}

/// Phase 6 for a request no rule matched.
fn record_unrouted<B>(
    table: &RoutingTable,
    request: &Request<B>,
    started: Instant,
    failure: Failure,
) -> Response<ProxyBody> {
    let host = RequestHost::of(request);
    let host = host
        .as_ref()
        .and_then(|h| h.value().to_str().ok())
        .unwrap_or_default();
    tracing::info!(
        host,
        path = request.uri().path(),
        status = failure.status().as_u16(),
        "no route"
    );
    table
        .unmatched_metrics()
        .record(failure.status(), started.elapsed());
    failure.response()
}

#[cfg(test)]
mod tests;
