//! The reverse proxy: one request, start to end, as named phases over one per-request context.
//!
//! [`Proxy::handle`] is the list of phases, in order; it is the one place that order is written:
//!
//! 1. **route** — load the live table once (an `Arc`, so a swap mid-request never shows a
//!    half table), decide the host (two `Host` headers: 400; an absolute-form target's
//!    authority wins over `Host`), normalize the path ([`normalize`]), and find the rule among
//!    the routes of the socket the connection came in on ([`RouteScope`], [`route`]);
//! 2. **request filters** — Weir's own forwarding headers, then the rule's filters, so a
//!    filter can change what Weir set ([`request_filters`]);
//! 3. **select upstream** — the rule's balancer chooses a backend and an endpoint ([`select`]);
//!    an invalid backend's pick is answered 500 here, before anything is forwarded;
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

mod failover;
mod failure;
mod forward;
pub mod normalize;

use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
    time::Instant,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{
    HeaderValue, Request, Response, StatusCode, Uri,
    header::{CONTENT_LENGTH, CONTENT_TYPE, HOST},
    request::Parts,
};
use http_body_util::{Either, Full};
use hyper::body::{Body, Incoming};
use weir_contract::{BodyTimeout, HashKey};

pub use failure::Failure;
pub(crate) use forward::send as send_copy;

use crate::{
    ai::{self, AiBody, AiContext, AiRoute, AiSettings},
    balance::{BackendEndpoints, Endpoint, random, ring},
    filters::mirror::{MIRROR_BODY_LIMIT, Mirror},
    policy::retry::{self, TryOutcome},
    table::{RouteScope, RoutingTable, RuleTarget},
    upstream::{
        BodyLimitError, BoxError, GuardedBody, PoolSettings, ReplayBody, RequestBody, UpstreamBody,
        Upstreams,
    },
};

/// A response body: the upstream's, streamed; a short text of Weir's own; or an AI stream
/// pumped from a provider.
pub type ProxyBody = Either<UpstreamBody, Either<Full<Bytes>, AiBody>>;

/// A body of Weir's own, whole.
pub fn local_body(body: Full<Bytes>) -> ProxyBody {
    Either::Right(Either::Left(body))
}

/// Proxies requests by the live routing table.
pub struct Proxy {
    table: Arc<ArcSwap<RoutingTable>>,
    upstreams: Upstreams,
    settings: ProxySettings,
}

/// Defaults a rule may override.
#[derive(Clone)]
pub struct ProxySettings {
    /// The longest pause while a client sends a request body, for rules that set none.
    pub request_body_timeout: Option<Duration>,
    /// The largest request body kept to send again on a retry; a larger one is not retried.
    pub retry_buffer_bytes: usize,
    /// The AI gateway's limits.
    pub ai: AiSettings,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            request_body_timeout: Some(Duration::from_secs(60)),
            retry_buffer_bytes: 64 * 1024,
            ai: AiSettings::default(),
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
        let forwarded_for = match address.ip() {
            // Written by hand: `Display` for an address costs more than a whole request's
            // routing, and every new connection pays it.
            IpAddr::V4(ip) => HeaderValue::from_bytes(ipv4_text(ip).written())
                .expect("an IP address is a valid header value"),
            ip => HeaderValue::try_from(ip.to_string())
                .expect("an IP address is a valid header value"),
        };
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

/// An IPv4 address in dotted decimal, as `Display` writes it.
fn ipv4_text(ip: Ipv4Addr) -> DottedDecimal {
    let mut text = DottedDecimal {
        bytes: [0; 15],
        len: 0,
    };
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text.push(b'.');
        }
        if octet >= 100 {
            text.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            text.push(b'0' + octet / 10 % 10);
        }
        text.push(b'0' + octet % 10);
    }
    text
}

/// Room for the longest dotted-decimal IPv4 address, `255.255.255.255`.
struct DottedDecimal {
    bytes: [u8; 15],
    len: usize,
}

impl DottedDecimal {
    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn written(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// One request's state, threaded through the phases after it was routed.
struct RequestCtx<'r> {
    started: Instant,
    peer: &'r Peer,
    /// The rule the request matched, in the table the request holds.
    target: &'r RuleTarget,
    /// The prefix it matched by, for `ReplacePrefixMatch`.
    prefix: Option<&'r str>,
    /// Whether the client speaks gRPC, so Weir's own failures are gRPC statuses.
    grpc: bool,
}

/// What routing decided.
struct Routed<'t> {
    target: &'t RuleTarget,
    prefix: Option<&'t str>,
    host: Option<RequestHost>,
    /// The normalized path, when it differs from the one sent.
    normalized_path: Option<String>,
}

/// The upstream a try goes to: a backend of its rule and one of its endpoints.
#[derive(Clone, Copy)]
struct Selected<'r> {
    backend: &'r BackendEndpoints,
    endpoint: &'r Endpoint,
}

/// What the request filters decided.
enum Filtered {
    /// Forward it; the protocol an HTTP/1.1 client asked to upgrade to, if any.
    Forward(Option<HeaderValue>),
    /// A filter answered it (a redirect, a direct response, a rate limit).
    Answered(Response<Full<Bytes>>),
}

/// The request's consistent-hash key, and a cookie to set when the key was made up.
struct HashInput {
    key: Option<u64>,
    set_cookie: Option<HeaderValue>,
}

impl Proxy {
    pub fn new(table: Arc<ArcSwap<RoutingTable>>, settings: ProxySettings) -> Self {
        Self {
            table,
            upstreams: Upstreams::new(PoolSettings::default()),
            settings,
        }
    }

    /// The upstream connections it sends through.
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// Serves one request that came in on a socket of `scope`; never fails, errors become
    /// responses.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: &Peer,
        scope: &RouteScope,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        // This Arc keeps the table whole for the rest of the request.
        let table = self.table.load_full();

        // AIModels claim the AI paths on their hosts, and their prompts' paths, on the command
        // line's sockets; a table without any pays one branch.
        if let Some(index) = table.ai()
            && *scope == RouteScope::CommandLine
            && let Some(route) = AiRoute::of(request.uri().path())
            && let Ok(Some(host)) = RequestHost::of(&request)
        {
            let host = ai_host(host.value());
            if let Some(target) = route.claimed_by(index, &host) {
                let ctx = AiContext {
                    index,
                    upstreams: &self.upstreams,
                    settings: &self.settings.ai,
                };
                // Boxed: the AI path's state is several kilobytes, and every request's
                // future would otherwise be that large (and moved that much).
                return Box::pin(ai::serve(ctx, target, &host, request)).await;
            }
        }

        let routed = match route(&table, scope, &request) {
            Ok(routed) => routed,
            Err(failure) => return record_unrouted(&table, &request, started, failure),
        };
        let (mut parts, body) = request.into_parts();
        let ctx = RequestCtx {
            started,
            peer,
            target: routed.target,
            prefix: routed.prefix,
            grpc: is_grpc(&parts),
        };
        if let Some(path) = routed.normalized_path {
            set_path(&mut parts, &path);
        }
        let upgrade = match request_filters(&ctx, &mut parts, routed.host) {
            Filtered::Forward(upgrade) => upgrade,
            Filtered::Answered(response) => return record_answer(&ctx, response),
        };
        let hash = hash_input(&ctx, &parts);
        let Some(selected) = select(&ctx, hash.key) else {
            return record(&ctx, None, Err(Failure::NoEndpoint));
        };
        if let Some(reason) = &selected.backend.invalid {
            return record(&ctx, None, Err(Failure::InvalidBackend(reason.clone())));
        }
        let outcome = forward(self, &ctx, selected, hash.key, parts, body, upgrade).await;
        let outcome = outcome.map(|(mut response, selected)| {
            response_filters(&ctx, &selected, hash.set_cookie, &mut response);
            (response, selected)
        });
        match outcome {
            Ok((response, selected)) => record(&ctx, Some(&selected), Ok(response)),
            Err((failure, selected)) => record(&ctx, selected.as_ref(), Err(failure)),
        }
    }
}

/// The request path without I/O, for micro-benchmarks of what filters and policies cost
/// (`cargo bench -p weir-gateway --bench filters`); the proxy never calls it.
///
/// Every phase of [`Proxy::handle`] but the send runs on a request without a body: route,
/// request filters (rate limit and answers included), hash key, select (with the in-flight
/// count least-request keeps), the backend's filters, response filters on `upstream` standing
/// in for the upstream's answer, and the metrics. Mirrors are sampled but not sent.
#[doc(hidden)]
pub fn dry_run(
    table: &RoutingTable,
    request: Request<()>,
    peer: &Peer,
    upstream: Response<()>,
) -> Response<()> {
    let started = Instant::now();
    let routed = match route(table, &RouteScope::CommandLine, &request) {
        Ok(routed) => routed,
        Err(failure) => {
            table
                .unmatched_metrics()
                .record(failure.status(), started.elapsed());
            return failure.response(false).map(|_| ());
        }
    };
    let (mut parts, ()) = request.into_parts();
    let ctx = RequestCtx {
        started,
        peer,
        target: routed.target,
        prefix: routed.prefix,
        grpc: is_grpc(&parts),
    };
    if let Some(path) = routed.normalized_path {
        set_path(&mut parts, &path);
    }
    if let Filtered::Answered(response) = request_filters(&ctx, &mut parts, routed.host) {
        return record_answer(&ctx, response).map(|_| ());
    }
    for mirror in ctx.target.filters.mirrors.iter() {
        std::hint::black_box(mirror.sampled());
    }
    let hash = hash_input(&ctx, &parts);
    let Some(selected) = select(&ctx, hash.key) else {
        return record(&ctx, None, Err(Failure::NoEndpoint)).map(|_| ());
    };
    if let Some(reason) = &selected.backend.invalid {
        return record(&ctx, None, Err(Failure::InvalidBackend(reason.clone()))).map(|_| ());
    }
    let in_flight = ctx
        .target
        .tracks_load
        .then(|| selected.endpoint.load.start());
    if !selected.backend.filters.is_empty() {
        selected.backend.filters.apply_request(&mut parts.headers);
    }
    std::hint::black_box(&parts);
    let mut response = upstream;
    response_filters(&ctx, &selected, hash.set_cookie, &mut response);
    drop(in_flight);
    ctx.target
        .metrics()
        .record(response.status(), ctx.started.elapsed());
    response
}

/// A Host value as the AI index keys it: lowercase, without a port.
fn ai_host(value: &HeaderValue) -> Cow<'_, str> {
    let host = crate::table::strip_port(value.to_str().unwrap_or_default());
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
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

/// Phase 1, route: the rule the request matches among the routes of `scope` in `table`, the
/// host it is for, and its normalized path.
fn route<'t, B>(
    table: &'t RoutingTable,
    scope: &RouteScope,
    request: &Request<B>,
) -> Result<Routed<'t>, Failure> {
    let host = RequestHost::of(request)?;
    let host_name = host
        .as_ref()
        .and_then(|h| h.value().to_str().ok())
        .unwrap_or_default();
    let uri = request.uri();
    let path = normalize::normalize(uri.path())
        .map_err(|_| Failure::BadRequest("weir: the path climbs above the root\n"))?;
    let matched = table
        .find(
            scope,
            host_name,
            request.method(),
            &path,
            uri.query(),
            request.headers(),
        )
        .ok_or(Failure::NoRoute)?;
    Ok(Routed {
        target: matched.target,
        prefix: matched.prefix,
        host,
        normalized_path: match path {
            Cow::Borrowed(_) => None,
            Cow::Owned(path) => Some(path),
        },
    })
}

/// Phase 2, request filters: the rule's rate limit, a filter that answers the request itself,
/// Weir's forwarding headers, then the rule's header modifiers and rewrite.
fn request_filters(ctx: &RequestCtx<'_>, parts: &mut Parts, host: Option<RequestHost>) -> Filtered {
    let target = ctx.target;
    if let Some(limiter) = &target.rate_limiter
        && let Err(limited) = limiter.check(ctx.peer.address.ip(), &parts.headers)
    {
        if let Some(metrics) = &target.policy_metrics {
            metrics.rate_limited.inc();
        }
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"weir: rate limit exceeded\n",
        )));
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        limiter.refusal_headers(limited, response.headers_mut());
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Filtered::Answered(response);
    }
    if let Some(response) = target.filters.answer(parts, ctx.prefix, ctx.peer.secure) {
        return Filtered::Answered(response);
    }
    let upgrade = forward::prepare(parts, host, ctx.peer);
    target.filters.apply_request(parts, ctx.prefix);
    Filtered::Forward(upgrade)
}

/// The consistent-hash key of a request, for rules that hash.
fn hash_input(ctx: &RequestCtx<'_>, parts: &Parts) -> HashInput {
    let Some(key) = ctx.target.hash_key() else {
        return HashInput {
            key: None,
            set_cookie: None,
        };
    };
    match key {
        HashKey::Header(name) => HashInput {
            key: parts
                .headers
                .get(name)
                .map(|v| ring::stable_hash(v.as_bytes())),
            set_cookie: None,
        },
        HashKey::SourceIp => HashInput {
            key: Some(ring::stable_hash(ctx.peer.address.ip())),
            set_cookie: None,
        },
        HashKey::Cookie { name, ttl } => match cookie(&parts.headers, name) {
            Some(value) => HashInput {
                key: Some(ring::stable_hash(value.as_bytes())),
                set_cookie: None,
            },
            None => {
                // A new client: a random value, kept by the client from now on.
                let value = format!("{:016x}", random::next_u64());
                let mut set_cookie = format!("{name}={value}; Path=/; HttpOnly");
                if let Some(ttl) = ttl {
                    set_cookie.push_str(&format!("; Max-Age={}", ttl.as_secs()));
                }
                HashInput {
                    key: Some(ring::stable_hash(value.as_bytes())),
                    set_cookie: HeaderValue::from_str(&set_cookie).ok(),
                }
            }
        },
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// Phase 3, select upstream: the backend and endpoint the rule's balancer picks next,
/// avoiding ejected endpoints; `None` when no backend has a ready endpoint. The pick may be an
/// invalid backend's (its share of the rule's requests), which the caller answers 500.
fn select<'r>(ctx: &RequestCtx<'r>, hash: Option<u64>) -> Option<Selected<'r>> {
    let (backend, endpoint) = ctx.target.balancer.pick_avoiding(hash, is_ejected)?;
    Some(Selected { backend, endpoint })
}

/// Phase 3 again, for a retry: an endpoint of a valid backend, avoiding ejected endpoints and
/// those in `tried` while another is left, without moving the rule's rotation
/// ([`Balancer::pick_retry`](crate::balance::Balancer::pick_retry)).
fn select_retry<'r>(
    ctx: &RequestCtx<'r>,
    hash: Option<u64>,
    tried: &[&Endpoint],
) -> Option<Selected<'r>> {
    let (backend, endpoint) = ctx.target.balancer.pick_retry(hash, |endpoint| {
        is_ejected(endpoint) || tried.iter().any(|t| std::ptr::eq(*t, endpoint))
    })?;
    Some(Selected { backend, endpoint })
}

fn is_ejected(endpoint: &Endpoint) -> bool {
    endpoint.health.as_ref().is_some_and(|h| h.is_ejected())
}

/// Phase 4, forward: mirrors get their copies, then the request goes to the selected endpoint;
/// a failed try is retried (on another endpoint when there is one) as the rule's retry policy
/// and budget allow, within the rule's request timeout. An upgrade the upstream accepts
/// becomes a tunnel.
async fn forward<'r>(
    proxy: &Proxy,
    ctx: &RequestCtx<'r>,
    selected: Selected<'r>,
    hash: Option<u64>,
    parts: Parts,
    body: Incoming,
    upgrade: Option<HeaderValue>,
) -> Result<(Response<UpstreamBody>, Selected<'r>), (Failure, Option<Selected<'r>>)> {
    let target = ctx.target;
    let fail = |failure| (failure, Some(selected));
    let mut body = guard_body(proxy, ctx, &parts, body).map_err(fail)?;
    if !target.filters.mirrors.is_empty() {
        body = mirror(proxy, ctx, &parts, body).await.map_err(fail)?;
    }
    let Some(retry) = &target.policy.retry else {
        // The common case: one try, the request moved rather than copied.
        let pick_by = failover::PickBy { hash, earlier: &[] };
        let tried = try_once(proxy, ctx, selected, pick_by, parts, body, upgrade);
        let (outcome, answered) = match target.policy.timeouts.request {
            Some(limit) => match tokio::time::timeout(limit, tried).await {
                Ok(tried) => tried.answered(),
                Err(_) => (Err(Failure::Timeout), selected),
            },
            None => tried.await.answered(),
        };
        return match outcome {
            Ok(response) => Ok((response, answered)),
            Err(failure) => Err((failure, Some(answered))),
        };
    };
    // Boxed: the retry loop's state is the size of a try and more, which every request's
    // future would otherwise carry and move; a rule with retries pays one allocation.
    let retries = Box::pin(retry_loop(proxy, ctx, retry, selected, hash, parts, body));
    match target.policy.timeouts.request {
        Some(limit) => tokio::time::timeout(limit, retries)
            .await
            .unwrap_or(Err((Failure::Timeout, Some(selected)))),
        None => retries.await,
    }
}

/// Tries, and retries while the policy, the budget and the body allow.
///
/// A retry never goes to an invalid backend, and does not move the rule's rotation: first
/// picks alone give each backend its share (an invalid backend's pick is answered 500 and
/// never retried, since nothing was sent), and a retry looks for an upstream that may answer
/// better than the one that failed, which a 500 of Weir's own never does.
async fn retry_loop<'r>(
    proxy: &Proxy,
    ctx: &RequestCtx<'r>,
    retry: &weir_contract::RetryPolicy,
    first: Selected<'r>,
    hash: Option<u64>,
    parts: Parts,
    body: RequestBody,
) -> Result<(Response<UpstreamBody>, Selected<'r>), (Failure, Option<Selected<'r>>)> {
    let target = ctx.target;
    let metrics = target.policy_metrics.as_ref();
    if let Some(budget) = &target.retry_budget {
        budget.deposit();
    }
    // A retry needs the body again: it is recorded as it streams (up to the retry buffer), and
    // each try gets a handle that replays it. `recorded` itself is never sent; it only makes
    // handles. A body with nothing in it needs no record.
    let empty_body = body.is_end_stream();
    let mut recorded =
        (!empty_body).then(|| ReplayBody::new(body, proxy.settings.retry_buffer_bytes));
    let mut selected = first;
    let mut tried: Vec<&Endpoint> = Vec::with_capacity(retry.attempts as usize + 1);
    let mut retries = 0;
    loop {
        let this_body = match recorded.as_ref().map(ReplayBody::try_clone) {
            None => RequestBody::empty(),
            Some(Some(handle)) => RequestBody::Replay(handle),
            // Known to be too long to record: sent once, as it is, and never retried.
            Some(None) => RequestBody::Replay(recorded.take().expect("matched Some")),
        };
        if let Some(metrics) = metrics {
            metrics.upstream_attempts.inc();
        }
        // A connection that cannot be opened is failed over to another endpoint within the
        // try, as without a policy: nothing was sent, so it costs neither an attempt nor the
        // budget, and it is bounded per try. The policy's attempts count tries, so a refusing
        // endpoint makes no more tries than a failing one, and each retry avoids every
        // endpoint the earlier tries went to, failed-over ones included.
        let this_try = try_once(
            proxy,
            ctx,
            selected,
            failover::PickBy {
                hash,
                earlier: &tried,
            },
            copy_parts(&parts),
            this_body,
            None,
        )
        .await;
        tried.extend(this_try.endpoints.iter());
        let (outcome, answered) = this_try.answered();
        selected = answered;
        let classified = match &outcome {
            Ok(response) => TryOutcome::Status(response.status()),
            Err(Failure::Connect(_)) => TryOutcome::ConnectFailure,
            Err(Failure::Upstream(_)) | Err(Failure::Timeout) => TryOutcome::Reset,
            // Weir's own refusals (body limits) are not the upstream's to retry.
            Err(_) => {
                return outcome
                    .map(|r| (r, selected))
                    .map_err(|f| (f, Some(selected)));
            }
        };
        let body_can_be_sent_again =
            empty_body || recorded.as_ref().is_some_and(ReplayBody::can_replay);
        let may_retry = retries < retry.attempts
            && retry::retryable(retry, &parts.method, classified)
            && body_can_be_sent_again;
        if !may_retry {
            return outcome
                .map(|r| (r, selected))
                .map_err(|f| (f, Some(selected)));
        }
        if let Some(budget) = &target.retry_budget
            && !budget.withdraw()
        {
            if let Some(metrics) = metrics {
                metrics.retry_budget_exhausted.inc();
            }
            return outcome
                .map(|r| (r, selected))
                .map_err(|f| (f, Some(selected)));
        }
        retries += 1;
        if let Some(metrics) = metrics {
            metrics.retries.inc();
        }
        tracing::debug!(route = %target.route, rule = target.rule_index, upstream = %selected.endpoint.target, retry = retries, ?classified, "retrying");
        // The failed try's response (if any) is dropped unread: its connection closes.
        drop(outcome);
        tokio::time::sleep(retry::backoff(retry, retries)).await;
        selected = select_retry(ctx, hash, &tried).unwrap_or(selected);
    }
}

/// A copy of the request head, for one more try.
fn copy_parts(parts: &Parts) -> Parts {
    let (mut copy, ()) = Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .version(parts.version)
        .body(())
        .expect("a copy of a valid request head is valid")
        .into_parts();
    copy.headers = parts.headers.clone();
    copy
}

/// One try: the backend's filters, then the request goes to the endpoint within the try's
/// timeout; the endpoint's health and load hear how it went. When the connection to the
/// endpoint cannot be opened, the same request goes to another endpoint of the backend
/// ([`failover`]), picked `pick_by`.
async fn try_once<'r>(
    proxy: &Proxy,
    ctx: &RequestCtx<'r>,
    selected: Selected<'r>,
    pick_by: failover::PickBy<'_, 'r>,
    mut parts: Parts,
    body: RequestBody,
    upgrade: Option<HeaderValue>,
) -> Tried<'r> {
    let Selected { backend, endpoint } = selected;
    if !backend.filters.is_empty() {
        backend.filters.apply_request(&mut parts.headers);
    }
    let extended_connect = forward::websocket_over_http2(&parts);
    let client_upgrade = match upgrade {
        _ if extended_connect && forward::can_upgrade(&endpoint.target) => {
            forward::ask_websocket_of_http2_client(&mut parts)
        }
        Some(protocol) if forward::can_upgrade(&endpoint.target) => {
            forward::ask_upgrade(&mut parts, protocol)
        }
        _ => None,
    };
    let in_flight = ctx.target.tracks_load.then(|| endpoint.load.start());
    forward::point_at(&mut parts, &endpoint.target);
    let sent = forward::send_or_give_back(
        &proxy.upstreams,
        &endpoint.target,
        Request::from_parts(parts, body),
        ctx.target.policy.timeouts.backend_request,
    )
    .await;
    let (outcome, in_flight, endpoints) = match sent {
        Err(forward::SendFailure {
            failure,
            unsent: Some(request),
        }) => {
            hear(ctx, selected, Err(&failure));
            drop(in_flight);
            // Boxed: the failure path's state stays out of every request's future.
            let failed_over = Box::pin(failover::failover(
                proxy, ctx, selected, pick_by, request, failure,
            ))
            .await;
            (
                failed_over.outcome,
                failed_over.in_flight,
                failed_over.endpoints,
            )
        }
        sent => {
            let outcome = sent.map_err(|failed| failed.failure);
            hear(ctx, selected, outcome.as_ref());
            (outcome, in_flight, failover::Endpoints::one(selected))
        }
    };
    let outcome = outcome.map(|mut response| {
        if let Some(in_flight) = in_flight {
            response.body_mut().hold(in_flight);
        }
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            forward::tunnel(client_upgrade, &mut response, ctx.target.route.clone());
            if extended_connect {
                forward::answer_extended_connect(&mut response);
            }
        }
        response
    });
    Tried { outcome, endpoints }
}

/// How one try went, and the endpoints it went to, in order: the last one's is the outcome.
struct Tried<'r> {
    outcome: Result<Response<UpstreamBody>, Failure>,
    endpoints: failover::Endpoints<'r>,
}

impl<'r> Tried<'r> {
    /// The outcome, and the endpoint it came from.
    fn answered(self) -> (Result<Response<UpstreamBody>, Failure>, Selected<'r>) {
        (self.outcome, self.endpoints.last())
    }
}

/// The endpoint's health (under outlier detection) hears how a send to it went: a 5xx, a
/// failed connection, a reset or a timeout is a failure.
fn hear(
    ctx: &RequestCtx<'_>,
    selected: Selected<'_>,
    outcome: Result<&Response<UpstreamBody>, &Failure>,
) {
    let Selected { backend, endpoint } = selected;
    let Some(health) = &endpoint.health else {
        return;
    };
    let failed = match outcome {
        Ok(response) => response.status().is_server_error(),
        Err(Failure::Connect(_) | Failure::Upstream(_) | Failure::Timeout) => true,
        Err(_) => false,
    };
    if !failed {
        health.succeeded();
    } else if let Some(ejected_for) =
        health.failed(backend.endpoints.iter().filter_map(|e| e.health.as_deref()))
    {
        if let Some(metrics) = &ctx.target.policy_metrics {
            metrics.ejections.inc();
        }
        tracing::warn!(route = %ctx.target.route, rule = ctx.target.rule_index, service = %backend.service, upstream = %endpoint.target, ?ejected_for, "endpoint ejected by outlier detection");
    }
}

/// Sends the mirrors of the rule their copies, and gives back the body to forward. A body is
/// read whole (up to the mirror limit) so that the copies can carry it; a larger one goes on
/// unread and is not mirrored.
async fn mirror(
    proxy: &Proxy,
    ctx: &RequestCtx<'_>,
    parts: &Parts,
    body: RequestBody,
) -> Result<RequestBody, Failure> {
    let mirrors: Vec<&Mirror> = ctx
        .target
        .filters
        .mirrors
        .iter()
        .filter(|m| m.sampled())
        .collect();
    if mirrors.is_empty() {
        return Ok(body);
    }
    let metrics = ctx.target.policy_metrics.as_ref();
    let (bytes, body) = if body.is_end_stream() {
        (Some(Bytes::new()), body)
    } else {
        match read_up_to(body, MIRROR_BODY_LIMIT).await {
            Ok(Whole(bytes)) => (Some(bytes.clone()), RequestBody::from(bytes)),
            Ok(Partial(body)) => (None, body),
            Err(failure) => return Err(failure),
        }
    };
    for mirror in mirrors {
        match &bytes {
            Some(bytes) => mirror.fire(&proxy.upstreams, parts, bytes.clone(), metrics),
            None => {
                if let Some(metrics) = metrics {
                    metrics.mirror_skipped.inc();
                }
            }
        }
    }
    Ok(body)
}

/// A body read up to a limit: whole, or (past the limit) what was read followed by the rest.
enum ReadUpTo {
    Whole(Bytes),
    Partial(RequestBody),
}
use ReadUpTo::{Partial, Whole};

async fn read_up_to(mut body: RequestBody, limit: usize) -> Result<ReadUpTo, Failure> {
    use http_body_util::BodyExt;
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| match error.downcast_ref::<BodyLimitError>() {
            Some(BodyLimitError::TooLarge { .. }) => Failure::BodyTooLarge,
            Some(BodyLimitError::Stalled(_)) => Failure::BodyStalled,
            None => Failure::BadRequest("weir: the request body could not be read\n"),
        })?;
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            if read.len() > limit {
                let prefix = futures_prefix(read.freeze(), body);
                return Ok(Partial(prefix));
            }
        }
    }
    Ok(Whole(read.freeze()))
}

/// `prefix` followed by the rest of `body`.
fn futures_prefix(prefix: Bytes, body: RequestBody) -> RequestBody {
    use http_body_util::{BodyExt, Full};
    let first = Full::new(prefix).map_err(|never| match never {});
    RequestBody::boxed(ChainBody {
        first: Some(first),
        rest: body,
    })
}

/// One body, then another.
struct ChainBody<A, B> {
    first: Option<A>,
    rest: B,
}

impl<A, B> hyper::body::Body for ChainBody<A, B>
where
    A: hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin,
    B: hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        if let Some(first) = &mut self.first {
            match std::task::ready!(std::pin::Pin::new(first).poll_frame(cx)) {
                Some(frame) => return std::task::Poll::Ready(Some(frame)),
                None => self.first = None,
            }
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }
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
    Ok(GuardedBody::new(body, max_bytes, max_pause).into())
}

/// Phase 5, response filters: the upstream's hop-by-hop headers out (but those of an
/// accepted upgrade), the backend's and the rule's response filters, a hashing cookie set.
fn response_filters<B>(
    ctx: &RequestCtx<'_>,
    selected: &Selected<'_>,
    set_cookie: Option<HeaderValue>,
    response: &mut Response<B>,
) {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        forward::remove_hop_by_hop(response.headers_mut());
    }
    selected
        .backend
        .filters
        .apply_response(response.headers_mut());
    ctx.target.filters.apply_response(response.headers_mut());
    if let Some(cookie) = set_cookie {
        response
            .headers_mut()
            .append(http::header::SET_COOKIE, cookie);
    }
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
                    tracing::warn!(route = %target.route, rule = target.rule_index, ?services, status = status.as_u16(), error = failure.error_chain(), "{}", failure.summary());
                }
                Some(selected) => tracing::warn!(
                    route = %target.route,
                    rule = target.rule_index,
                    service = %selected.backend.service,
                    upstream = %selected.endpoint.target,
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

/// Phase 6 for a request a filter answered.
fn record_answer(ctx: &RequestCtx<'_>, response: Response<Full<Bytes>>) -> Response<ProxyBody> {
    let mut response = response.map(local_body);
    ctx.target.filters.apply_response(response.headers_mut());
    ctx.target
        .metrics()
        .record(response.status(), ctx.started.elapsed());
    response
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
