//! `RequestMirror`: a copy of a share of a rule's requests goes to another Service, and its
//! answer is thrown away.
//!
//! Mirroring is fire-and-forget: the copy is sent from a task of its own, the client's request
//! never waits for it, and whatever happens to it (slow, refused, failing) is counted in its
//! own metrics and nowhere else. A rule's mirrors in flight are capped, so a dead mirror
//! cannot pile up tasks: beyond the cap, copies are skipped (and counted). A request body is
//! mirrored only when it is small enough to be held ([`MIRROR_BODY_LIMIT`]); a larger one is
//! not copied, and the request goes on as it is.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, request::Parts};
use http_body_util::BodyExt;

use crate::{
    balance::{Balancer, random},
    metrics::PolicyMetrics,
    upstream::{RequestBody, Upstreams},
};

/// The largest request body mirrored; larger ones are not copied.
pub const MIRROR_BODY_LIMIT: usize = 64 * 1024;
/// Copies of one rule's requests in flight at once, at most.
const MAX_IN_FLIGHT: usize = 256;
/// How long a copy may take before it is given up.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);

/// One mirror of a rule: where copies go and how many.
#[derive(Debug)]
pub struct Mirror {
    /// `namespace/name` of the Service, for logs.
    pub service: Arc<str>,
    pub balancer: Balancer,
    /// 0 to 100.
    pub percent: u8,
    in_flight: Arc<AtomicUsize>,
}

impl Mirror {
    pub fn new(service: Arc<str>, balancer: Balancer, percent: u8) -> Self {
        Self {
            service,
            balancer,
            percent,
            in_flight: Arc::default(),
        }
    }

    /// Whether this request is one of those copied.
    pub fn sampled(&self) -> bool {
        random::chance(self.percent)
    }

    /// Sends a copy of the request (`parts` as forwarded, `body` whole) without waiting.
    pub fn fire(
        &self,
        upstreams: &Upstreams,
        parts: &Parts,
        body: Bytes,
        metrics: Option<&PolicyMetrics>,
    ) {
        let Some((_, endpoint)) = self.balancer.pick() else {
            if let Some(m) = metrics {
                m.mirror_skipped.inc();
            }
            return;
        };
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            if let Some(m) = metrics {
                m.mirror_skipped.inc();
            }
            return;
        }
        let mut request = Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone())
            .version(parts.version)
            .body(RequestBody::from(body))
            .expect("a copy of a valid request is valid");
        *request.headers_mut() = parts.headers.clone();
        let (target, upstreams, in_flight) = (
            endpoint.target.clone(),
            upstreams.clone(),
            self.in_flight.clone(),
        );
        let metrics = metrics.cloned();
        let service = self.service.clone();
        tokio::spawn(async move {
            let (parts, body) = request.into_parts();
            let sent =
                crate::proxy::send_copy(&upstreams, &target, parts, body, Some(MIRROR_TIMEOUT));
            let outcome = tokio::time::timeout(MIRROR_TIMEOUT, async {
                let response = sent.await.ok()?;
                // Read to the end, so the connection goes back to the pool.
                response.into_body().collect().await.ok()
            })
            .await;
            match outcome {
                Ok(Some(_)) => {
                    if let Some(m) = &metrics {
                        m.mirror_sent.inc();
                    }
                }
                _ => {
                    tracing::debug!(mirror = %service, "mirrored request failed");
                    if let Some(m) = &metrics {
                        m.mirror_failed.inc();
                    }
                }
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
