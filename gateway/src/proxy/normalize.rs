//! Path normalization: the path a request is routed by is the path forwarded, and neither can
//! reach outside the prefix that matched.
//!
//! Before matching, a path is normalized as RFC 3986 §6.2.2 describes: percent-encoded
//! unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, other escapes are kept with
//! their hex digits uppercased, and dot segments (`.` and `..`) are removed (§5.2.4). A path
//! whose `..` would climb above `/` is refused (400). So `/public/../admin` and
//! `/public/%2e%2e/admin` are routed — and forwarded — as `/admin`, and `/%70ublic/x` as
//! `/public/x`. Reserved escapes such as `%2F` stay escaped: they are data, not structure.
//!
//! Normalizing makes no escape the client did not send: a `%` that starts none is kept as sent,
//! but an escape of a hex digit right after it stays escaped (`/%%32%65` becomes `/%%32e`, not
//! `/%2e`, which the next decoder would read as `.` and climb with). So normalizing twice gives
//! what normalizing once does (the fuzz target `path_and_headers` checks it). Bytes outside
//! ASCII are copied as they are.
//!
//! Most paths have neither `%` nor `.`; they are passed through without a copy.

use std::borrow::Cow;

/// Why a path cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path climbs above the root")]
    AboveRoot,
}

/// The normalized form of `path`.
///
/// ```
/// # use weir_gateway::proxy::normalize::normalize;
/// assert_eq!(normalize("/api/v1").unwrap(), "/api/v1");
/// assert_eq!(normalize("/public/%2e%2e/admin").unwrap(), "/admin");
/// assert!(normalize("/..").is_err());
/// ```
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.bytes().any(|b| b == b'%' || b == b'.') {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path);
    let without_dots = remove_dot_segments(&decoded)?;
    if without_dots == path {
        Ok(Cow::Borrowed(path))
    } else {
        Ok(Cow::Owned(without_dots))
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Decodes escapes of unreserved characters and uppercases the hex of the others.
///
/// Works on bytes: only ASCII is decoded or uppercased, and every other byte is copied, so the
/// UTF-8 of the path stays as it was.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let byte = high * 16 + low;
            if is_unreserved(byte) && !completes_stray_escape(&out, byte) {
                out.push(byte);
            } else {
                out.push(b'%');
                out.push(bytes[i + 1].to_ascii_uppercase());
                out.push(bytes[i + 2].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Escapes were replaced by ASCII and every other byte copied: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into())
}

/// Whether decoding `byte` onto `out` would make an escape that was not there: a hex digit
/// after a `%` that started none, or after such a `%` and one hex digit.
fn completes_stray_escape(out: &[u8], byte: u8) -> bool {
    byte.is_ascii_hexdigit()
        && match out {
            [.., b'%'] => true,
            [.., b'%', digit] => digit.is_ascii_hexdigit(),
            _ => false,
        }
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 §5.2.4 on an absolute path, refusing to climb above the root.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut pieces = path.split('/').skip(1).peekable();
    // A path ending in `.` or `..` ends with a slash once they are resolved.
    let mut trailing_slash = false;
    while let Some(segment) = pieces.next() {
        let last = pieces.peek().is_none();
        match segment {
            "." => trailing_slash = last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = last;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_resolved_and_may_not_climb_above_the_root() {
        for (path, normalized) in [
            ("/", "/"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/public/../admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/b/../../c", "/c"),
            ("/a/..", "/"),
            ("/a.b/c..d/.e", "/a.b/c..d/.e"),
            ("/a//b", "/a//b"),
        ] {
            assert_eq!(normalize(path).unwrap(), normalized, "{path}");
        }
        for path in ["/..", "/../a", "/a/../..", "/%2e%2e", "/a/%2E%2E/%2e%2e/x"] {
            assert_eq!(normalize(path), Err(PathError::AboveRoot), "{path}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_the_others_kept_uppercase() {
        for (path, normalized) in [
            ("/%70ublic/x", "/public/x"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb", "/a%2Fb"),
            ("/%7euser", "/~user"),
            ("/100%", "/100%"),
            ("/%zz", "/%zz"),
            ("/caf%C3%A9", "/caf%C3%A9"),
        ] {
            assert_eq!(normalize(path).unwrap(), normalized, "{path}");
        }
    }

    #[test]
    fn characters_outside_ascii_are_kept_as_sent() {
        assert_eq!(normalize("/caf\u{e9}/.").unwrap(), "/caf\u{e9}/");
        assert_eq!(normalize("/\u{65e5}%2e/x/..").unwrap(), "/\u{65e5}./");
    }

    #[test]
    fn a_stray_percent_and_the_escapes_after_it_do_not_make_a_new_escape() {
        for (path, normalized) in [
            ("/%%32%65", "/%%32e"),
            ("/%%34%31", "/%%341"),
            ("/%4%31", "/%4%31"),
            ("/public/%%32%65%%32%65/admin", "/public/%%32e%%32e/admin"),
            ("/%%2F%41", "/%%2FA"),
        ] {
            let once = normalize(path).unwrap();
            assert_eq!(once, normalized, "{path}");
            assert_eq!(normalize(&once).unwrap(), once, "normalizing {path} again");
        }
    }

    #[test]
    fn a_plain_path_is_not_copied() {
        assert!(matches!(
            normalize("/api/v1/users").unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(matches!(normalize("/file.txt").unwrap(), Cow::Borrowed(_)));
    }
}
