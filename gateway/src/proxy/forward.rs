//! Preparing a request for the next hop, and sending it there.
//!
//! Two steps, in two phases: [`prepare`] (before the rule's filters, so a filter can change
//! what Weir sets) drops hop-by-hop headers and adds the forwarding headers; [`send`] (once an
//! upstream is chosen) points the request at it and forwards it within the rule's timeout.
//!
//! This is the hot path, and it is kept lean: nothing is formatted or allocated per request
//! that can be done once per connection ([`Peer`]) or once per table, and headers are only
//! removed when present.

use std::time::Duration;

use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, Uri, Version,
    header::{CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE},
    request::Parts,
};

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
pub fn prepare(parts: &mut Parts, host: Option<RequestHost>, peer: &Peer) {
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
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host.value().clone());
        if let RequestHost::Authority(authority) = host {
            headers.insert(HOST, authority);
        }
    }
}

/// Points the request at `target` and sends it, within `timeout` until the response headers.
///
/// The URI goes out in origin form (`/path?query`), in the target's protocol; a request
/// without a Host (HTTP/1.0) names the target, as the next hop expects one.
pub async fn send(
    upstreams: &Upstreams,
    target: &Target,
    mut parts: Parts,
    body: impl Into<RequestBody>,
    timeout: Option<Duration>,
) -> Result<Response<UpstreamBody>, Failure> {
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = match parts.uri.path_and_query() {
            Some(path_and_query) => Uri::from(path_and_query.clone()),
            None => Uri::from_static("/"),
        };
    }
    // HTTP/1.1 to the upstream, whatever the client spoke.
    parts.version = Version::HTTP_11;
    if !parts.headers.contains_key(HOST)
        && let Ok(authority) = HeaderValue::from_str(target.authority().as_str())
    {
        parts.headers.insert(HOST, authority);
    }
    let forwarded = upstreams.send(target, Request::from_parts(parts, body.into()));
    let result = match timeout {
        Some(limit) => tokio::time::timeout(limit, forwarded)
            .await
            .map_err(|_| Failure::Timeout)?,
        None => forwarded.await,
    };
    result.map_err(Failure::from_upstream)
}

/// Removes the headers that belong to one connection, including those `Connection` names.
///
/// Most messages carry none of them: one pass over the names finds out, and the removals
/// (each a hash lookup) are only made when there is something to remove.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
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
            &Peer::new(([192, 0, 2, 7], 4000).into()),
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
            &Peer::new(([192, 0, 2, 7], 4000).into()),
        );
        assert_eq!(request.headers[HOST], "echo.local");
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
