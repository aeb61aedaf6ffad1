//! Preparing a request for the next hop, and sending it there.
//!
//! Two steps, in two phases: [`prepare`] (before the rule's filters, so a filter can change
//! what Weir sets) drops hop-by-hop headers and adds the forwarding headers; [`send`] (once an
//! upstream is chosen) points the request at it, in the upstream's protocol, and forwards it
//! within the rule's timeout.
//!
//! An HTTP/1.1 `Upgrade` (WebSocket) is hop-by-hop too, but not dropped: the upstream is asked
//! for the same upgrade ([`ask_upgrade`]), and when it answers `101` the two connections are
//! joined into a tunnel ([`tunnel`]) that lives on after the request, outside any routing
//! table, until either side closes or Weir has drained at shutdown. A WebSocket opened over
//! HTTP/2 (RFC 8441: `CONNECT` with `:protocol websocket`) is asked of the upstream as the
//! HTTP/1.1 upgrade it knows, and its `101` answered to the client as the `200` HTTP/2
//! expects ([`websocket_over_http2`], [`answer_extended_connect`]). `te: trailers` is the one
//! `TE` value forwarded: gRPC needs it end to end.
//!
//! This is the hot path, and it is kept lean: nothing is formatted or allocated per request
//! that can be done once per connection ([`Peer`]) or once per table, and headers are only
//! removed when present.

use std::{sync::Arc, time::Duration};

use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, Uri, Version,
    header::{CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE},
    request::Parts,
    uri::{Authority, Scheme},
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use weir_contract::Protocol;

use super::{Peer, RequestHost, failure::Failure};
use crate::upstream::{RequestBody, Target, UpstreamBody, Upstreams};

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

/// Fixes the request's headers for the next hop: hop-by-hop headers out, `X-Forwarded-For`,
/// `-Proto` and `-Host` in, and the client's Host kept (or set from the authority it used).
/// Returns the protocol an HTTP/1.1 client asked to upgrade to, if it asked.
pub fn prepare(parts: &mut Parts, host: Option<RequestHost>, peer: &Peer) -> Option<HeaderValue> {
    let headers = &mut parts.headers;
    let upgrade = if parts.version == Version::HTTP_11 {
        upgrade_asked(headers)
    } else {
        None
    };
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
    let proto = if peer.secure { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host.value().clone());
        if let RequestHost::Authority(authority) = host {
            headers.insert(HOST, authority);
        }
    }
    upgrade
}

/// The `Upgrade` value of a request whose `Connection` names `upgrade`.
fn upgrade_asked(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(UPGRADE)?;
    let asked = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asked.then(|| upgrade.clone())
}

/// Whether an upgrade can be asked of `target`: HTTP/1.1 only.
pub fn can_upgrade(target: &Target) -> bool {
    target.protocol() == Protocol::Http1
}

/// Asks the upstream for the upgrade the client asked for, and takes the client's side of it.
pub fn ask_upgrade(parts: &mut Parts, protocol: HeaderValue) -> Option<OnUpgrade> {
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(UPGRADE, protocol);
    parts.extensions.remove::<OnUpgrade>()
}

/// The WebSocket key header: random, as RFC 6455 §4.1 asks of a client.
static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// Whether the request opens a WebSocket over HTTP/2 (RFC 8441 extended CONNECT).
pub fn websocket_over_http2(parts: &Parts) -> bool {
    parts.method == http::Method::CONNECT
        && parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// Turns an extended CONNECT into the HTTP/1.1 WebSocket handshake an upstream knows: `GET`,
/// `Upgrade: websocket`, and a fresh `Sec-WebSocket-Key` (the client's version, subprotocols
/// and extensions go as they came). Returns the client's side of the upgrade.
pub fn ask_websocket_of_http2_client(parts: &mut Parts) -> Option<OnUpgrade> {
    parts.method = http::Method::GET;
    parts.extensions.remove::<hyper::ext::Protocol>();
    let mut key = [0u8; 16];
    if rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut key)
        .is_err()
    {
        return None;
    }
    let key = HeaderValue::from_str(&base64(&key)).ok()?;
    parts.headers.insert(SEC_WEBSOCKET_KEY.clone(), key);
    ask_upgrade(parts, HeaderValue::from_static("websocket"))
}

/// Answers the HTTP/2 client's extended CONNECT: the upstream's `101` becomes `200`, without
/// the HTTP/1.1 handshake's own headers.
pub fn answer_extended_connect<B>(response: &mut Response<B>) {
    *response.status_mut() = http::StatusCode::OK;
    let headers = response.headers_mut();
    for name in [&CONNECTION, &UPGRADE, &SEC_WEBSOCKET_ACCEPT] {
        headers.remove(name);
    }
}

/// Standard base64 with padding, for the few bytes of a WebSocket key.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Joins the client's and the upstream's upgraded connections once both are handed over.
pub fn tunnel(client: OnUpgrade, response: &mut Response<UpstreamBody>, route: Arc<str>) {
    let upstream = hyper::upgrade::on(response);
    crate::listener::spawn_tunnel(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::warn!(%route, %error, "upgrade not completed");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((sent, received)) => {
                tracing::debug!(%route, sent, received, "tunnel closed")
            }
            Err(error) => tracing::debug!(%route, %error, "tunnel ended with an error"),
        }
    });
}

/// Points the request at `target` and sends it, within `timeout` until the response headers.
pub async fn send(
    upstreams: &Upstreams,
    target: &Target,
    mut parts: Parts,
    body: impl Into<RequestBody>,
    timeout: Option<Duration>,
) -> Result<Response<UpstreamBody>, Failure> {
    point_at(&mut parts, target);
    send_or_give_back(
        upstreams,
        target,
        Request::from_parts(parts, body.into()),
        timeout,
    )
    .await
    .map_err(|failed| failed.failure)
}

/// A send that failed, with the request when none of it reached the upstream.
pub struct SendFailure {
    pub failure: Failure,
    /// The request as it was pointed at the target, when not a byte of it was written.
    pub unsent: Option<Box<Request<RequestBody>>>,
}

/// Sends a request already [pointed](point_at) at `target`, within `timeout` until the
/// response headers; gives it back with the failure when none of it was written.
pub async fn send_or_give_back(
    upstreams: &Upstreams,
    target: &Target,
    request: Request<RequestBody>,
    timeout: Option<Duration>,
) -> Result<Response<UpstreamBody>, SendFailure> {
    let forwarded = upstreams.send_or_give_back(target, request);
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, forwarded).await {
            Ok(result) => result,
            Err(_) => {
                return Err(SendFailure {
                    failure: Failure::Timeout,
                    unsent: None,
                });
            }
        },
        None => forwarded.await,
    };
    result.map_err(|failed| SendFailure {
        failure: Failure::from_upstream(failed.error),
        unsent: failed.unsent,
    })
}

/// Points the request at `target`, in the upstream's protocol.
///
/// HTTP/1.1 gets the URI in origin form (`/path?query`) and a Host; a request without one
/// (HTTP/1.0) names the target, as the next hop expects one. HTTP/2 gets the host as the
/// `:authority` of an absolute URI instead. The client's own HTTP version does not matter.
pub fn point_at(parts: &mut Parts, target: &Target) {
    match target.protocol() {
        Protocol::Http1 => {
            if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
                parts.uri = match parts.uri.path_and_query() {
                    Some(path_and_query) => Uri::from(path_and_query.clone()),
                    None => Uri::from_static("/"),
                };
            }
            parts.version = Version::HTTP_11;
            if !parts.headers.contains_key(HOST)
                && let Ok(authority) = HeaderValue::from_str(target.authority().as_str())
            {
                parts.headers.insert(HOST, authority);
            }
        }
        Protocol::Http2 => {
            let authority = parts
                .headers
                .remove(HOST)
                .and_then(|host| Authority::try_from(host.as_bytes()).ok())
                .unwrap_or_else(|| target.authority().clone());
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.scheme = Some(if target.is_tls() {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            });
            uri.authority = Some(authority);
            if uri.path_and_query.is_none() {
                uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
            }
            parts.uri = Uri::from_parts(uri).unwrap_or_else(|_| Uri::from_static("/"));
            parts.version = Version::HTTP_2;
        }
    }
}

/// Points a request that was pointed at `from` (and never sent) at `to`, an endpoint of the
/// same backend, so of the same protocol and TLS: only a host [`point_at`] took from `from`
/// itself, for a request that named none, changes.
pub fn repoint(request: &mut Request<RequestBody>, from: &Target, to: &Target) {
    let (from, to) = (from.authority(), to.authority());
    let host = request.headers().get(HOST);
    if host.is_some_and(|host| host.as_bytes() == from.as_str().as_bytes())
        && let Ok(authority) = HeaderValue::from_str(to.as_str())
    {
        request.headers_mut().insert(HOST, authority);
    }
    if request.uri().authority() == Some(from) {
        let mut uri = std::mem::take(request.uri_mut()).into_parts();
        uri.authority = Some(to.clone());
        *request.uri_mut() = Uri::from_parts(uri).unwrap_or_else(|_| Uri::from_static("/"));
    }
}

/// Removes the headers that belong to one connection, including those `Connection` names.
///
/// Most messages carry none of them: one pass over the names finds out which are present, and
/// only those are removed (each removal a hash lookup). The names `Connection` lists are looked
/// up as they are written, with no `HeaderName` made for them: the usual `close` or
/// `keep-alive` would otherwise cost an allocation per request.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Bit i: HOP_BY_HOP[i] is present.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| *hop == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    let te_trailers = headers
        .get(TE)
        .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    // A copy (a reference count) so that the map can be changed while its names are read.
    if let Some(connection) = headers.get(CONNECTION).cloned()
        && let Ok(listed) = connection.to_str()
    {
        for name in listed.split(',').map(str::trim) {
            if !name.is_empty() {
                headers.remove(name);
            }
        }
    }
    for (i, name) in HOP_BY_HOP.into_iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_contract::Protocol;

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

    #[test]
    fn connection_names_any_case_and_spacing_and_te_trailers_stays() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("close,, X-Secret ,TE"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        let mut names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["te", "x-kept"]);
        assert_eq!(headers[TE], "trailers");

        let mut headers = HeaderMap::new();
        headers.insert("x-kept", HeaderValue::from_static("1"));
        headers.insert("x-listed", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(
            headers.len(),
            2,
            "nothing is removed from a message without Connection"
        );
    }

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn prepare_appends_the_client_to_x_forwarded_for_and_names_the_host() {
        let mut request = parts(
            Request::get("/")
                .header(HOST, "echo.local")
                .header("x-forwarded-for", "203.0.113.1")
                .body(())
                .unwrap(),
        );
        let host = Some(RequestHost::Header(HeaderValue::from_static("echo.local")));
        prepare(
            &mut request,
            host,
            &Peer::new(([192, 0, 2, 7], 4000).into(), false),
        );
        assert_eq!(request.headers["x-forwarded-for"], "203.0.113.1, 192.0.2.7");
        assert_eq!(request.headers["x-forwarded-proto"], "http");
        assert_eq!(request.headers["x-forwarded-host"], "echo.local");
        assert_eq!(request.headers[HOST], "echo.local");
    }

    #[test]
    fn prepare_turns_an_http2_authority_into_a_host_header() {
        let mut request = parts(Request::get("http://echo.local/x").body(()).unwrap());
        let host = Some(RequestHost::Authority(HeaderValue::from_static(
            "echo.local",
        )));
        prepare(
            &mut request,
            host,
            &Peer::new(([192, 0, 2, 7], 4000).into(), true),
        );
        assert_eq!(request.headers[HOST], "echo.local");
        assert_eq!(request.headers["x-forwarded-proto"], "https");
    }

    #[test]
    fn base64_encodes_a_websocket_key() {
        // RFC 6455 §1.3's sample nonce.
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn te_trailers_is_the_one_te_forwarded_and_an_upgrade_is_remembered() {
        let mut request = parts(
            Request::get("/")
                .header(HOST, "a")
                .header(TE, "trailers")
                .header(CONNECTION, "keep-alive, Upgrade")
                .header(UPGRADE, "websocket")
                .body(())
                .unwrap(),
        );
        let peer = Peer::new(([192, 0, 2, 7], 1).into(), false);
        let upgrade = prepare(&mut request, None, &peer);
        assert_eq!(upgrade.unwrap(), "websocket");
        assert_eq!(request.headers[TE], "trailers");
        assert!(
            !request.headers.contains_key(UPGRADE),
            "re-added only if the upstream can upgrade"
        );
        let mut gzip = HeaderMap::new();
        gzip.insert(TE, HeaderValue::from_static("gzip"));
        remove_hop_by_hop(&mut gzip);
        assert!(gzip.is_empty());
    }

    /// A closed port: `send` fails after pointing the request at it, before any byte is sent.
    fn closed_target() -> Target {
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        Target::socket(address, Protocol::Http1)
    }

    #[tokio::test]
    async fn send_maps_an_unreachable_upstream_to_a_connect_failure() {
        let request = parts(Request::get("http://echo.local/x").body(()).unwrap());
        let failure = send(
            &Upstreams::default(),
            &closed_target(),
            request,
            RequestBody::empty(),
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(failure, Failure::Connect(_)), "{failure:?}");
    }

    #[tokio::test]
    async fn send_gives_up_at_the_rule_timeout() {
        // A listener that accepts but never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target::socket(silent.local_addr().unwrap(), Protocol::Http1);
        let request = parts(Request::get("/x").header(HOST, "a").body(()).unwrap());
        let failure = send(
            &Upstreams::default(),
            &target,
            request,
            RequestBody::empty(),
            Some(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
        assert!(matches!(failure, Failure::Timeout), "{failure:?}");
    }
}
