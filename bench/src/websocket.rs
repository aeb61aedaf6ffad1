//! WebSocket (RFC 6455) for the soak: an echo server for Weir to proxy to, and the client
//! sessions of the soak's WebSocket load.
//!
//! weir-echo speaks HTTP only, and the soak wants sessions opened and closed through Weir's
//! `Upgrade` path for ten minutes, so this harness carries the little of the protocol it
//! needs: the opening handshake (`Sec-WebSocket-Accept` computed and checked), masked client
//! frames, unmasked server frames, payloads up to 64 KiB, and the closing handshake. Blocking
//! std sockets, a thread per server connection: the soak opens a few sessions at a time.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use crate::servers::HOST;

/// The GUID RFC 6455 appends to the client's key before hashing it into the accept value.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How long either side waits for the other before a session is an error.
const TIMEOUT: Duration = Duration::from_secs(10);

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_value(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{ACCEPT_GUID}").as_bytes(),
    );
    base64(digest.as_ref())
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// One frame: its opcode and (unmasked) payload.
struct Frame {
    opcode: u8,
    payload: Vec<u8>,
}

/// Writes one final frame; masked with `mask` (a client's), unmasked without.
fn write_frame(
    stream: &mut TcpStream,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => frame.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    stream.write_all(&frame)
}

/// Reads one frame (unfragmented, as both sides here send), unmasking it if masked.
fn read_frame(stream: &mut TcpStream) -> std::io::Result<Frame> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let opcode = head[0] & 0x0F;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len)?;
            u64::from(u16::from_be_bytes(len))
        }
        127 => {
            let mut len = [0u8; 8];
            stream.read_exact(&mut len)?;
            u64::from_be_bytes(len)
        }
        len => u64::from(len),
    };
    if len > 1 << 20 {
        return Err(std::io::Error::other(format!("a {len}-byte frame")));
    }
    let mut mask = [0u8; 4];
    if masked {
        stream.read_exact(&mut mask)?;
    }
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload)?;
    if masked {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    Ok(Frame { opcode, payload })
}

/// Reads an HTTP head up to its blank line, byte by byte (nothing after it is consumed).
fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(std::io::Error::other("a head over 16 KiB"));
        }
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    String::from_utf8(head).map_err(|_| std::io::Error::other("a head that is not text"))
}

/// A header's value from a head, by case-insensitive name.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// The echo server: answers an upgrade with `101`, then sends every text or binary message
/// back as it came, answers pings, and answers a close with a close.
pub struct EchoServer {
    pub port: u16,
}

impl EchoServer {
    /// Binds a loopback port and serves on a thread of its own until the process ends.
    pub fn start() -> Result<Self, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("WebSocket server: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        std::thread::Builder::new()
            .name("ws-echo".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    std::thread::spawn(move || {
                        // A session the peer cut short is the client's to report.
                        let _ = serve(stream);
                    });
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Self { port })
    }
}

/// Serves one connection: the upgrade, then echoes until a close or an error.
fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let head = read_head(&mut stream)?;
    let upgrade = header(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = header(&head, "sec-websocket-key").filter(|_| upgrade) else {
        stream.write_all(
            b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\
              Connection: close\r\n\r\n",
        )?;
        return Ok(());
    };
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_value(key)
    )?;
    loop {
        let frame = read_frame(&mut stream)?;
        match frame.opcode {
            OPCODE_TEXT | OPCODE_BINARY => {
                write_frame(&mut stream, frame.opcode, &frame.payload, None)?
            }
            OPCODE_PING => write_frame(&mut stream, OPCODE_PONG, &frame.payload, None)?,
            OPCODE_CLOSE => {
                write_frame(&mut stream, OPCODE_CLOSE, &frame.payload, None)?;
                return Ok(());
            }
            _ => {}
        }
    }
}

/// One client session through `port` for `host`: the upgrade (its `101` and accept value
/// checked), `messages` text messages each checked to come back identical, then the closing
/// handshake and the connection closed. `Err` says what went wrong.
pub fn session(port: u16, host: &str, messages: usize, seed: u64) -> Result<(), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let key = base64(&seed.to_le_bytes().repeat(2));
    write!(
        stream,
        "GET /chat HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let head = read_head(&mut stream).map_err(|e| format!("upgrade answer: {e}"))?;
    let status = head.get(9..12).unwrap_or("???");
    if status != "101" {
        return Err(format!("upgrade answered {status}, not 101"));
    }
    if header(&head, "sec-websocket-accept") != Some(accept_value(&key).as_str()) {
        return Err("101 without the right Sec-WebSocket-Accept".into());
    }
    let mask = (seed as u32 ^ 0x5a5a_a5a5).to_be_bytes();
    for i in 0..messages {
        // Sizes across the 7-bit and 16-bit length encodings.
        let message = format!("{HOST} soak message {i} of session {seed} ")
            .repeat(1 + (i * 37 + seed as usize) % 8);
        write_frame(&mut stream, OPCODE_TEXT, message.as_bytes(), Some(mask))
            .map_err(|e| format!("write message {i}: {e}"))?;
        let echoed = read_frame(&mut stream).map_err(|e| format!("read message {i}: {e}"))?;
        if echoed.opcode != OPCODE_TEXT || echoed.payload != message.as_bytes() {
            return Err(format!("message {i} came back changed"));
        }
    }
    write_frame(
        &mut stream,
        OPCODE_CLOSE,
        &1000u16.to_be_bytes(),
        Some(mask),
    )
    .map_err(|e| format!("write close: {e}"))?;
    let close = read_frame(&mut stream).map_err(|e| format!("read close: {e}"))?;
    if close.opcode != OPCODE_CLOSE {
        return Err(format!(
            "opcode {} where the close was expected",
            close.opcode
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{EchoServer, accept_value, base64, session};

    #[test]
    fn the_accept_value_is_rfc_6455s_example() {
        // RFC 6455, section 1.3.
        assert_eq!(
            accept_value("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn a_session_echoes_against_the_echo_server_directly() {
        let server = EchoServer::start().unwrap();
        session(server.port, "ws.test", 20, 7).unwrap();
    }
}
