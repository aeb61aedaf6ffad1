//! A backend whose behaviour the test switches while it runs, and which counts what reaches it.
//!
//! `weir-echo` answers as each request's query asks; retries, outlier detection and mirrors
//! need a backend that fails (or answers) *every* request sent its way, whatever the request,
//! and that says exactly how many requests it saw — counted at the backend, not taken from
//! Weir's own metrics. It answers like `weir-echo` (JSON with `instance`, `path`, `query`,
//! `headers`), so [`crate::Reply::answered_by`] works on its answers.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};

/// What the backend does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers 200 with an echo of the request.
    Answer,
    /// Answers with this status (and an echo body).
    Status(u16),
    /// Closes the connection without answering.
    Reset,
}

/// A loopback HTTP/1.1 backend; stops when dropped.
pub struct ScriptedBackend {
    address: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    name: String,
    behaviour: Mutex<Behaviour>,
    requests: AtomicU64,
    /// Bodies of the requests received, in order (for mirrors: what a copy carried).
    bodies: Mutex<Vec<Bytes>>,
}

impl ScriptedBackend {
    /// Starts a backend answering as `instance` `name`, behaving as `behaviour`.
    pub async fn start(name: &str, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            behaviour: Mutex::new(behaviour),
            requests: AtomicU64::new(0),
            bodies: Mutex::new(Vec::new()),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serving.clone();
                let service = service_fn(move |request| {
                    let shared = shared.clone();
                    async move { shared.answer(request).await }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            address,
            shared,
            task,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Changes what it does with the requests that arrive from now on.
    pub fn behave(&self, behaviour: Behaviour) {
        *lock(&self.shared.behaviour) = behaviour;
    }

    /// How many requests have reached it.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The bodies of the requests it received, in order.
    pub fn bodies(&self) -> Vec<Bytes> {
        lock(&self.shared.bodies).clone()
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Answer = Response<Full<Bytes>>;

/// A service error: hyper closes the connection without answering.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("scripted reset")
    }
}

impl std::error::Error for Reset {}

impl Shared {
    async fn answer(&self, request: Request<Incoming>) -> Result<Answer, Reset> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let behaviour = *lock(&self.behaviour);
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        lock(&self.bodies).push(body.clone());
        let status = match behaviour {
            Behaviour::Answer => StatusCode::OK,
            Behaviour::Status(status) => {
                StatusCode::from_u16(status).expect("tests script valid statuses")
            }
            Behaviour::Reset => return Err(Reset),
        };
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into(),
                )
            })
            .collect();
        let echo = serde_json::json!({
            "instance": self.name,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body_bytes": body.len(),
        });
        let mut response = Response::new(Full::new(Bytes::from(echo.to_string())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        Ok(response)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
