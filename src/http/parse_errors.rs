//! Answers to requests hyper cannot parse. On a malformed request line or header, a request
//! head too large or a request target too long, hyper writes a bare reply of its own (`400`,
//! `431` or `414`, no body, no request id) and closes the connection; no handler runs. [`Io`]
//! wraps each connection's socket, recognises that reply as hyper writes it and writes the
//! API's error in its place: the same status, an `X-Request-ID` and the JSON body
//! `{"error", "details", "request_id"}`, like every other response.
//!
//! hyper's reply is a whole response head in one buffer: its status line, `connection: close`,
//! `content-length: 0` and `date`. The server's own responses always carry `x-request-id`,
//! so they never match.

use super::AppState;
use hyper::rt::{Read, ReadBufCursor, Write};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Most request headers hyper accepts: its default, left as it is (setting any value makes
/// hyper allocate the header array on the heap for every request).
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request head hyper buffers (its default, set explicitly by `serve`).
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// Longest request target hyper accepts.
pub const MAX_TARGET_BYTES: usize = u16::MAX as usize - 1;

/// One of hyper's own replies and what the API says instead.
struct Canned {
    status_line: &'static [u8],
    status: u16,
    error: &'static str,
    details: fn() -> serde_json::Value,
}

const CANNED: [Canned; 3] = [
    Canned {
        status_line: b"HTTP/1.1 400 Bad Request\r\n",
        status: 400,
        error: "malformed http request: the request line or a header could not be parsed",
        details: || {
            serde_json::json!({
                "expected": "`METHOD /path HTTP/1.1` then `Name: value` header lines, each ending in CRLF"
            })
        },
    },
    Canned {
        status_line: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        status: 431,
        error: "request headers too large",
        details: || serde_json::json!({"max_headers": MAX_HEADERS, "max_head_bytes": MAX_HEAD_BYTES}),
    },
    Canned {
        status_line: b"HTTP/1.1 414 URI Too Long\r\n",
        status: 414,
        error: "request target too long",
        details: || serde_json::json!({"max_target_bytes": MAX_TARGET_BYTES}),
    },
];

/// Which of hyper's own replies `buf` is, if it is one.
fn canned(buf: &[u8]) -> Option<&'static Canned> {
    // The common case, a 2xx or a body, is settled by the first ten bytes.
    if !buf.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let c = CANNED.iter().find(|c| buf.starts_with(c.status_line))?;
    // A whole head and nothing else, without a request id.
    if !buf.ends_with(b"\r\n\r\n") || find(buf, b"\r\n\r\n") != Some(buf.len() - 4) {
        return None;
    }
    let lower = buf.to_ascii_lowercase();
    if find(&lower, b"\r\nx-request-id:").is_some() {
        return None;
    }
    Some(c)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// hyper's `date` header line (with its CRLF), kept in the reply.
fn date_line(head: &[u8]) -> &[u8] {
    let lower = head.to_ascii_lowercase();
    let Some(start) = find(&lower, b"\r\ndate:").map(|i| i + 2) else {
        return b"";
    };
    match find(&head[start..], b"\r\n") {
        Some(len) => &head[start..start + len + 2],
        None => b"",
    }
}

/// The API's reply in place of hyper's `head`.
fn reply(c: &Canned, head: &[u8], request_id: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "error": c.error,
        "details": [(c.details)()],
        "request_id": request_id,
    })
    .to_string();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(c.status_line);
    out.extend_from_slice(b"content-type: application/json\r\n");
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(request_id.as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(date_line(head));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// A connection's socket, with hyper's own error replies swapped for the API's.
pub(super) struct Io<T> {
    inner: T,
    state: Arc<AppState>,
    /// The API's reply being written, and how much of it is.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> Io<T> {
    /// Wraps `inner`; `state` makes request ids and counts the replies.
    pub(super) fn new(inner: T, state: Arc<AppState>) -> Self {
        Self {
            inner,
            state,
            pending: None,
        }
    }
}

impl<T: Write + Unpin> Io<T> {
    /// Writes what is left of the API's reply.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf`, hyper's reply, and starts writing the API's instead.
    fn replace(
        &mut self,
        c: &Canned,
        buf: &[u8],
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        let id = self.state.request_id();
        self.state.metrics.unparsed(c.status);
        tracing::debug!("answered a request hyper could not parse with {}", c.status);
        self.pending = Some((reply(c, buf, id.as_str()), 0));
        // What does not go out now goes out on the flush hyper calls next.
        if let Poll::Ready(Err(e)) = self.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }
}

impl<T: Read + Unpin> Read for Io<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Io<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        match canned(buf) {
            Some(c) => this.replace(c, buf, cx),
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        // After pipelined responses, hyper's reply can come behind them in one write: they go
        // first, and the reply is at the front of the next write.
        match bufs
            .iter()
            .enumerate()
            .find_map(|(i, b)| canned(b).map(|c| (i, c)))
        {
            None => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            Some((0, c)) => this.replace(c, &bufs[0], cx),
            Some((i, _)) => Pin::new(&mut this.inner).poll_write_vectored(cx, &bufs[..i]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 21:10:07 GMT\r\n\r\n";

    #[test]
    fn hypers_own_replies_are_recognised_and_the_servers_are_not() {
        assert_eq!(canned(HYPER_400).map(|c| c.status), Some(400));
        let h431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(canned(h431).map(|c| c.status), Some(431));
        let h414 = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(canned(h414).map(|c| c.status), Some(414));
        // The server's own 400 carries its request id.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nX-Request-ID: abc\r\ncontent-length: 2\r\n\r\n";
        assert!(canned(ours).is_none());
        // A head with its body behind it, a 200, a body, half a head: none.
        let mut with_body = HYPER_400.to_vec();
        with_body.extend_from_slice(b"{}");
        assert!(canned(&with_body).is_none());
        assert!(canned(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(canned(b"{\"error\":\"x\"}").is_none());
        assert!(canned(&HYPER_400[..30]).is_none());
        // Another 4xx hyper never writes itself.
        assert!(canned(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
    }

    #[test]
    fn the_reply_has_the_status_the_request_id_a_json_body_and_hypers_date() {
        let r = reply(&CANNED[1], HYPER_400, "0123456789abcdef");
        let text = String::from_utf8(r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nx-request-id: 0123456789abcdef\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\ndate: Tue, 01 Dec 2026 21:10:07 GMT"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "request headers too large");
        assert_eq!(v["request_id"], "0123456789abcdef");
        assert_eq!(v["details"][0]["max_headers"], 100);
        assert_eq!(v["details"][0]["max_head_bytes"], 417_792);
    }
}
