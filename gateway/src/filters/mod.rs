//! Filters: what a rule does to a matched request before it is forwarded, and to its response
//! before it is returned.
//!
//! A rule's filters arrive from the contract in the order written; [`RuleFilters`] sorts them
//! once per table into the fixed order they run in, which is:
//!
//! 1. `RequestRedirect` or `DirectResponse` — answer at once; nothing else runs and no backend
//!    is touched;
//! 2. `RequestHeaderModifier` (each, in the order written);
//! 3. `URLRewrite` — host and path sent upstream;
//! 4. `RequestMirror` — copies of the request as rewritten;
//! 5. the backend's own `RequestHeaderModifier`s, once a backend is chosen;
//! 6. on the way back, the backend's and then the rule's `ResponseHeaderModifier`s.
//!
//! Each kind has a module of its own with its `apply` and its tests. A rule without filters
//! costs a request a few empty-slice checks.

pub mod direct;
mod headers;
pub mod mirror;
pub mod redirect;
pub mod rewrite;

use bytes::Bytes;
use http::{HeaderMap, Response, request::Parts};
use http_body_util::Full;
use weir_contract::{Filter, HeaderModifier, RequestMirror, RequestRedirect, UrlRewrite};

use mirror::Mirror;

/// A rule's filters, by the step that applies them.
#[derive(Debug, Default)]
pub struct RuleFilters {
    answer: Option<Answer>,
    request_headers: Box<[HeaderModifier]>,
    rewrite: Option<UrlRewrite>,
    pub mirrors: Box<[Mirror]>,
    response_headers: Box<[HeaderModifier]>,
}

/// A filter that answers the request itself.
#[derive(Debug)]
enum Answer {
    Redirect(RequestRedirect),
    Direct(direct::Direct),
}

/// A backend's own filters.
#[derive(Debug, Default)]
pub struct BackendFilters {
    request_headers: Box<[HeaderModifier]>,
    response_headers: Box<[HeaderModifier]>,
}

impl RuleFilters {
    /// Sorts `filters` into their steps; `mirror` builds each mirror's balancer.
    pub fn new(filters: &[Filter], mut mirror: impl FnMut(&RequestMirror) -> Mirror) -> Self {
        let mut compiled = RuleFilters::default();
        let (mut request_headers, mut response_headers, mut mirrors) =
            (Vec::new(), Vec::new(), Vec::new());
        for filter in filters {
            match filter {
                Filter::RequestHeaderModifier(m) => request_headers.push(m.clone()),
                Filter::ResponseHeaderModifier(m) => response_headers.push(m.clone()),
                Filter::UrlRewrite(rewrite) => compiled.rewrite = Some(rewrite.clone()),
                Filter::RequestRedirect(redirect) => {
                    compiled.answer = Some(Answer::Redirect(redirect.clone()))
                }
                Filter::DirectResponse(direct) => {
                    compiled.answer = Some(Answer::Direct(direct::Direct::new(direct)))
                }
                Filter::RequestMirror(m) => mirrors.push(mirror(m)),
            }
        }
        compiled.request_headers = request_headers.into();
        compiled.response_headers = response_headers.into();
        compiled.mirrors = mirrors.into();
        compiled
    }

    /// The response of a filter that answers the request itself, if the rule has one.
    pub fn answer(
        &self,
        parts: &Parts,
        prefix: Option<&str>,
        secure: bool,
    ) -> Option<Response<Full<Bytes>>> {
        match self.answer.as_ref()? {
            Answer::Redirect(redirect) => Some(redirect::response(redirect, parts, prefix, secure)),
            Answer::Direct(direct) => Some(direct.response()),
        }
    }

    /// Steps 2 and 3: header modifiers, then the rewrite.
    pub fn apply_request(&self, parts: &mut Parts, prefix: Option<&str>) {
        for modifier in &self.request_headers {
            headers::modify(modifier, &mut parts.headers);
        }
        if let Some(rewrite) = &self.rewrite {
            rewrite::apply(rewrite, parts, prefix);
        }
    }

    /// Step 6's last part: the rule's response header modifiers.
    pub fn apply_response(&self, headers: &mut HeaderMap) {
        for modifier in &self.response_headers {
            headers::modify(modifier, headers);
        }
    }
}

impl BackendFilters {
    pub fn new(filters: &[Filter]) -> Self {
        let mut request_headers = Vec::new();
        let mut response_headers = Vec::new();
        for filter in filters {
            match filter {
                Filter::RequestHeaderModifier(m) => request_headers.push(m.clone()),
                Filter::ResponseHeaderModifier(m) => response_headers.push(m.clone()),
                // Validation allows only header modifiers on a backend.
                _ => {}
            }
        }
        Self {
            request_headers: request_headers.into(),
            response_headers: response_headers.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.request_headers.is_empty() && self.response_headers.is_empty()
    }

    pub fn apply_request(&self, headers: &mut HeaderMap) {
        for modifier in &self.request_headers {
            headers::modify(modifier, headers);
        }
    }

    pub fn apply_response(&self, headers: &mut HeaderMap) {
        for modifier in &self.response_headers {
            headers::modify(modifier, headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue, Request, StatusCode};
    use weir_contract::DirectResponse;

    fn set(name: &'static str, value: &'static str) -> HeaderModifier {
        HeaderModifier {
            set: vec![(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )],
            ..HeaderModifier::default()
        }
    }

    fn no_mirror(_: &RequestMirror) -> Mirror {
        unreachable!("no mirror in these tests")
    }

    #[test]
    fn each_filter_runs_in_its_step_in_the_order_written() {
        let filters = RuleFilters::new(
            &[
                Filter::ResponseHeaderModifier(set("x-response", "1")),
                Filter::UrlRewrite(UrlRewrite {
                    hostname: None,
                    path: Some(weir_contract::PathModifier::ReplaceFullPath("/new".into())),
                }),
                Filter::RequestHeaderModifier(set("x-request", "1")),
                Filter::RequestHeaderModifier(set("x-request", "2")),
            ],
            no_mirror,
        );
        let (mut parts, ()) = Request::get("/old").body(()).unwrap().into_parts();
        assert!(filters.answer(&parts, None, false).is_none());
        filters.apply_request(&mut parts, None);
        assert_eq!(parts.headers["x-request"], "2", "the later filter wins");
        assert_eq!(parts.uri, "/new");
        assert!(!parts.headers.contains_key("x-response"));
        let mut response = HeaderMap::new();
        filters.apply_response(&mut response);
        assert_eq!(response["x-response"], "1");
    }

    #[test]
    fn a_direct_response_answers_without_a_backend() {
        let filters = RuleFilters::new(
            &[Filter::DirectResponse(DirectResponse {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: "down for maintenance".into(),
            })],
            no_mirror,
        );
        let (parts, ()) = Request::get("/").body(()).unwrap().into_parts();
        let response = filters.answer(&parts, None, false).unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
