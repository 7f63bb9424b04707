//! [`Rejection`]: an [`ApiError`] on its way to becoming an HTTP response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use link_peeler_wire::protocol::{ApiError, ErrorBody, ErrorCode};

/// A refused request: the protocol.md §6 error plus, for 429s, the `Retry-After` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub error: ApiError,
    pub retry_after: Option<u64>,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection {
            error: ApiError::new(code, message),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.error.code
    }

    /// A storage failure. The detail goes to the log, not to the client.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Rejection::new(ErrorCode::Internal, "internal error; see the relay log")
    }
}

impl From<ApiError> for Rejection {
    fn from(error: ApiError) -> Self {
        Rejection {
            error,
            retry_after: None,
        }
    }
}

impl From<rusqlite::Error> for Rejection {
    fn from(e: rusqlite::Error) -> Self {
        Rejection::internal("database error", e)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error.code.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = self.error.code;
        let mut resp = (status, axum::Json(ErrorBody { error: self.error })).into_response();
        // Lets the metrics middleware count failures by code, wherever they arose.
        resp.extensions_mut().insert(code);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
