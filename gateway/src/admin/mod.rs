//! The admin listener: health, readiness, metrics and a view of the live table.
//!
//! It lives on its own address (loopback by default) so it is never exposed with the proxy.
//! - `/healthz`: 200 while the process runs.
//! - `/readyz`: 200 once the first routing table is live, 503 before, and 503 again once
//!   shutdown has begun ([`Leaving`]), so that load balancers take the process out while it
//!   still serves.
//! - `/metrics`: Prometheus text.
//! - `/debug/routes`: JSON of the live configuration for operators ([`view`]): the snapshot's
//!   listeners, accepted routes, a report per Route, source problems. Built from the snapshot
//!   field by field, it cannot contain secret material: the contract's secret types cannot be
//!   serialised.

use std::{convert::Infallible, sync::Arc};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

use prometheus_client::registry::Registry;

use crate::{metrics::encode_registry, shutdown::Leaving, table::RoutingTable};

pub mod view;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub table: Arc<ArcSwap<RoutingTable>>,
    /// Every component's metrics, registered before serving starts.
    pub registry: Arc<Registry>,
    /// Set when shutdown begins: readiness fails from then on.
    pub leaving: Leaving,
}

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, state: AdminState) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let service = service_fn(move |request| {
            let response = respond(&state, &request);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

fn respond(state: &AdminState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if state.leaving.has_begun() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: shutting down\n",
                )
            } else if state.table.load().generation > 0 {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: no routing table yet\n",
                )
            }
        }
        "/metrics" => with_type(
            StatusCode::OK,
            encode_registry(&state.registry),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/debug/routes" => {
            let table = state.table.load_full();
            match serde_json::to_string_pretty(&view::table(&table)) {
                Ok(json) => with_type(StatusCode::OK, json, "application/json"),
                Err(error) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot encode routes: {error}\n"),
                ),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics, /debug/routes\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    with_type(status, body.to_owned(), "text/plain; charset=utf-8")
}

fn with_type(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
