//! [`StoreError`]: what a store operation can answer besides success, in the
//! store's own terms.
//!
//! The store knows nothing of HTTP. Each domain outcome a handler has to tell
//! apart is a variant of its own; the HTTP layer turns them into status, error
//! code, message and `Retry-After` in one place (`impl From<StoreError> for
//! Rejection` in `error.rs`). [`StoreError::Unavailable`] (PostgreSQL cannot
//! be reached) is a 503 the client retries. Everything else is
//! [`StoreError::Sqlite`], [`StoreError::Postgres`] or
//! [`StoreError::Internal`], whose detail is for the relay log, never for the
//! client.

use std::sync::Arc;

/// A store operation that did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The request's nonce was consumed before (by an earlier request).
    #[error("nonce already used")]
    ReplayedNonce,
    /// The idempotency key was used before with a different payload.
    #[error("idempotency key already used with a different payload")]
    IdempotencyConflict,
    /// The key already has `max_queued` unfinished jobs.
    #[error("queue full: {queued} unfinished jobs (max {max_queued})")]
    QueueFull { queued: i64, max_queued: i64 },
    /// The key submitted `daily_limit` jobs this UTC day; the count resets in
    /// `resets_in_secs` (from the time the store ran the submission).
    #[error("daily limit of {daily_limit} jobs reached")]
    QuotaExceeded {
        daily_limit: i64,
        resets_in_secs: u64,
    },
    /// No task with this id exists.
    #[error("no task {task_id}")]
    TaskNotFound { task_id: String },
    /// The caller no longer holds the task's lease (it expired and the task
    /// was requeued or handed out again).
    #[error("lease lost")]
    LeaseLost,
    /// An enrollment code that cannot be exchanged for credentials.
    #[error("enrollment code {0}")]
    InvalidCode(CodeRefusal),
    /// The writer no longer takes operations: the relay is shutting down.
    #[error("the relay is shutting down")]
    ShuttingDown,
    /// SQLite failed; `context` says where.
    #[error("{context}: {error}")]
    Sqlite {
        context: &'static str,
        /// Shared so that one failed commit can answer every op of its batch.
        error: Arc<rusqlite::Error>,
    },
    /// PostgreSQL failed (not a lost connection); `context` says where.
    #[error("{context}: {error}")]
    Postgres {
        context: &'static str,
        error: Arc<tokio_postgres::Error>,
    },
    /// The database cannot be reached right now (PostgreSQL down, restarting,
    /// out of connections, or the pool timed out). Nothing was changed by the
    /// failed operation unless it committed; the client retries.
    #[error("database unavailable: {detail}")]
    Unavailable { detail: String },
    /// Anything else that should not happen (a poisoned lock, an op dropped
    /// without an answer, a value that would not encode).
    #[error("{context}: {detail}")]
    Internal {
        context: &'static str,
        detail: String,
    },
}

/// Why an enrollment code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeRefusal {
    #[error("is not valid")]
    Unknown,
    #[error("was already used")]
    AlreadyUsed,
    #[error("has expired")]
    Expired,
}

impl StoreError {
    pub(crate) fn internal(context: &'static str, detail: impl std::fmt::Display) -> Self {
        StoreError::Internal {
            context,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn sqlite(context: &'static str, error: rusqlite::Error) -> Self {
        StoreError::Sqlite {
            context,
            error: Arc::new(error),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::sqlite("database error", error)
    }
}
