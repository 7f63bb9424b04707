//! The edge every request on the main listener passes (protocol.md §1.3, §6):
//!
//! - a request whose header block carried both `Content-Length` and
//!   `Transfer-Encoding` is refused `400 invalid_request` and its connection
//!   closed (hyper would read it as chunked; a proxy in front might not);
//! - the body must arrive whole within the body deadline, however slowly it
//!   trickles: past it the answer is `408 request_timeout` and the connection
//!   is closed;
//! - every error answer is the JSON envelope, also those that never passed
//!   through a [`Rejection`] (axum's path and query extractors, for one).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use std::future::Future;

use super::AppState;
use crate::Rejection;
use crate::server::conn::ConnHandle;
use link_peeler_wire::protocol::{ErrorCode, MAX_BODY_BYTES};

/// The middleware; see the module docs.
pub async fn edge(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let conflict = req
        .extensions()
        .get::<ConnHandle>()
        .is_some_and(|c| c.0.framing_conflict());
    if conflict {
        // Read what was sent, so that closing does not reset the connection under the answer.
        let body = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES);
        let _ = tokio::time::timeout(state.body_timeout, body).await;
        let r = Rejection::new(
            ErrorCode::InvalidRequest,
            "a request must not carry both Content-Length and Transfer-Encoding",
        );
        return close(r.into_response());
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let deadline = state.body_timeout;
    let flag = timed_out.clone();
    let req = req.map(|body| Body::new(Deadline::new(body, deadline, flag)));
    let resp = next.run(req).await;
    if timed_out.load(Ordering::SeqCst) {
        let r = Rejection::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} s",
                deadline.as_secs_f64()
            ),
        );
        return close(r.into_response());
    }
    envelope(resp).await
}

/// `Connection: close`: hyper closes the connection after this answer.
fn close(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Turns an error answer without the envelope into one with it.
async fn envelope(resp: Response) -> Response {
    let status = resp.status();
    if status.as_u16() < 400 || resp.extensions().get::<ErrorCode>().is_some() {
        return resp;
    }
    let code = match status.as_u16() {
        404 | 405 => ErrorCode::NotFound,
        408 => ErrorCode::RequestTimeout,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Overloaded,
        400..=499 => ErrorCode::InvalidRequest,
        _ => ErrorCode::Internal,
    };
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 2048)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let rejection = if code == ErrorCode::Internal {
        Rejection::internal("unexpected error answer", format!("{status}: {text}"))
    } else if text.is_empty() {
        let reason = status.canonical_reason().unwrap_or("error");
        Rejection::new(code, reason.to_ascii_lowercase())
    } else {
        Rejection::new(code, text)
    };
    let mut out = rejection.into_response();
    for name in [header::RETRY_AFTER, header::CONNECTION] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// `503 overloaded`: the answer to a connection over the cap.
pub fn overloaded() -> Response {
    let r = Rejection::new(
        ErrorCode::Overloaded,
        "the relay is at its connection limit; retry after Retry-After seconds",
    )
    .retry_after(1);
    close(r.into_response())
}

/// A request body that fails once its deadline passes.
struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl Deadline {
    fn new(inner: Body, within: Duration, timed_out: Arc<AtomicBool>) -> Self {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(within)),
            timed_out,
        }
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::SeqCst);
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body deadline");
            return Poll::Ready(Some(Err(axum::Error::new(e))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
