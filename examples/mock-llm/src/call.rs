//! One API call as its handler sees it, and the two shapes of a successful answer.
//!
//! The server (in `main.rs`) reads the body, checks the key, parses the directives and serves
//! the faults that come before any answer; it then hands the dialect handlers a [`Call`], which
//! holds everything they need and nothing they could change. Handlers answer through the
//! functions here, so every answer of a kind carries the same headers.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use serde_json::Value;

use crate::{body::ScriptedBody, directives::Directives, sse::SseWriter};

/// What a handler knows about the request it answers.
pub struct Call<'a> {
    /// The request body, parsed; a JSON object.
    pub body: &'a Value,
    /// The request body as received, for `echo`.
    pub raw_body: &'a [u8],
    /// The body's `model`, directives included, reported back as the provider would.
    pub model: &'a str,
    pub directives: &'a Directives,
    /// The body asked for a stream (`"stream": true`).
    pub stream: bool,
    /// The mock's `--name`, which goes into every response id.
    pub instance: &'a str,
    /// This request's number in the process, unique, for response ids.
    pub serial: u64,
    /// When the answer was created, in Unix seconds.
    pub created: u64,
}

impl Call<'_> {
    /// A top-level field of the body.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.body.get(name)
    }

    /// A response id: `<prefix><separator><instance><separator><serial>`, e.g. `chatcmpl-mock-7`.
    pub fn id(&self, prefix: &str, separator: char) -> String {
        format!(
            "{prefix}{separator}{}{separator}{}",
            self.instance, self.serial
        )
    }
}

/// A 200 JSON answer, with the mid-body faults the directives ask for.
pub fn json_answer(document: &Value, directives: &Directives) -> Response<ScriptedBody> {
    json_text_answer(Bytes::from(document.to_string()), directives)
}

/// A 200 answer of JSON already written out, with the mid-body faults the directives ask for.
pub fn json_text_answer(document: Bytes, directives: &Directives) -> Response<ScriptedBody> {
    let body = ScriptedBody::json(document, directives);
    with_content_type(Response::new(body), "application/json")
}

/// A 200 event-stream answer.
pub fn sse_answer(body: ScriptedBody) -> Response<ScriptedBody> {
    let mut response = with_content_type(Response::new(body), "text/event-stream");
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The answer to `headers-then-close`: SSE headers, a comment, then an aborted body.
pub fn headers_then_close() -> Response<ScriptedBody> {
    sse_answer(SseWriter::headers_then_close())
}

fn with_content_type(
    mut response: Response<ScriptedBody>,
    content_type: &'static str,
) -> Response<ScriptedBody> {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
