//! `weir-echo`: an HTTP backend that answers every request with a description of it.
//!
//! Weir's quickstart, end-to-end tests and benchmarks run it as the upstream behind the
//! gateway. It serves HTTP/1.1 and h2c on one address and, once bound, prints
//! `listening on <addr>` as its only line on stdout, so whoever started it with
//! `--listen 127.0.0.1:0` learns the port.
//!
//! Every answer is 200 with a JSON body naming the instance and echoing the method, HTTP
//! version, path, query, headers and the number of body bytes received, unless the query asks otherwise:
//! `delay_ms=N` waits N milliseconds before answering, `status=N` answers with that status,
//! and `size=N` answers N bytes of `x` (text/plain) instead of JSON, sliced from one static
//! buffer so that a benchmark measures the gateway rather than this backend.

use std::{
    convert::Infallible,
    io::Write,
    net::SocketAddr,
    num::NonZeroUsize,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

/// An echo backend for Weir: answers every request with a JSON description of it.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The instance name reported in every answer, to tell backends apart.
    #[arg(long, default_value = "echo")]
    name: String,
    /// Worker threads of the runtime (default: one per core).
    #[arg(long)]
    threads: Option<NonZeroUsize>,
}

type EchoBody = Either<Full<Bytes>, Filler>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.get());
    }
    runtime.build()?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", args.listen))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);

    let instance: Arc<str> = args.name.into();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: back off rather than spin.
                eprintln!("weir-echo: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let instance = instance.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| answer(request, instance.clone()));
            // A client that goes away mid-connection is not this backend's problem.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Answers one request as its query asks.
async fn answer(
    request: Request<Incoming>,
    instance: Arc<str>,
) -> Result<Response<EchoBody>, hyper::Error> {
    let asks = match Asks::parse(request.uri().query()) {
        Ok(asks) => asks,
        Err(reason) => return Ok(text(StatusCode::BAD_REQUEST, reason)),
    };
    let (parts, body) = request.into_parts();
    let body_bytes = count_bytes(body).await?;
    if let Some(delay) = asks.delay {
        tokio::time::sleep(delay).await;
    }

    let mut response = match asks.size {
        Some(size) => {
            let mut response = Response::new(Either::Right(Filler { remaining: size }));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        None => {
            let description = serde_json::json!({
                "instance": &*instance,
                "method": parts.method.as_str(),
                "version": format!("{:?}", parts.version),
                // The host asked for: HTTP/2's :authority, else the Host header.
                "authority": parts
                    .uri
                    .authority()
                    .map(|a| a.as_str())
                    .or_else(|| parts.headers.get("host").and_then(|h| h.to_str().ok())),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "headers": headers_by_name(&parts.headers),
                "body_bytes": body_bytes,
            });
            let mut response = Response::new(Either::Left(Full::new(Bytes::from(
                description.to_string(),
            ))));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
    };
    *response.status_mut() = asks.status.unwrap_or(StatusCode::OK);
    Ok(response)
}

/// What the query string asks of the answer.
#[derive(Default)]
struct Asks {
    delay: Option<Duration>,
    status: Option<StatusCode>,
    size: Option<u64>,
}

impl Asks {
    fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut asks = Self::default();
        for pair in query.unwrap_or_default().split('&') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}={value}: not a number"))
            };
            match key {
                "delay_ms" => asks.delay = Some(Duration::from_millis(number()?)),
                "size" => asks.size = Some(number()?),
                "status" => {
                    let status = u16::try_from(number()?)
                        .ok()
                        .and_then(|code| StatusCode::from_u16(code).ok())
                        .ok_or_else(|| format!("status={value}: not an HTTP status"))?;
                    asks.status = Some(status);
                }
                _ => {}
            }
        }
        Ok(asks)
    }
}

/// Reads the request body to its end, counting its bytes without keeping them.
async fn count_bytes(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut count = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            count += data.len() as u64;
        }
    }
    Ok(count)
}

/// Headers as a JSON object; a repeated header's values are joined with `, `.
fn headers_by_name(headers: &http::HeaderMap) -> serde_json::Map<String, serde_json::Value> {
    headers
        .keys()
        .map(|name| {
            let values: Vec<_> = headers
                .get_all(name)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()))
                .collect();
            (name.as_str().to_owned(), values.join(", ").into())
        })
        .collect()
}

fn text(status: StatusCode, message: String) -> Response<EchoBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(message + "\n"))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// The bytes every `size=N` answer is sliced from.
static FILLER: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// A body of `remaining` bytes of `x`, in slices of [`FILLER`]: no allocation per answer.
struct Filler {
    remaining: u64,
}

impl Body for Filler {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let chunk = self.remaining.min(FILLER.len() as u64) as usize;
        self.remaining -= chunk as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILLER[..chunk])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
