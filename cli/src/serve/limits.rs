//! What one request may cost `ibconn serve`, enforced before the router (and before the token
//! check, so an unauthenticated client is bounded too):
//!
//! - **In flight**: at most [`Limits::max_concurrent`] requests at once; one more is answered
//!   503 `overloaded` with `Retry-After: 1` at once. Shedding instead of queueing keeps a burst
//!   from piling up behind a slow gateway, and a health checker retries anyway.
//! - **Headers**: at most [`MAX_HEADER_BYTES`] (request line and headers) reach a handler; more
//!   is 431 `headers_too_large`. The connection itself stops reading at
//!   [`HARD_MAX_HEADER_BYTES`] (hyper answers a bare 431 and closes), which bounds the memory a
//!   client can pin with one huge header.
//! - **Body**: the API takes no bodies, so at most [`MAX_BODY_BYTES`]; a larger
//!   `Content-Length`, or a chunked body that grows past it, is 413 `body_too_large`.
//! - **Time**: a request's body must arrive and its answer be ready within
//!   [`Limits::request_timeout`] of its headers: 408 `request_timeout` when the client is too
//!   slow to send, 503 `response_timeout` when the answer is. Headers too slow to arrive are
//!   cut off by the connection (see `server.rs`), with the same 408.
//!
//! Every refusal is the API's JSON envelope, like any other error.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Request as HttpRequest, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{envelope_json, fail};

/// Default of `--request-timeout` (raised to the probe timeout + [`PROBE_MARGIN`] when that is
/// longer): generous for a loopback status API, short enough that a stalled client or gateway
/// does not hold a slot for long.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How much longer than the probe timeout the default request timeout is, so a health call
/// answers with the probe's own verdict rather than a 503 `response_timeout`.
pub(crate) const PROBE_MARGIN: Duration = Duration::from_secs(2);

/// Default of `--max-concurrent-requests`: far above what a few dashboards, a Prometheus
/// scraper and a healthcheck need, far below what exhausts file descriptors or the pool.
pub(crate) const DEFAULT_MAX_CONCURRENT: u32 = 64;

/// The largest request line plus headers a handler sees (431 in the envelope beyond): the API
/// needs a few hundred bytes; 16 KiB leaves room for proxies' forwarding headers.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Where the connection stops reading headers (hyper's bare 431, connection closed): the
/// memory one connection may hold for a request head.
pub(crate) const HARD_MAX_HEADER_BYTES: usize = 64 * 1024;

/// The largest request body accepted: every route is a `GET` that reads none.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024;

/// Connections open at once; beyond, new ones wait in the listen backlog until one closes
/// (an idle keep-alive connection closes after the request timeout).
pub(crate) const MAX_CONNECTIONS: usize = 256;

/// The limits a running server enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Deadline for a request (headers, body and answer); also the keep-alive idle timeout.
    pub(crate) request_timeout: Duration,
    /// Requests in flight at once.
    pub(crate) max_concurrent: usize,
    /// Request line plus headers, bytes.
    pub(crate) max_header_bytes: usize,
    /// Request body, bytes.
    pub(crate) max_body_bytes: usize,
}

impl Limits {
    /// The limits for `serve`: the given request timeout and concurrency, else the defaults
    /// (the request timeout at least the probe timeout + [`PROBE_MARGIN`]).
    pub(crate) fn new(
        request_timeout: Option<Duration>,
        max_concurrent: Option<u32>,
        probe_timeout: Duration,
    ) -> Self {
        Self {
            request_timeout: request_timeout.unwrap_or_else(|| {
                DEFAULT_REQUEST_TIMEOUT.max(probe_timeout.saturating_add(PROBE_MARGIN))
            }),
            max_concurrent: usize::try_from(max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT))
                .unwrap_or(usize::MAX),
            max_header_bytes: MAX_HEADER_BYTES,
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

/// The limits and the in-flight permits the middleware shares.
#[derive(Debug)]
pub(crate) struct Gate {
    limits: Limits,
    in_flight: Arc<Semaphore>,
}

impl Gate {
    /// A gate enforcing `limits`.
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_concurrent)),
            limits,
        }
    }
}

/// Why a request was refused (or cut off) by a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LimitError {
    /// Every in-flight slot is taken.
    #[error("{limit} requests are already in flight; retry shortly")]
    Overloaded {
        /// `--max-concurrent-requests`.
        limit: usize,
    },
    /// The request line and headers are too large.
    #[error("the request line and headers are {size} bytes, over the limit of {limit}")]
    HeadersTooLarge {
        /// Their size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is too large (by `Content-Length` or as it arrived).
    #[error("the request body is over the limit of {limit} bytes (this API takes no bodies)")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The client did not send the whole request in time.
    #[error("the request did not arrive within {after:?}")]
    RequestTimeout {
        /// The request timeout.
        after: Duration,
    },
    /// The answer was not ready in time.
    #[error("the answer was not ready within {after:?}")]
    ResponseTimeout {
        /// The request timeout.
        after: Duration,
    },
    /// The body could not be read (the client sent broken chunking, or went away).
    #[error("the request body could not be read: {0}")]
    BadBody(String),
}

impl LimitError {
    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Overloaded { .. } | Self::ResponseTimeout { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::BadBody(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The envelope's machine-readable code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Overloaded { .. } => "overloaded",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::ResponseTimeout { .. } => "response_timeout",
            Self::BadBody(_) => "bad_request",
        }
    }

    /// A whole HTTP/1.1 response with this error's envelope, closing the connection: for the
    /// connection layer, which answers a client too slow to send its headers outside hyper.
    pub(crate) fn raw_response(&self) -> Vec<u8> {
        let body = envelope_json(self.code(), &self.to_string());
        let status = self.status();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

impl IntoResponse for LimitError {
    fn into_response(self) -> Response {
        let mut r = fail::<()>(self.status(), None, self.code(), self.to_string());
        if matches!(self, Self::Overloaded { .. }) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(
            self,
            Self::BodyTooLarge { .. } | Self::RequestTimeout { .. } | Self::BadBody(_)
        ) {
            // The rest of the body is not read: the connection cannot carry another request.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

/// Bytes of the request line and headers as sent (`name: value\r\n` each).
fn head_bytes<B>(request: &HttpRequest<B>) -> usize {
    let uri = request.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + "://".len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    let line = request.method().as_str().len() + target + "  HTTP/1.1\r\n".len();
    request
        .headers()
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// The declared `Content-Length`, if any and valid.
fn content_length<B>(request: &HttpRequest<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Read the whole body (bounded in size), so a handler never waits on the client.
async fn read_body(body: Body, limit: usize) -> Result<Body, LimitError> {
    if body.is_end_stream() {
        return Ok(body);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(Body::from(collected.to_bytes())),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(LimitError::BodyTooLarge { limit })
        }
        Err(e) => Err(LimitError::BadBody(e.to_string())),
    }
}

/// The middleware: in-flight slot, header and body size, then the request under its deadline.
pub(crate) async fn enforce(
    State(gate): State<Arc<Gate>>,
    request: Request,
    next: Next,
) -> Response {
    let limits = gate.limits;
    let Ok(_slot) = Arc::clone(&gate.in_flight).try_acquire_owned() else {
        tracing::warn!(
            limit = limits.max_concurrent,
            "request shed: too many in flight"
        );
        return LimitError::Overloaded {
            limit: limits.max_concurrent,
        }
        .into_response();
    };
    let deadline = Instant::now() + limits.request_timeout;
    let size = head_bytes(&request);
    if size > limits.max_header_bytes {
        return LimitError::HeadersTooLarge {
            size,
            limit: limits.max_header_bytes,
        }
        .into_response();
    }
    let too_large = LimitError::BodyTooLarge {
        limit: limits.max_body_bytes,
    };
    if content_length(&request).is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large.into_response();
    }
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout_at(deadline, read_body(body, limits.max_body_bytes)).await
    {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return e.into_response(),
        Err(_) => {
            tracing::warn!(after = ?limits.request_timeout, "request body too slow");
            return LimitError::RequestTimeout {
                after: limits.request_timeout,
            }
            .into_response();
        }
    };
    let path = parts.uri.path().to_owned();
    match tokio::time::timeout_at(deadline, next.run(Request::from_parts(parts, body))).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%path, after = ?limits.request_timeout, "answer too slow");
            LimitError::ResponseTimeout {
                after: limits.request_timeout,
            }
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_request_timeout_outlasts_the_probe() {
        let l = Limits::new(None, None, Duration::from_secs(2));
        assert_eq!(l.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(l.max_concurrent, 64);
        let l = Limits::new(None, Some(3), Duration::from_secs(30));
        assert_eq!(l.request_timeout, Duration::from_secs(32));
        assert_eq!(l.max_concurrent, 3);
        let l = Limits::new(Some(Duration::from_secs(1)), None, Duration::from_secs(30));
        assert_eq!(l.request_timeout, Duration::from_secs(1));
    }

    #[test]
    fn a_raw_timeout_response_is_http_with_the_envelope() {
        let raw = LimitError::RequestTimeout {
            after: Duration::from_secs(1),
        }
        .raw_response();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["success"], false);
        assert!(v["data"].is_null());
        assert_eq!(v["error"]["code"], "request_timeout");
    }
}
