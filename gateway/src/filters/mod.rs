//! Filters: what a rule does to a matched request before it is forwarded, and to its response
//! before it is returned.
//!
//! A rule's filters arrive from the contract in the order written; [`RuleFilters`] sorts them
//! once per table by the phase that applies them, keeping that order within each phase. Each
//! kind of filter has a module of its own with its `apply` and its tests. A rule without
//! filters costs a request two empty-slice checks.

mod headers;

use http::HeaderMap;
use weir_contract::Filter;

/// A rule's filters, by the phase that applies them.
#[derive(Debug, Default)]
pub struct RuleFilters {
    /// Applied to the request before an upstream is chosen.
    request: Box<[Filter]>,
    /// Applied to the response before it is returned.
    response: Box<[Filter]>,
}

impl RuleFilters {
    pub fn new(filters: &[Filter]) -> Self {
        let (request, response): (Vec<Filter>, Vec<Filter>) = filters
            .iter()
            .cloned()
            .partition(|filter| matches!(filter, Filter::RequestHeaderModifier(_)));
        Self {
            request: request.into(),
            response: response.into(),
        }
    }

    /// Applies the request-side filters to the request's headers.
    pub fn apply_request(&self, headers: &mut HeaderMap) {
        apply_request(&self.request, headers);
    }

    /// Applies the response-side filters to the response's headers.
    pub fn apply_response(&self, headers: &mut HeaderMap) {
        for filter in &self.response {
            if let Filter::ResponseHeaderModifier(modifier) = filter {
                headers::modify(modifier, headers);
            }
        }
    }
}

/// Applies request-side filters (a rule's, or a backend's) to a request's headers.
pub fn apply_request(filters: &[Filter], headers: &mut HeaderMap) {
    for filter in filters {
        if let Filter::RequestHeaderModifier(modifier) = filter {
            headers::modify(modifier, headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};
    use weir_contract::HeaderModifier;

    fn set(name: &'static str, value: &'static str) -> HeaderModifier {
        HeaderModifier {
            set: vec![(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )],
            ..HeaderModifier::default()
        }
    }

    #[test]
    fn each_filter_runs_in_its_phase_in_the_order_written() {
        let filters = RuleFilters::new(&[
            Filter::ResponseHeaderModifier(set("x-response", "1")),
            Filter::RequestHeaderModifier(set("x-request", "1")),
            Filter::RequestHeaderModifier(set("x-request", "2")),
        ]);
        let mut request = HeaderMap::new();
        filters.apply_request(&mut request);
        assert_eq!(request["x-request"], "2", "the later filter wins");
        assert!(!request.contains_key("x-response"));
        let mut response = HeaderMap::new();
        filters.apply_response(&mut response);
        assert_eq!(response["x-response"], "1");
        assert!(!response.contains_key("x-request"));
    }
}
