//! Telling a connection's protocol from its first read, and handing those bytes on.
//!
//! The first read is a whole buffer, usually the whole first request: [`sniff`] looks for the
//! HTTP/2 preface in it, and [`ClientStream`] gives the bytes back to whichever server takes
//! the connection, so telling costs no extra system call. The stream also counts the bytes it
//! reads, which is how a connection's watchdog tells a client sending a request slowly from
//! an idle one.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::TcpStream,
};

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Size of a connection's first read.
pub const FIRST_READ: usize = 4096;

/// Reads a connection's first bytes into `first` and tells whether it speaks HTTP/2 with
/// prior knowledge; `None` if it closed first.
pub async fn sniff(stream: &mut TcpStream, first: &mut BytesMut) -> io::Result<Option<bool>> {
    loop {
        if stream.read_buf(first).await? == 0 {
            return Ok(None);
        }
        let seen = first.len().min(H2_PREFACE.len());
        if first[..seen] != H2_PREFACE[..seen] {
            return Ok(Some(false));
        }
        if seen == H2_PREFACE.len() {
            return Ok(Some(true));
        }
    }
}

/// A client connection: its first bytes, already read, come back first; every byte read is
/// counted in `bytes_read`.
pub struct ClientStream {
    pub prefix: Bytes,
    pub stream: TcpStream,
    pub bytes_read: Arc<AtomicU64>,
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn sniffed(bytes: &[u8]) -> Option<bool> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, bytes)
            .await
            .unwrap();
        drop(client);
        let mut first = BytesMut::with_capacity(FIRST_READ);
        let protocol = sniff(&mut server, &mut first).await.unwrap();
        assert!(
            bytes.starts_with(&first),
            "the bytes read are kept for the server"
        );
        protocol
    }

    #[tokio::test]
    async fn the_http2_preface_means_http2_and_anything_else_http1() {
        assert_eq!(sniffed(H2_PREFACE).await, Some(true));
        assert_eq!(
            sniffed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await,
            Some(false)
        );
        assert_eq!(sniffed(b"PRI * HTTP/1.1\r\n").await, Some(false));
        assert_eq!(sniffed(b"PRI * HTTP/2").await, None, "closed mid-preface");
    }
}
