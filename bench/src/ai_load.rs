//! `weir-bench ai-load`: the load generator of the AI gateway benchmark (ai.rs).
//!
//! N threads, each one HTTP/1.1 keep-alive connection, back to back until the time is up:
//! `POST /v1/chat/completions` with a short chat (a system and a user message, `max_tokens`
//! 32; the mock answers its default 12 words), whole or streamed (`"stream": true`). Each
//! request is timed from just before its first byte is written:
//!
//! - whole: to the last byte of the body (`Content-Length` or the chunked terminator);
//! - streamed: to the first server-sent event whose `choices[0].delta.content` is a non-empty
//!   string (time to first token; the role-only event before it does not count), read as the
//!   chunked body arrives; and, apart, to the end of the stream.
//!
//! A request counts as ok when the answer is 2xx and complete, and for a stream when it
//! carried content and ended with `data: [DONE]`; anything else (another status, a reset, a
//! 30 s silence, a stream without content) is an error, the first one kept for the report.
//! Requests under way when the time is up are finished and counted, and the run's duration
//! runs until the last of them ends.
//!
//! A plain blocking client on std's sockets with its own response parser, as
//! `weir-bench handshakes` is (tls.rs): it spends far less CPU per request than a general
//! client would, and the load generator shares CPU 0 with the mock provider. The soak's
//! HTTP/1.1 clients (soak_load.rs) are this [`Connection`] too, over TLS for its HTTPS load.
//!
//! Prints one JSON line: `ok`, `errors`, `first_error`, `duration_us`, in µs `p50`, `p99`,
//! `p999` (latency for whole answers, time to first token for streams) and `total_p50`,
//! `total_p99` (to the end of the body), and `cpu_ticks`, its own CPU time (utime + stime of
//! all its threads, /proc/self/stat), so that the driver can tell what other processes used.

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{ClientConfig, ClientConnection, StreamOwned, pki_types::ServerName};
use serde_json::{Value, json};

use crate::servers::HOST;

/// The OpenAI path every target serves.
pub const PATH: &str = "/v1/chat/completions";

/// What the mock answers to every benchmark request (its default: 12 words).
pub const EXPECTED_CONTENT: &str = "tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8 tok9 tok10 tok11 tok12";

/// How long a connection may stay silent before the request is an error.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The request body: a short chat of two messages, `max_tokens` small.
pub fn body(model: &str, stream: bool) -> String {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name twelve things an API gateway does."}
        ],
        "max_tokens": 32,
        "stream": stream,
    })
    .to_string()
}

/// The whole request, head and body, as the load sends it again and again.
pub fn request(key: &str, model: &str, stream: bool) -> Vec<u8> {
    let body = body(model, stream);
    format!(
        "POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One answer as the client saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// From writing the request to the end of the body.
    pub total: Duration,
    /// Streams: to the first event with content.
    pub first_content: Option<Duration>,
    /// Streams: whether `data: [DONE]` came.
    pub done: bool,
    /// With `collect`: the streamed content, joined.
    pub content: String,
    /// With `collect`: the body of a whole answer.
    pub body: Vec<u8>,
}

/// The server-sent events of a streamed answer, read line by line as the body arrives.
struct Events {
    line: Vec<u8>,
    first_content: Option<Instant>,
    done: bool,
    collect: bool,
    content: String,
}

impl Events {
    fn feed(&mut self, mut data: &[u8], at: Instant) {
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&data[..end]);
            self.line_done(at);
            self.line.clear();
            data = &data[end + 1..];
        }
        self.line.extend_from_slice(data);
    }

    fn line_done(&mut self, at: Instant) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        let Some(payload) = line.strip_prefix(b"data:") else {
            return;
        };
        let payload = payload.trim_ascii();
        if payload == b"[DONE]" {
            self.done = true;
            return;
        }
        // Past the first content, the load does not parse the events: it only waits for the end.
        if self.first_content.is_some() && !self.collect {
            return;
        }
        let Ok(event) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        if let Some(text) = event["choices"][0]["delta"]["content"].as_str()
            && !text.is_empty()
        {
            self.first_content.get_or_insert(at);
            if self.collect {
                self.content.push_str(text);
            }
        }
    }
}

/// What a [`Connection`] speaks over: plain TCP, or TLS naming the bench host (SNI).
enum Transport {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(buf),
            Transport::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.flush(),
            Transport::Tls(tls) => tls.flush(),
        }
    }
}

/// One keep-alive connection to the target, opened again when the server closes it.
pub struct Connection {
    port: u16,
    /// TLS to the target with this configuration, naming the bench host; plain TCP without.
    tls: Option<Arc<ClientConfig>>,
    stream: Option<Transport>,
    /// The certificate the server presented on the current connection (TLS only).
    peer_certificate: Option<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    /// When the last read returned: the time the bytes it brought arrived.
    last_read: Instant,
}

impl Connection {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            tls: None,
            stream: None,
            peer_certificate: None,
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
            last_read: Instant::now(),
        }
    }

    /// A connection over TLS with `config`, naming the bench host.
    pub fn tls(port: u16, config: Arc<ClientConfig>) -> Self {
        Self {
            tls: Some(config),
            ..Self::new(port)
        }
    }

    /// Closes the connection; the next exchange opens a new one.
    pub fn close(&mut self) {
        self.stream = None;
    }

    /// The end-entity certificate (DER) the server presented on the current connection,
    /// once a request went over it; `None` over plain TCP.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_certificate.as_deref()
    }

    /// Sends `request` and reads the whole answer. With `collect`, keeps its content.
    pub fn exchange(
        &mut self,
        request: &[u8],
        stream: bool,
        collect: bool,
    ) -> Result<Answer, String> {
        let result = self.exchange_inner(request, stream, collect);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange_inner(
        &mut self,
        request: &[u8],
        stream: bool,
        collect: bool,
    ) -> Result<Answer, String> {
        let connected = self.stream.is_none();
        if connected {
            let tcp = TcpStream::connect(("127.0.0.1", self.port))
                .map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            tcp.set_read_timeout(Some(READ_TIMEOUT))
                .map_err(|e| e.to_string())?;
            self.stream = Some(match &self.tls {
                None => Transport::Plain(tcp),
                Some(config) => {
                    let name = ServerName::try_from(HOST).expect("the bench host is a DNS name");
                    let tls = ClientConnection::new(config.clone(), name)
                        .map_err(|e| format!("TLS client: {e}"))?;
                    Transport::Tls(Box::new(StreamOwned::new(tls, tcp)))
                }
            });
            self.peer_certificate = None;
            self.buf.clear();
            self.pos = 0;
        }
        let began = Instant::now();
        let transport = self.stream.as_mut().expect("connected above");
        // Over TLS, rustls completes the handshake before it writes.
        transport
            .write_all(request)
            .and_then(|()| transport.flush())
            .map_err(|e| format!("write: {e}"))?;
        if connected && let Transport::Tls(tls) = transport {
            self.peer_certificate = tls
                .conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| leaf.to_vec());
        }

        let head = self.read_head()?;
        let mut events = Events {
            line: Vec::new(),
            first_content: None,
            done: false,
            collect,
            content: String::new(),
        };
        let mut body = Vec::new();
        let mut sink = |data: &[u8], at: Instant| {
            if stream {
                events.feed(data, at);
            } else if collect {
                body.extend_from_slice(data);
            }
        };
        if head.chunked {
            loop {
                let line_end = self.find_from_pos(b"\r\n")?;
                let size_text = std::str::from_utf8(&self.buf[self.pos..line_end])
                    .map_err(|_| "chunk size: not text")?;
                let size_text = size_text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| format!("chunk size {size_text:?}"))?;
                self.pos = line_end + 2;
                if size == 0 {
                    // Trailers, if any, up to the empty line.
                    loop {
                        let end = self.find_from_pos(b"\r\n")?;
                        let empty = end == self.pos;
                        self.pos = end + 2;
                        if empty {
                            break;
                        }
                    }
                    break;
                }
                self.fill_to(size + 2)?;
                sink(&self.buf[self.pos..self.pos + size], self.last_read);
                self.pos += size + 2;
            }
        } else if let Some(length) = head.content_length {
            self.fill_to(length)?;
            sink(&self.buf[self.pos..self.pos + length], self.last_read);
            self.pos += length;
        } else if !(head.status == 204 || head.status == 304) {
            return Err("an answer with neither Content-Length nor chunked".into());
        }
        let total = began.elapsed();
        if head.close {
            self.stream = None;
        }
        Ok(Answer {
            status: head.status,
            total,
            first_content: events.first_content.map(|at| at.duration_since(began)),
            done: events.done,
            content: events.content,
            body,
        })
    }

    /// Reads more bytes into the buffer; the connection closing is an error.
    fn fill(&mut self) -> Result<(), String> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 32 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let stream = self.stream.as_mut().ok_or("not connected")?;
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection mid-answer".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        self.last_read = Instant::now();
        Ok(())
    }

    /// Reads until `n` bytes past `pos` are buffered.
    fn fill_to(&mut self, n: usize) -> Result<(), String> {
        while self.buf.len() - self.pos < n {
            self.fill()?;
        }
        Ok(())
    }

    /// The index of `needle` at or after `pos`, reading as needed.
    fn find_from_pos(&mut self, needle: &[u8]) -> Result<usize, String> {
        loop {
            if let Some(at) = self.buf[self.pos..]
                .windows(needle.len())
                .position(|w| w == needle)
            {
                return Ok(self.pos + at);
            }
            self.fill()?;
        }
    }

    fn read_head(&mut self) -> Result<Head, String> {
        let end = self.find_from_pos(b"\r\n\r\n")?;
        let text = std::str::from_utf8(&self.buf[self.pos..end]).map_err(|_| "head: not text")?;
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.get(9..12))
            .and_then(|code| code.parse().ok())
            .ok_or("no status line")?;
        let mut head = Head {
            status,
            content_length: None,
            chunked: false,
            close: false,
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                head.close = value.eq_ignore_ascii_case("close");
            }
        }
        self.pos = end + 4;
        Ok(head)
    }
}

struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

/// One whole and one streamed request, each checked to carry the mock's answer in full: the
/// proof that a target does the job before it is measured.
pub fn check(port: u16, key: &str, model: &str) -> Result<(), String> {
    let mut connection = Connection::new(port);
    let whole = connection.exchange(&request(key, model, false), false, true)?;
    if whole.status != 200 {
        return Err(format!(
            "whole answer: status {}: {}",
            whole.status,
            String::from_utf8_lossy(&whole.body)
        ));
    }
    let answer: Value =
        serde_json::from_slice(&whole.body).map_err(|e| format!("whole answer: {e}"))?;
    let content = answer["choices"][0]["message"]["content"].as_str();
    if content != Some(EXPECTED_CONTENT) {
        return Err(format!("whole answer: content {content:?}, not the mock's"));
    }
    let streamed = connection.exchange(&request(key, model, true), true, true)?;
    if streamed.status != 200 || !streamed.done || streamed.content != EXPECTED_CONTENT {
        return Err(format!(
            "streamed answer: status {}, [DONE] {}, content {:?}",
            streamed.status, streamed.done, streamed.content
        ));
    }
    Ok(())
}

/// The status of one whole request, if any answer came: for polling a target until it is up.
pub fn probe(port: u16, key: &str, model: &str) -> Option<u16> {
    Connection::new(port)
        .exchange(&request(key, model, false), false, false)
        .ok()
        .map(|a| a.status)
}

const USAGE: &str = "usage: weir-bench ai-load --port PORT --key KEY --model MODEL \
                     [--clients N] [--millis MS] [--stream]";

/// `weir-bench ai-load`: runs the load and prints its summary as one JSON line.
pub fn run(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let (mut port, mut key, mut model) = (None, None, None);
    let (mut clients, mut millis, mut stream) = (1usize, 5_000u64, false);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| USAGE.to_owned());
        let number = |text: String| text.parse::<u64>().map_err(|_| USAGE.to_owned());
        match arg.as_str() {
            "--port" => port = Some(number(value()?)? as u16),
            "--key" => key = Some(value()?),
            "--model" => model = Some(value()?),
            "--clients" => clients = number(value()?)?.max(1) as usize,
            "--millis" => millis = number(value()?)?,
            "--stream" => stream = true,
            _ => return Err(USAGE.into()),
        }
    }
    let (port, key, model) = (port.ok_or(USAGE)?, key.ok_or(USAGE)?, model.ok_or(USAGE)?);
    let request = Arc::new(request(&key, &model, stream));
    let started = Instant::now();
    let deadline = started + Duration::from_millis(millis);

    #[derive(Default)]
    struct Tally {
        ok: u64,
        errors: u64,
        /// Latency (whole) or time to first token (streams), µs.
        primary_us: Vec<u32>,
        /// To the end of the body, µs.
        total_us: Vec<u32>,
        first_error: Option<String>,
    }
    let micros = |d: Duration| d.as_micros().min(u32::MAX as u128) as u32;
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut tally = Tally {
                    primary_us: Vec::with_capacity(1 << 16),
                    total_us: Vec::with_capacity(1 << 16),
                    ..Tally::default()
                };
                let mut connection = Connection::new(port);
                while Instant::now() < deadline {
                    match connection.exchange(&request, stream, false) {
                        Ok(answer) if (200..300).contains(&answer.status) => {
                            let primary = if stream {
                                match (answer.first_content, answer.done) {
                                    (Some(first), true) => Some(first),
                                    (first, done) => {
                                        tally.first_error.get_or_insert(format!(
                                            "a stream with{} content and{} [DONE]",
                                            if first.is_some() { "" } else { "out" },
                                            if done { "" } else { " without" }
                                        ));
                                        None
                                    }
                                }
                            } else {
                                Some(answer.total)
                            };
                            match primary {
                                Some(primary) => {
                                    tally.ok += 1;
                                    tally.primary_us.push(micros(primary));
                                    tally.total_us.push(micros(answer.total));
                                }
                                None => tally.errors += 1,
                            }
                        }
                        Ok(answer) => {
                            tally.errors += 1;
                            tally
                                .first_error
                                .get_or_insert(format!("status {}", answer.status));
                        }
                        Err(error) => {
                            tally.errors += 1;
                            tally.first_error.get_or_insert(error);
                            // A refused connection would otherwise spin.
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for worker in workers {
        let tally = worker.join().map_err(|_| "a load thread panicked")?;
        all.ok += tally.ok;
        all.errors += tally.errors;
        all.primary_us.extend(tally.primary_us);
        all.total_us.extend(tally.total_us);
        all.first_error = all.first_error.or(tally.first_error);
    }
    let elapsed = started.elapsed();
    all.primary_us.sort_unstable();
    all.total_us.sort_unstable();
    println!(
        "{}",
        json!({
            "ok": all.ok,
            "errors": all.errors,
            "first_error": all.first_error,
            "duration_us": elapsed.as_micros() as u64,
            "p50": percentile(&all.primary_us, 50.0),
            "p99": percentile(&all.primary_us, 99.0),
            "p999": percentile(&all.primary_us, 99.9),
            "total_p50": percentile(&all.total_us, 50.0),
            "total_p99": percentile(&all.total_us, 99.0),
            "cpu_ticks": own_cpu_ticks(),
        })
    );
    Ok(())
}

/// This process's user and system CPU ticks so far, every thread included.
fn own_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|end| stat[end + 2..].split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15: indexes 11 and 12 from field 3.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// The nearest-rank percentile of sorted samples; 0 when there are none.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    let n = sorted.len();
    if n == 0 {
        return 0;
    }
    sorted[((n as f64 * p / 100.0).ceil() as usize).clamp(1, n) - 1]
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::{Events, percentile};

    #[test]
    fn the_first_token_is_the_first_event_with_content_and_the_end_is_done() {
        let mut events = Events {
            line: Vec::new(),
            first_content: None,
            done: false,
            collect: true,
            content: String::new(),
        };
        let at = Instant::now();
        // The role-only event carries empty content; lines may be split across chunks.
        events.feed(
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            at,
        );
        assert!(events.first_content.is_none());
        events.feed(b"data: {\"choices\":[{\"delta\":{\"cont", at);
        events.feed(b"ent\":\"tok1\"}}]}\r\n\r\ndata: [DONE]\n\n", at);
        assert_eq!(events.first_content, Some(at));
        assert_eq!(events.content, "tok1");
        assert!(events.done);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), 50);
        assert_eq!(percentile(&samples, 99.0), 99);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
