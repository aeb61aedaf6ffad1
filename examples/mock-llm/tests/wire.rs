//! The mock as a real process on a real socket, read by a raw hyper client: the framing
//! clients depend on (SSE events, the usage chunk, `event:` lines) and the faults that must
//! look like failures on the wire (status codes, aborted bodies).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpStream;

const API_KEY: &str = "sk-test";

/// A `weir-mock-llm` process, killed when dropped.
struct MockProcess {
    child: Child,
    address: SocketAddr,
}

impl MockProcess {
    fn start(extra_args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir-mock-llm"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "1",
                "--api-key",
                API_KEY,
            ])
            .args(extra_args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("weir-mock-llm starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("weir-mock-llm prints its address");
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Self { child, address }
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response read to its end, or to the error that ended it.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    /// The body bytes received, up to the end or the error.
    received: String,
    /// The body ended with an error rather than cleanly.
    broken: bool,
}

impl Answer {
    fn text(&self) -> &str {
        assert!(!self.broken, "the body ends cleanly");
        &self.received
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.text()).unwrap()
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    H2c,
}

async fn send(mock: &MockProcess, protocol: Protocol, request: Request<Full<Bytes>>) -> Answer {
    let io = TokioIo::new(TcpStream::connect(mock.address).await.unwrap());
    let response = match protocol {
        Protocol::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        }
        Protocol::H2c => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        }
    };
    let (parts, mut body) = response.into_parts();
    let mut received = Vec::new();
    let mut broken = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => received.extend_from_slice(frame.data_ref().unwrap_or(&Bytes::new())),
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    Answer {
        status: parts.status,
        headers: parts.headers,
        received: String::from_utf8(received).unwrap(),
        broken,
    }
}

async fn post(mock: &MockProcess, path: &str, body: Value) -> Answer {
    post_with(mock, Protocol::Http1, path, body).await
}

async fn post_with(mock: &MockProcess, protocol: Protocol, path: &str, body: Value) -> Answer {
    let request = Request::post(format!("http://{}{path}", mock.address))
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(mock, protocol, request).await
}

/// An SSE body as `(event line, data)` pairs; events without an `event:` line have `None`.
fn events(body: &str) -> Vec<(Option<String>, String)> {
    assert!(body.ends_with("\n\n"), "the stream ends with whole events");
    body.split_terminator("\n\n")
        .map(|event| {
            let mut name = None;
            let mut data = String::new();
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = value.to_owned();
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn openai_stream_with_include_usage_ends_with_a_usage_chunk_then_done() {
    let mock = MockProcess::start(&[]);
    let answer = post(
        &mock,
        "/v1/chat/completions",
        json!({
            "model": "mock+tokens-3",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there you"}],
        }),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    assert_eq!(answer.headers["x-mock-name"], "mock");
    let events = events(answer.text());
    let (last, chunks) = events.split_last().unwrap();
    assert_eq!(last, &(None, "[DONE]".to_owned()));
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|(name, data)| {
            assert_eq!(*name, None, "chat chunks have no event line");
            serde_json::from_str(data).unwrap()
        })
        .collect();

    // Role, three words, finish, usage.
    assert_eq!(chunks.len(), 6);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks[1..4]
        .iter()
        .map(|chunk| chunk["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "tok1 tok2 tok3");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    for chunk in &chunks[..5] {
        assert_eq!(chunk["usage"], Value::Null);
        assert!(chunk.as_object().unwrap().contains_key("usage"));
    }
    let usage_chunk = &chunks[5];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 5);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 3);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 8);
    assert_eq!(usage_chunk["id"], "chatcmpl-mock-1");
}

#[tokio::test]
async fn anthropic_stream_sends_every_event_with_its_event_line_in_order() {
    let mock = MockProcess::start(&["--name", "anthropic-a"]);
    let answer = post(
        &mock,
        "/v1/messages",
        json!({
            "model": "claude+tokens-2+tools-1+text-then-tools+cache",
            "stream": true,
            "max_tokens": 100,
            "system": [{"type": "text", "text": "you are terse"}],
            "messages": [{"role": "user", "content": "weather in paris"}],
        }),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["x-mock-name"], "anthropic-a");
    let events = events(answer.text());
    let names: Vec<&str> = events
        .iter()
        .map(|(name, _)| name.as_deref().expect("every event has an event line"))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let data: Vec<Value> = events
        .iter()
        .map(|(name, data)| {
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(
                data["type"],
                name.as_deref().unwrap(),
                "data type matches the event"
            );
            data
        })
        .collect();
    let start = &data[0]["message"];
    assert_eq!(start["id"], "msg_anthropic-a_1");
    assert_eq!(start["usage"]["input_tokens"], 6);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 4);
    assert_eq!(start["usage"]["cache_creation_input_tokens"], 2);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(data[6]["content_block"]["type"], "tool_use");
    assert_eq!(data[6]["content_block"]["id"], "toolu_1");
    let arguments: String = data[7..9]
        .iter()
        .map(|event| event["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "c1", "n": 1})
    );
    assert_eq!(data[10]["delta"]["stop_reason"], "tool_use");
    assert_eq!(data[10]["usage"]["output_tokens"], 2 + 5);
}

#[tokio::test]
async fn status_429_comes_with_retry_after_and_a_rate_limit_error_in_each_dialect() {
    let mock = MockProcess::start(&[]);
    let openai = post(
        &mock,
        "/v1/chat/completions",
        json!({"model": "mock+status-429+retry-after-30", "messages": []}),
    )
    .await;
    assert_eq!(openai.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(openai.headers["retry-after"], "30");
    assert_eq!(openai.json()["error"]["code"], "rate_limit_exceeded");

    let anthropic = post(
        &mock,
        "/v1/messages",
        json!({"model": "mock+status-429+retry-after-30", "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(anthropic.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(anthropic.headers["retry-after"], "30");
    assert_eq!(anthropic.json()["type"], "error");
    assert_eq!(anthropic.json()["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn cut_after_n_ends_the_body_with_an_error_after_n_deltas() {
    let mock = MockProcess::start(&[]);
    for protocol in [Protocol::Http1, Protocol::H2c] {
        let answer = post_with(
            &mock,
            protocol,
            "/v1/chat/completions",
            json!({
                "model": "mock+cut-after-2",
                "stream": true,
                "messages": [{"role": "user", "content": "hi"}],
            }),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.broken, "the client sees a broken body");
        let chunks: Vec<Value> = events(&answer.received)
            .iter()
            .map(|(_, data)| serde_json::from_str(data).expect("no [DONE]"))
            .collect();
        // The role chunk and two words; no finish chunk.
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2]["choices"][0]["delta"]["content"], " tok2");
        assert!(
            chunks
                .iter()
                .all(|chunk| chunk["choices"][0]["finish_reason"].is_null())
        );
    }
}

#[tokio::test]
async fn headers_then_close_breaks_the_body_after_the_headers() {
    let mock = MockProcess::start(&[]);
    let answer = post(
        &mock,
        "/v1/messages",
        json!({"model": "mock+headers-then-close", "stream": true, "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    assert!(answer.broken);
    assert_eq!(answer.received, ": ping\n\n");
}

#[tokio::test]
async fn a_wrong_key_is_refused_in_the_dialect_of_the_path() {
    let mock = MockProcess::start(&[]);
    let request = |path: &str, header: (&str, &str)| {
        Request::post(format!("http://{}{path}", mock.address))
            .header(header.0, header.1)
            .body(Full::new(Bytes::from_static(b"{\"model\":\"mock\"}")))
            .unwrap()
    };
    let openai = send(
        &mock,
        Protocol::Http1,
        request("/v1/chat/completions", ("x-api-key", API_KEY)),
    )
    .await;
    assert_eq!(openai.status, StatusCode::UNAUTHORIZED);
    assert_eq!(openai.json()["error"]["code"], "invalid_api_key");

    let anthropic = send(
        &mock,
        Protocol::Http1,
        request("/v1/messages", ("x-api-key", "wrong")),
    )
    .await;
    assert_eq!(anthropic.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anthropic.json()["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn the_request_log_shows_what_arrived_until_cleared() {
    let mock = MockProcess::start(&[]);
    post(
        &mock,
        "/openai/v1/embeddings",
        json!({"model": "mock", "input": ["a b", "c"]}),
    )
    .await;
    let log_request = |method: &str| {
        Request::builder()
            .method(method)
            .uri(format!("http://{}/mock/requests", mock.address))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let log = send(&mock, Protocol::Http1, log_request("GET"))
        .await
        .json();
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["path"], "/openai/v1/embeddings");
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(
        log[0]["headers"]["authorization"],
        format!("Bearer {API_KEY}")
    );
    assert_eq!(log[0]["body"]["input"], json!(["a b", "c"]));

    let cleared = send(&mock, Protocol::Http1, log_request("DELETE")).await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT);
    let log = send(&mock, Protocol::Http1, log_request("GET"))
        .await
        .json();
    assert_eq!(log, json!([]));
}
