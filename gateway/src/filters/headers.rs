//! Header modifiers: set, add and remove, in that order (Gateway API's
//! `RequestHeaderModifier` and `ResponseHeaderModifier`).

use http::HeaderMap;
use weir_contract::HeaderModifier;

/// Applies `modifier` to `headers`.
pub fn modify(modifier: &HeaderModifier, headers: &mut HeaderMap) {
    for (name, value) in &modifier.set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &modifier.add {
        headers.append(name.clone(), value.clone());
    }
    for name in &modifier.remove {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn header(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
        (
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    }

    #[test]
    fn set_replaces_add_appends_remove_removes() {
        let mut headers = HeaderMap::new();
        headers.append("x-set", HeaderValue::from_static("old"));
        headers.append("x-set", HeaderValue::from_static("older"));
        headers.append("x-add", HeaderValue::from_static("first"));
        headers.append("x-gone", HeaderValue::from_static("1"));
        modify(
            &HeaderModifier {
                set: vec![header("x-set", "new")],
                add: vec![header("x-add", "second")],
                remove: vec![HeaderName::from_static("x-gone")],
            },
            &mut headers,
        );
        let all = |name: &str| -> Vec<&str> {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        };
        assert_eq!(all("x-set"), ["new"]);
        assert_eq!(all("x-add"), ["first", "second"]);
        assert!(all("x-gone").is_empty());
    }
}
