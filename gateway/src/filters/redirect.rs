//! `RequestRedirect`: answers with a redirect built from the request and the filter — each part
//! the filter gives (scheme, host, port, path) replaces the request's own in `Location`.
//!
//! The port: the filter's if it has one; else none when the filter changes the scheme (the new
//! scheme's default port is meant); else the request's, left out when it is its scheme's
//! default.

use bytes::Bytes;
use http::{HeaderValue, Response, header::LOCATION, request::Parts, uri::Scheme};
use http_body_util::Full;
use weir_contract::RequestRedirect;

use super::rewrite::new_path;

/// The `Location` for a request, which came over TLS if `secure`, and whose matched prefix (for
/// `ReplacePrefixMatch`) is `prefix`.
pub fn location(
    redirect: &RequestRedirect,
    parts: &Parts,
    prefix: Option<&str>,
    secure: bool,
) -> String {
    let request_scheme = if secure { Scheme::HTTPS } else { Scheme::HTTP };
    let scheme = redirect.scheme.clone().unwrap_or(request_scheme.clone());
    let (request_host, request_port) = split_host(parts);
    let host = redirect.hostname.as_deref().unwrap_or(request_host);
    let port = match (redirect.port, &redirect.scheme) {
        (Some(port), _) => Some(port),
        (None, Some(new_scheme)) if *new_scheme != request_scheme => None,
        (None, _) => request_port,
    };
    let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
    let path = match &redirect.path {
        Some(modifier) => new_path(modifier, parts.uri.path(), prefix),
        None => parts.uri.path().to_owned(),
    };
    let mut location = format!("{scheme}://{host}");
    if let Some(port) = port.filter(|port| *port != default_port) {
        location.push_str(&format!(":{port}"));
    }
    location.push_str(&path);
    if let Some(query) = parts.uri.query() {
        location.push('?');
        location.push_str(query);
    }
    location
}

/// The request's host and port, from its target's authority or its Host header.
fn split_host(parts: &Parts) -> (&str, Option<u16>) {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

/// The redirect response.
pub fn response(
    redirect: &RequestRedirect,
    parts: &Parts,
    prefix: Option<&str>,
    secure: bool,
) -> Response<Full<Bytes>> {
    let location = location(redirect, parts, prefix, secure);
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = redirect.status;
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, StatusCode};
    use weir_contract::PathModifier;

    fn parts(uri: &str, host: &str) -> Parts {
        Request::get(uri)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn redirect() -> RequestRedirect {
        RequestRedirect {
            scheme: None,
            hostname: None,
            port: None,
            path: None,
            status: StatusCode::FOUND,
        }
    }

    #[test]
    fn each_given_part_replaces_the_requests_own() {
        let request = parts("/a/b?x=1", "shop.test:8080");
        assert_eq!(
            location(&redirect(), &request, None, false),
            "http://shop.test:8080/a/b?x=1"
        );
        let https = RequestRedirect {
            scheme: Some(Scheme::HTTPS),
            ..redirect()
        };
        assert_eq!(
            location(&https, &request, None, false),
            "https://shop.test/a/b?x=1",
            "a new scheme means its default port"
        );
        let elsewhere = RequestRedirect {
            hostname: Some("other.test".into()),
            port: Some(8443),
            path: Some(PathModifier::ReplacePrefixMatch("/v2".into())),
            ..redirect()
        };
        assert_eq!(
            location(&elsewhere, &request, Some("/a"), false),
            "http://other.test:8443/v2/b?x=1"
        );
        let full = RequestRedirect {
            path: Some(PathModifier::ReplaceFullPath("/moved".into())),
            ..redirect()
        };
        assert_eq!(
            location(&full, &parts("/a", "shop.test"), None, true),
            "https://shop.test/moved"
        );
    }
}
