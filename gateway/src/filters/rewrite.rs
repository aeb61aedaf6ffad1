//! `URLRewrite`: the host and path sent upstream, changed. The client and the rule's own
//! matching see the request as it came; only the next hop sees the rewrite.

use http::{Uri, header::HOST, request::Parts};
use weir_contract::{PathModifier, UrlRewrite};

/// The path `modifier` makes of `path`, whose matched prefix (for `ReplacePrefixMatch`) is
/// `prefix`.
///
/// ```
/// # use weir_contract::PathModifier;
/// # use weir_gateway::filters::rewrite::new_path;
/// let v2 = PathModifier::ReplacePrefixMatch("/v2".into());
/// assert_eq!(new_path(&v2, "/api/users", Some("/api")), "/v2/users");
/// assert_eq!(new_path(&v2, "/api", Some("/api")), "/v2");
/// let root = PathModifier::ReplacePrefixMatch("/".into());
/// assert_eq!(new_path(&root, "/api/users", Some("/api")), "/users");
/// ```
pub fn new_path(modifier: &PathModifier, path: &str, prefix: Option<&str>) -> String {
    match modifier {
        PathModifier::ReplaceFullPath(full) => full.clone(),
        PathModifier::ReplacePrefixMatch(replacement) => {
            let rest = match prefix {
                Some("/") | None => path,
                Some(prefix) => path.strip_prefix(prefix).unwrap_or(path),
            };
            let joined = format!("{}{rest}", replacement.trim_end_matches('/'));
            if joined.is_empty() {
                "/".into()
            } else {
                joined
            }
        }
    }
}

/// Applies `rewrite` to the request about to go upstream.
pub fn apply(rewrite: &UrlRewrite, parts: &mut Parts, prefix: Option<&str>) {
    if let Some(hostname) = &rewrite.hostname {
        parts.headers.insert(HOST, hostname.clone());
        if parts.uri.authority().is_some() {
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.authority = hostname.to_str().ok().and_then(|h| h.parse().ok());
            parts.uri = Uri::from_parts(uri).unwrap_or_else(|_| Uri::from_static("/"));
        }
    }
    if let Some(modifier) = &rewrite.path {
        let path = new_path(modifier, parts.uri.path(), prefix);
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.path_and_query = path_and_query.parse().ok();
        parts.uri = Uri::from_parts(uri).unwrap_or_else(|_| Uri::from_static("/"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Request};

    #[test]
    fn host_and_path_are_rewritten_and_the_query_kept() {
        let (mut parts, ()) = Request::get("/api/v1/users?page=2")
            .header(HOST, "shop.test")
            .body(())
            .unwrap()
            .into_parts();
        apply(
            &UrlRewrite {
                hostname: Some(HeaderValue::from_static("internal.svc")),
                path: Some(PathModifier::ReplacePrefixMatch("/v2".into())),
            },
            &mut parts,
            Some("/api/v1"),
        );
        assert_eq!(parts.headers[HOST], "internal.svc");
        assert_eq!(parts.uri, "/v2/users?page=2");
    }
}
