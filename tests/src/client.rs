//! An HTTP client for one address: every request names its Host, has a deadline, and comes
//! back as a [`Reply`] whose body is read in full.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header::HOST};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// The longest any request may take before the test gives up on it.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Sends requests to one address over pooled keep-alive connections. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    address: SocketAddr,
    pool: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            pool: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// A client that opens a new connection for every request and closes it after the
    /// response (it keeps no idle connection), as a script calling `curl` in a loop would.
    pub fn without_keep_alive(address: SocketAddr) -> Self {
        Self {
            address,
            pool: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http(),
        }
    }

    /// The address requests go to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `GET path` with `Host: host`; panics if no answer comes.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.request(Method::GET, host, path).send().await
    }

    /// A request to shape further (headers) before sending.
    pub fn request(&self, method: Method, host: &str, path: &str) -> RequestBuilder<'_> {
        RequestBuilder {
            client: self,
            request: Request::builder()
                .method(method)
                .uri(format!("http://{}{path}", self.address))
                .header(HOST, host),
            body: Bytes::new(),
        }
    }
}

/// A request being shaped; see [`HttpClient::request`].
pub struct RequestBuilder<'a> {
    client: &'a HttpClient,
    request: http::request::Builder,
    body: Bytes,
}

impl RequestBuilder<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    /// Sends `body` with the request (with its `Content-Length`).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the request; panics if no answer comes.
    pub async fn send(self) -> Reply {
        let description = format!(
            "{} {}",
            self.request.method_ref().expect("a method is set"),
            self.request.uri_ref().expect("a URI is set")
        );
        self.try_send()
            .await
            .unwrap_or_else(|error| panic!("{description}: {error}"))
    }

    /// Sends the request; `Err` says why no answer came.
    pub async fn try_send(self) -> Result<Reply, String> {
        let request = self
            .request
            .body(Full::new(self.body))
            .map_err(|error| error.to_string())?;
        let exchange = async {
            let response = self.client.pool.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error>>(Reply {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        match tokio::time::timeout(REQUEST_DEADLINE, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(format!("{error:?}")),
            Err(_) => Err(format!("no answer within {REQUEST_DEADLINE:?}")),
        }
    }
}

/// A response, its body read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// Who answered: the echo instance's name for a 2xx echo answer, else `status <code>`.
    pub fn answered_by(&self) -> String {
        match self.echo_field("instance") {
            Some(instance) if self.status.is_success() => instance,
            _ => format!("status {}", self.status.as_u16()),
        }
    }

    /// A request header as the echo backend received it (names are lowercase).
    pub fn header_seen_upstream(&self, name: &str) -> Option<String> {
        self.echo_json()?
            .get("headers")?
            .get(name)?
            .as_str()
            .map(str::to_owned)
    }

    fn echo_field(&self, field: &str) -> Option<String> {
        Some(self.echo_json()?.get(field)?.as_str()?.to_owned())
    }

    fn echo_json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}
