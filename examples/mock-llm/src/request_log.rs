//! The log of API requests received, for tests to read at `GET /mock/requests`.
//!
//! A gateway test asserts on what reached the provider — which key, which model, which body —
//! so every API request is appended here as it arrives, before any fault delays it, in
//! arrival order. Appending keeps the raw parts (a header map clone and a reference-counted
//! body) under a short lock; turning them into JSON waits until someone asks.

use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use http::{HeaderMap, Method, request::Parts};
use serde_json::{Map, Value, json};

/// One request as received.
struct ReceivedRequest {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

/// Every API request since start or the last [`RequestLog::clear`].
#[derive(Default)]
pub struct RequestLog {
    received: Mutex<Vec<ReceivedRequest>>,
}

impl RequestLog {
    pub fn record(&self, parts: &Parts, body: &Bytes) {
        let request = ReceivedRequest {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: body.clone(),
        };
        self.lock().push(request);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The log as a JSON array of `{"path","query","method","headers","body"}`: headers by
    /// lowercase name (the last value of a repeated one wins), the body parsed as JSON or
    /// `null` when it is not JSON.
    pub fn to_json(&self) -> Value {
        let received = self.lock();
        let entries = received.iter().map(|request| {
            let headers: Map<String, Value> = request
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), Value::String(value))
                })
                .collect();
            json!({
                "path": request.path,
                "query": request.query,
                "method": request.method.as_str(),
                "headers": headers,
                "body": serde_json::from_slice::<Value>(&request.body).unwrap_or(Value::Null),
            })
        });
        Value::Array(entries.collect())
    }

    /// The log, even if a thread panicked holding it: a test log is still worth reading.
    fn lock(&self) -> MutexGuard<'_, Vec<ReceivedRequest>> {
        self.received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn records_in_order_with_last_header_value_winning() {
        let log = RequestLog::default();
        let first = Request::post("/v1/chat/completions?x=1")
            .header("Authorization", "Bearer a")
            .header("x-dup", "one")
            .header("x-dup", "two")
            .body(())
            .unwrap();
        log.record(&parts(first), &Bytes::from_static(br#"{"model":"m"}"#));
        let second = Request::get("/v1/models").body(()).unwrap();
        log.record(&parts(second), &Bytes::new());

        let entries = log.to_json();
        assert_eq!(entries[0]["path"], "/v1/chat/completions");
        assert_eq!(entries[0]["query"], "x=1");
        assert_eq!(entries[0]["method"], "POST");
        assert_eq!(entries[0]["headers"]["authorization"], "Bearer a");
        assert_eq!(entries[0]["headers"]["x-dup"], "two");
        assert_eq!(entries[0]["body"]["model"], "m");
        assert_eq!(entries[1]["path"], "/v1/models");
        assert_eq!(entries[1]["body"], Value::Null);

        log.clear();
        assert_eq!(log.to_json(), json!([]));
    }
}
