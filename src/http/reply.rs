//! Responses: JSON bodies, the error shape `{"error", "details", "request_id"}`, and reading
//! a limited JSON request body.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use std::future::Future;

/// The response body type.
pub type Body = Full<Bytes>;

/// The error shape of every error answer.
#[derive(Serialize, schemars::JsonSchema)]
pub struct ErrorBody<'a> {
    /// What went wrong, lower case.
    pub error: &'a str,
    /// Field-level details, e.g. `{"field": "budget_usd", "message": …, "help": …}`.
    pub details: &'a [serde_json::Value],
    /// The request's id (also in the `X-Request-ID` header).
    pub request_id: &'a str,
}

/// An error answered as JSON.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Lower-case message.
    pub error: String,
    /// Field-level details.
    pub details: Vec<serde_json::Value>,
    /// Extra headers (e.g. `Allow`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error without details.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            details: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// With details.
    pub fn details(mut self, details: Vec<serde_json::Value>) -> Self {
        self.details = details;
        self
    }

    /// With a header.
    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The response, carrying the request id.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let body = ErrorBody {
            error: &self.error,
            details: &self.details,
            request_id,
        };
        let mut r = json(self.status, &body);
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }
}

/// A JSON response.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    // A decision is ~800 bytes: one allocation instead of growing 128 → 256 → 512 → 1024.
    let mut bytes = Vec::with_capacity(1024);
    if serde_json::to_writer(&mut bytes, value).is_err() {
        bytes = b"{}".to_vec();
    }
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A response from ready-made bytes.
pub fn bytes(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    full(status, content_type, Bytes::from(body))
}

/// A response with a body already in [`Bytes`].
pub fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A plain-text response.
pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Reads a JSON request body: checks the content type (415), the size (413) and that it
/// arrives within `timeout` (408).
pub async fn json_body(
    req: Request<Incoming>,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let body = match json_request_body(req, limit) {
        Ok(b) => b,
        Err(r) => return Err(Box::pin(r.linger(timeout)).await),
    };
    read_json_body(body, limit, timeout).await
}

/// Most bytes of a refused body read and discarded before the 413 is sent.
pub const MAX_DISCARD_BYTES: u64 = 64 * 1024 * 1024;

/// A body refused from its headers: the answer, and for one over the limit, the body itself,
/// to be read and discarded first.
#[derive(Debug)]
pub struct Refused {
    error: ApiError,
    rest: Option<Incoming>,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused { error, rest: None }
    }
}

impl Refused {
    /// The answer, after a lingering close (RFC 9112 §9.6): a client that sends its whole body
    /// before it reads (Python's `urllib`, most simple clients) would otherwise have its
    /// connection reset while still sending, and never see the 413. The rest of the body is read
    /// and discarded, up to [`MAX_DISCARD_BYTES`] and `timeout`; then the answer closes the
    /// connection.
    pub async fn linger(self, timeout: std::time::Duration) -> ApiError {
        if let Some(body) = self.rest {
            discard(body, timeout).await;
            return self.error.header("connection", "close".into());
        }
        self.error
    }
}

/// Reads and drops a body, up to [`MAX_DISCARD_BYTES`] and `timeout`.
async fn discard(mut body: Incoming, timeout: std::time::Duration) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > MAX_DISCARD_BYTES {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// The checks of [`json_body`] that need only the headers: the content type (415) and the
/// declared size (413). Gives back the body to read with [`read_json_body`]. Not async, so a
/// handler's future does not keep the request's headers.
pub fn json_request_body(req: Request<Incoming>, limit: u64) -> Result<Incoming, Refused> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(Refused::from(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            if ct.is_empty() {
                "missing content type: send `Content-Type: application/json`".to_string()
            } else {
                format!("unsupported content type `{ct}`: send `Content-Type: application/json`")
            },
        )));
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        // Over the limit: refused, after reading and dropping the rest when that is bounded.
        Some(n) if n > limit => Err(Refused {
            error: too_large(limit),
            rest: (n <= MAX_DISCARD_BYTES).then(|| req.into_body()),
        }),
        _ => Ok(req.into_body()),
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {limit} bytes"),
    )
}

/// Reads a body of at most `limit` bytes (413 beyond) that must arrive within `timeout` (408).
pub async fn read_json_body(
    body: Incoming,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut read = std::pin::pin!(read_body(body, limit_usize));
    // A small body usually arrives with the headers: then no timer is armed at all.
    let ready = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match read.as_mut().poll(cx) {
            std::task::Poll::Ready(r) => Some(r),
            std::task::Poll::Pending => None,
        })
    })
    .await;
    let read = match ready {
        Some(r) => r,
        // A client that sends its headers and then stalls the body is cut off. The timer
        // lives on the heap: it is rarely needed, and would make every request's future
        // larger.
        None => Box::pin(tokio::time::timeout(timeout, read))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body not received within {} ms",
                        timeout.as_millis()
                    ),
                )
            })?,
    };
    match read {
        Ok(bytes) => Ok(bytes),
        Err(Unread::TooLarge(rest)) => Err(Box::pin(
            Refused {
                error: too_large(limit),
                rest: Some(rest),
            }
            .linger(timeout),
        )
        .await),
        Err(Unread::Failed(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read request body: {e}"),
        )),
    }
}

/// Why a body was not read whole.
enum Unread {
    /// Over the limit; the rest of it.
    TooLarge(Incoming),
    /// The connection failed.
    Failed(hyper::Error),
}

/// Reads a whole body of at most `limit` bytes; the rest of it when it is larger. A body that
/// comes in one piece (nearly always) is returned as it is, without a copy.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, Unread> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<bytes::BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Unread::Failed)?.into_data() else {
            continue; // trailers
        };
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(Unread::TooLarge(body));
        }
        match (&mut first, &mut more) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut m = bytes::BytesMut::with_capacity(len);
                m.extend_from_slice(f);
                m.extend_from_slice(&data);
                more = Some(m);
            }
            (Some(_), Some(m)) => m.extend_from_slice(&data),
        }
    }
    Ok(match (first, more) {
        (_, Some(m)) => m.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// A malformed body: 400 with the line and column.
pub fn malformed(e: &serde_json::Error) -> ApiError {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!(
            "malformed json at line {} column {}: {msg}",
            e.line(),
            e.column()
        ),
    )
    .details(vec![
        serde_json::json!({"line": e.line(), "column": e.column()}),
    ])
}

/// A body that is JSON but not an object: 400.
pub fn not_an_object(kind: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("request body must be a JSON object, found {kind}"),
    )
}

/// Reads a JSON object body: [`json_body`], then the syntax (400 with line and column) and
/// that it is an object (400).
pub async fn json_object(
    req: Request<Incoming>,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let bytes = json_body(req, limit, timeout).await?;
    match crate::util::unique_json::parse(&bytes) {
        Ok((_, Some(path))) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("field `{path}` is given twice"),
        )
        .details(vec![serde_json::json!({
            "field": path,
            "message": format!("field `{path}` is given twice"),
            "help": "send each field once",
        })])),
        Ok((serde_json::Value::Object(m), None)) => Ok(m),
        Ok((other, None)) => Err(not_an_object(match other {
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::Bool(_) => "a boolean",
            _ => "null",
        })),
        Err(e) => Err(malformed(&e)),
    }
}
