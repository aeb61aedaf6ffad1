//! The wire formats Weir's AI gateway speaks: OpenAI's chat completions and Anthropic's messages.
//!
//! This crate owns every fact about those two formats that the gateway needs: how their server-sent
//! events are framed ([`sse`]), how each counts tokens ([`usage`]), how each spells an error
//! ([`errors`]), how a request or response in one becomes the other ([`translate`]), how a stream in
//! one becomes a stream in the other ([`stream`]), and a cheap prompt-size estimate ([`tokens`]).
//!
//! It is pure data: no I/O, no async, no clock beyond the `created` timestamp OpenAI's format
//! demands. Invariants the gateway relies on:
//! - no function panics, whatever bytes or JSON it is given; a malformed input is an error value
//!   (an [`errors::ApiError`], an [`sse::SseError`], or a stream [`stream::Step`] carrying
//!   `upstream_error`);
//! - token accounting is done in one place ([`usage::Usage`]), so a prompt costs the same whether
//!   it streamed or not and whichever provider served it; cache reads and writes are never lost or
//!   counted twice.

pub mod errors;
pub mod sse;
pub mod stream;
pub mod tokens;
pub mod translate;
pub mod usage;

/// A wire format: the one a client speaks, or the one a provider speaks.
///
/// ```
/// use weir_ai_wire::Dialect;
/// assert_ne!(Dialect::OpenAi, Dialect::Anthropic);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI chat completions (`/v1/chat/completions`), also spoken by OpenAI-compatible servers.
    OpenAi,
    /// Anthropic messages (`/v1/messages`).
    Anthropic,
}
