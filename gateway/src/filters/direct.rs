//! `DirectResponse`: a fixed status and text body, without touching a backend.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;
use weir_contract::DirectResponse;

/// A direct response, its body made shareable once per table.
#[derive(Debug)]
pub struct Direct {
    status: StatusCode,
    body: Bytes,
}

impl Direct {
    pub fn new(direct: &DirectResponse) -> Self {
        Self {
            status: direct.status,
            body: Bytes::from(direct.body.clone()),
        }
    }

    pub fn response(&self) -> Response<Full<Bytes>> {
        // Cloning `Bytes` shares the body: no copy per request.
        let mut response = Response::new(Full::new(self.body.clone()));
        *response.status_mut() = self.status;
        if !self.body.is_empty() {
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        response
    }
}
