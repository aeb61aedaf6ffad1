//! An Ingress's status: `status.loadBalancer.ingress`, the address Weir is published at.
//!
//! Ingress status has no conditions, so this is all Weir writes there; what went wrong with
//! an Ingress is logged and shown in `/debug/routes` instead. Without a published address
//! (`--publish-address`), Weir writes no Ingress status at all.

use std::{fmt, net::IpAddr, str::FromStr};

use serde_json::{Value, json};

use super::{Status, WrittenConditions};

/// Where clients reach Weir, as Ingress status reports it: an IP address or a host name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishedAddress {
    Ip(IpAddr),
    Hostname(String),
}

/// Why a published address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an IP address nor a DNS host name")]
pub struct InvalidAddress(String);

impl FromStr for PublishedAddress {
    type Err = InvalidAddress;

    /// `10.0.0.7`, `2001:db8::7` or `lb.example.com`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = text.parse() {
            return Ok(Self::Ip(ip));
        }
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if text.len() <= 253 && text.split('.').all(label_ok) {
            Ok(Self::Hostname(text.to_ascii_lowercase()))
        } else {
            Err(InvalidAddress(text.to_owned()))
        }
    }
}

impl fmt::Display for PublishedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Hostname(name) => f.write_str(name),
        }
    }
}

/// The status of an Ingress Weir serves, published at `address`.
pub(super) fn status(address: &PublishedAddress) -> Status {
    let entry: Value = match address {
        PublishedAddress::Ip(ip) => json!({"ip": ip.to_string()}),
        PublishedAddress::Hostname(name) => json!({"hostname": name}),
    };
    Status {
        body: json!({"loadBalancer": {"ingress": [entry]}}),
        conditions: WrittenConditions::default(),
        changes_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_is_written_as_ip_and_a_name_as_hostname() {
        let ip: PublishedAddress = "10.0.0.7".parse().unwrap();
        assert_eq!(
            status(&ip).body,
            json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.7"}]}})
        );
        let name: PublishedAddress = "LB.example.com".parse().unwrap();
        assert_eq!(
            status(&name).body,
            json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}})
        );
    }

    #[test]
    fn an_address_that_is_neither_is_refused() {
        for bad in ["", "a b", "-lb.example.com", "lb..example.com", "http://lb"] {
            assert!(bad.parse::<PublishedAddress>().is_err(), "{bad:?}");
        }
    }
}
