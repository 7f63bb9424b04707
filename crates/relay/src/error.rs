//! [`Rejection`]: an [`ApiError`] on its way to becoming an HTTP response.
//!
//! This is also the one place where the store's outcomes ([`StoreError`])
//! become HTTP answers: status, error code, message and `Retry-After`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;
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

/// Suggested wait before retrying a submission refused with `queue_full`.
const QUEUE_FULL_RETRY_SECS: u64 = 5;

/// Suggested wait before retrying while the database is unreachable.
const DB_UNAVAILABLE_RETRY_SECS: u64 = 1;

/// The one place where store outcomes become HTTP answers (protocol.md §6).
impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ReplayedNonce => Rejection::new(
                ErrorCode::ReplayedNonce,
                "this nonce was already used; sign every request with a fresh nonce",
            ),
            StoreError::IdempotencyConflict => Rejection::new(
                ErrorCode::IdempotencyConflict,
                "idempotencyKey was already used with a different payload",
            ),
            StoreError::QueueFull { queued, max_queued } => Rejection::new(
                ErrorCode::QueueFull,
                format!("this key already has {queued} unfinished jobs (maxQueued {max_queued})"),
            )
            .retry_after(QUEUE_FULL_RETRY_SECS),
            StoreError::QuotaExceeded {
                daily_limit,
                resets_in_secs,
            } => Rejection::new(
                ErrorCode::QuotaExceeded,
                format!("daily limit of {daily_limit} jobs reached; it resets at 00:00 UTC"),
            )
            .retry_after(resets_in_secs),
            StoreError::TaskNotFound { task_id } => {
                Rejection::new(ErrorCode::NotFound, format!("no task {task_id}"))
            }
            StoreError::LeaseLost => Rejection::new(
                ErrorCode::LeaseLost,
                "this lease expired and the task was handed out again; drop the result",
            ),
            StoreError::InvalidCode(why) => Rejection::new(
                ErrorCode::Forbidden,
                format!("enrollment code {why}; ask your admin for a new one"),
            ),
            StoreError::ShuttingDown => {
                Rejection::new(ErrorCode::Internal, "the relay is shutting down")
            }
            StoreError::Unavailable { detail } => {
                tracing::warn!(%detail, "database unavailable: answering 503");
                Rejection::new(
                    ErrorCode::Overloaded,
                    "the relay cannot reach its database right now; retry shortly",
                )
                .retry_after(DB_UNAVAILABLE_RETRY_SECS)
            }
            StoreError::Sqlite { context, error } => Rejection::internal(context, error),
            StoreError::Postgres { context, error } => Rejection::internal(context, error),
            StoreError::Internal { context, detail } => Rejection::internal(context, detail),
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::CodeRefusal;

    /// Asserts the status, code, message and `Retry-After` a store error is answered with.
    fn answers(e: StoreError, status: u16, code: &str, message: &str, retry_after: Option<u64>) {
        let what = format!("{e:?}");
        let r = Rejection::from(e);
        assert_eq!(r.code().status(), status, "{what}");
        assert_eq!(r.code().as_str(), code, "{what}");
        assert_eq!(r.error.message, message, "{what}");
        assert_eq!(r.retry_after, retry_after, "{what}");
    }

    /// The messages are part of what clients see: pinned here byte for byte.
    #[test]
    fn store_errors_become_the_same_answers_as_ever() {
        answers(
            StoreError::ReplayedNonce,
            401,
            "replayed_nonce",
            "this nonce was already used; sign every request with a fresh nonce",
            None,
        );
        answers(
            StoreError::IdempotencyConflict,
            422,
            "idempotency_conflict",
            "idempotencyKey was already used with a different payload",
            None,
        );
        let full = StoreError::QueueFull {
            queued: 3,
            max_queued: 3,
        };
        let message = "this key already has 3 unfinished jobs (maxQueued 3)";
        answers(full, 429, "queue_full", message, Some(5));
        let quota = StoreError::QuotaExceeded {
            daily_limit: 10,
            resets_in_secs: 42,
        };
        let message = "daily limit of 10 jobs reached; it resets at 00:00 UTC";
        answers(quota, 429, "quota_exceeded", message, Some(42));
        let task = StoreError::TaskNotFound {
            task_id: "job_1".into(),
        };
        answers(task, 404, "not_found", "no task job_1", None);
        answers(
            StoreError::LeaseLost,
            409,
            "lease_lost",
            "this lease expired and the task was handed out again; drop the result",
            None,
        );
        for (why, text) in [
            (CodeRefusal::Unknown, "is not valid"),
            (CodeRefusal::AlreadyUsed, "was already used"),
            (CodeRefusal::Expired, "has expired"),
        ] {
            let message = format!("enrollment code {text}; ask your admin for a new one");
            answers(
                StoreError::InvalidCode(why),
                403,
                "forbidden",
                &message,
                None,
            );
        }
        let unreachable = StoreError::Unavailable {
            detail: "connection refused".into(),
        };
        let message = "the relay cannot reach its database right now; retry shortly";
        answers(unreachable, 503, "overloaded", message, Some(1));
        let down = "the relay is shutting down";
        answers(StoreError::ShuttingDown, 500, "internal", down, None);
        let hidden = "internal error; see the relay log";
        for internal in [
            StoreError::from(rusqlite::Error::QueryReturnedNoRows),
            StoreError::Sqlite {
                context: "commit failed",
                error: Arc::new(rusqlite::Error::InvalidQuery),
            },
            StoreError::internal("writer", "lock poisoned"),
        ] {
            answers(internal, 500, "internal", hidden, None);
        }
    }
}
