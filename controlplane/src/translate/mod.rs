//! Translation of each API kind Weir serves into the contract ([`weir_contract`]): one module
//! per kind, each validating its object and resolving its references through a
//! [`Lookup`](crate::resolve::Lookup).

pub mod route;

use weir_contract::AcceptedReason;

/// Why an object's spec could not be translated, as its `Accepted` condition says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: AcceptedReason,
    /// Names the field: `spec.rules[0].matches[0].path.value: …`.
    pub message: String,
}
