//! Connect failover: a request whose upstream connection could not be opened goes to another
//! endpoint of the same backend, with no policy configured.
//!
//! It is safe because nothing was sent: the connection was refused, reset, unreachable or
//! timed out before a byte of the request was written (the upstream hands the request back
//! only then, see [`SendError`](crate::upstream::SendError)), so no upstream can have acted
//! on it, whatever its method. Without it, every request the balancer sends to a dead
//! endpoint fails until the endpoint leaves its Service; with it, only the requests in
//! flight on that endpoint when it died do.
//!
//! The request goes on as it was shaped for the first endpoint: the endpoints of one backend
//! share protocol, TLS and filters, so the backend's filters are not run again, only a host
//! taken from the first endpoint's own address changes ([`forward::repoint`]). The next
//! endpoint is the balancer's retry pick ([`Balancer::pick_retry`]), so weights, ejections
//! and a consistent-hash key's stable second choice hold, among the same backend's endpoints
//! that this request has not gone to. At most [`MORE_ENDPOINTS`] more endpoints are tried, so
//! a backend whose endpoints all refuse costs a request a few refused connections, not one
//! per endpoint; when every endpoint tried refused, the last failure is answered.
//!
//! Each failover is counted (`weir_upstream_connect_failovers_total`, by route) and logged at
//! debug: under load, a dead endpoint is refused many times a second, and a line each would
//! flood the log; the request that fails on every endpoint is logged as any failure is.
//!
//! [`Balancer::pick_retry`]: crate::balance::Balancer::pick_retry

use http::Request;

use super::{Failure, Proxy, RequestCtx, Selected, forward, hear, is_ejected};
use crate::{
    balance::{Endpoint, InFlight},
    upstream::{RequestBody, UpstreamBody},
};

/// How many endpoints beyond the first one a request whose connection failed may go to.
pub(super) const MORE_ENDPOINTS: usize = 2;

/// The endpoints one try went to, in order; the last is the one whose outcome the try has.
/// A fixed array: a try goes to at most `1 + MORE_ENDPOINTS`, and needs no allocation.
#[derive(Clone, Copy)]
pub(super) struct Endpoints<'r> {
    went_to: [Option<Selected<'r>>; 1 + MORE_ENDPOINTS],
}

impl<'r> Endpoints<'r> {
    pub(super) fn one(selected: Selected<'r>) -> Self {
        let mut went_to = [None; 1 + MORE_ENDPOINTS];
        went_to[0] = Some(selected);
        Self { went_to }
    }

    fn push(&mut self, selected: Selected<'r>) {
        if let Some(free) = self.went_to.iter_mut().find(|slot| slot.is_none()) {
            *free = Some(selected);
        }
    }

    fn len(&self) -> usize {
        self.went_to.iter().flatten().count()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &'r Endpoint> + '_ {
        self.went_to
            .iter()
            .flatten()
            .map(|selected| selected.endpoint)
    }

    fn contains(&self, endpoint: &Endpoint) -> bool {
        self.iter().any(|e| std::ptr::eq(e, endpoint))
    }

    /// The endpoint the try went to last.
    pub(super) fn last(&self) -> Selected<'r> {
        self.went_to
            .iter()
            .rev()
            .flatten()
            .next()
            .copied()
            .expect("a try goes to at least one endpoint")
    }
}

/// What a failover's pick goes by, beside the backend: the request's consistent-hash key, and
/// the endpoints a retry policy's earlier tries went to (to be avoided too).
#[derive(Clone, Copy)]
pub(super) struct PickBy<'e, 'r> {
    pub hash: Option<u64>,
    pub earlier: &'e [&'r Endpoint],
}

/// What a failover came to: the outcome of the last endpoint it went to, the request counted
/// in flight there, and every endpoint the try went to.
pub(super) struct FailedOver<'r> {
    pub outcome: Result<http::Response<UpstreamBody>, Failure>,
    pub in_flight: Option<InFlight>,
    pub endpoints: Endpoints<'r>,
}

/// Sends `request`, which `first` could not be connected to (`failure`), to other endpoints
/// of its backend, one at a time, until one takes it or [`MORE_ENDPOINTS`] more have been
/// tried.
pub(super) async fn failover<'r>(
    proxy: &Proxy,
    ctx: &RequestCtx<'r>,
    first: Selected<'r>,
    pick_by: PickBy<'_, 'r>,
    mut request: Box<Request<RequestBody>>,
    mut failure: Failure,
) -> FailedOver<'r> {
    let mut endpoints = Endpoints::one(first);
    loop {
        let refused = endpoints.last();
        let next = if endpoints.len() <= MORE_ENDPOINTS {
            next_endpoint(ctx, first, pick_by, &endpoints)
        } else {
            None
        };
        let Some(next) = next else {
            return FailedOver {
                outcome: Err(failure),
                in_flight: None,
                endpoints,
            };
        };
        ctx.target.metrics().connect_failover();
        tracing::debug!(
            route = %ctx.target.route,
            rule = ctx.target.rule_index,
            service = %first.backend.service,
            refused = %refused.endpoint.target,
            upstream = %next.endpoint.target,
            error = failure.error_chain(),
            "connection failed before the request was sent; sending it to another endpoint"
        );
        endpoints.push(next);
        forward::repoint(
            &mut request,
            &refused.endpoint.target,
            &next.endpoint.target,
        );
        let in_flight = ctx.target.tracks_load.then(|| next.endpoint.load.start());
        let sent = forward::send_or_give_back(
            &proxy.upstreams,
            &next.endpoint.target,
            *request,
            ctx.target.policy.timeouts.backend_request,
        )
        .await;
        match sent {
            Err(forward::SendFailure {
                failure: refusal,
                unsent: Some(unsent),
            }) => {
                hear(ctx, next, Err(&refusal));
                request = unsent;
                failure = refusal;
            }
            sent => {
                let outcome = sent.map_err(|failed| failed.failure);
                hear(ctx, next, outcome.as_ref());
                return FailedOver {
                    outcome,
                    in_flight,
                    endpoints,
                };
            }
        }
    }
}

/// Another endpoint of `first`'s backend that this request has not gone to and that is not
/// ejected, by the balancer's retry pick; `None` when there is none.
fn next_endpoint<'r>(
    ctx: &RequestCtx<'r>,
    first: Selected<'r>,
    pick_by: PickBy<'_, 'r>,
    endpoints: &Endpoints<'r>,
) -> Option<Selected<'r>> {
    let same_backend = first.backend.endpoints.as_ptr_range();
    let unwanted = |endpoint: &Endpoint| {
        !same_backend.contains(&std::ptr::from_ref(endpoint))
            || endpoints.contains(endpoint)
            || pick_by.earlier.iter().any(|e| std::ptr::eq(*e, endpoint))
            || is_ejected(endpoint)
    };
    // The pick falls back to an unwanted endpoint when every one is: that is no failover.
    let (backend, endpoint) = ctx.target.balancer.pick_retry(pick_by.hash, unwanted)?;
    (std::ptr::eq(backend, first.backend) && !unwanted(endpoint))
        .then_some(Selected { backend, endpoint })
}
