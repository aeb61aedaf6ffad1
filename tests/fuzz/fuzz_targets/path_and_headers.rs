//! Fuzz target: what Weir itself does to a request's path and Host before routing it.
//!
//! The input is taken as a request target, as `http` parses it for the proxy (so only
//! what a client can actually send reaches the checks), and the path is normalized
//! (`weir_gateway::proxy::normalize`). The invariants: a normalized path starts with `/`, has
//! no `.` or `..` segment, holds no escape of an unreserved character (but for hex digits, see
//! `normalize`), and normalizing it again
//! changes nothing — otherwise the path a rule matched and the path a backend decodes could
//! differ. The same bytes as a Host value go through port stripping (`table::strip_port`),
//! which must give a prefix of what it was given.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_gateway::{proxy::normalize::normalize, table::strip_port};

fuzz_target!(|data: &[u8]| {
    if let Ok(target) = http::uri::PathAndQuery::try_from(data) {
        check_normalized(target.path());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // Whatever the string, no panic; and a host keeps what precedes its port.
        let _ = normalize(text);
        let host = strip_port(text);
        assert!(text.starts_with(host));
        // Only a port goes; after an IPv6 literal's `]` anything is dropped.
        if !text.contains(':') && !text.starts_with('[') {
            assert_eq!(host, text);
        }
    }
});

fn check_normalized(path: &str) {
    let Ok(once) = normalize(path) else {
        return;
    };
    if path.starts_with('/') {
        assert!(once.starts_with('/'), "{path:?} → {once:?}");
        assert!(
            once.split('/')
                .all(|segment| segment != "." && segment != ".."),
            "{path:?} → {once:?} keeps a dot segment"
        );
        assert!(
            !has_unreserved_escape(&once),
            "{path:?} → {once:?} keeps an escaped unreserved character"
        );
    }
    let twice = normalize(&once).expect("a normalized path does not climb above the root");
    assert_eq!(
        twice, once,
        "normalizing {path:?} twice is not the same as once"
    );
}

/// Whether `%XX` spells an unreserved character (RFC 3986: `A-Z a-z 0-9 - . _ ~`) other than
/// a hex digit.
fn has_unreserved_escape(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        let hex = |b: u8| (b as char).to_digit(16);
        match (w[0], hex(w[1]), hex(w[2])) {
            (b'%', Some(high), Some(low)) => {
                let byte = (high * 16 + low) as u8;
                // An escaped hex digit may stay: after a `%` that starts no escape, decoding
                // it would make one.
                (byte.is_ascii_alphanumeric() && !byte.is_ascii_hexdigit())
                    || b"-._~".contains(&byte)
            }
            _ => false,
        }
    })
}
