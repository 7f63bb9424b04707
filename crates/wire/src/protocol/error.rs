//! The error envelope of protocol.md §6: `{"error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};

/// Every error code the relay can answer with, and the HTTP status it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    InvalidRequest,
    InvalidUrl,
    MissingHeader,
    InvalidTimestamp,
    StaleTimestamp,
    InvalidNonce,
    ReplayedNonce,
    UnknownKey,
    RevokedKey,
    BadSignature,
    Forbidden,
    NotFound,
    LeaseLost,
    PayloadTooLarge,
    /// A batch holds more than [`MAX_BATCH_JOBS`](super::MAX_BATCH_JOBS) jobs (413).
    BatchTooLarge,
    IdempotencyConflict,
    QuotaExceeded,
    QueueFull,
    /// A device already holds the most long-polls it may hold at once (429).
    TooManyPolls,
    /// Too many failed enrollment attempts from one address, or from all of them (429).
    RateLimited,
    /// The request body did not arrive in time (408).
    RequestTimeout,
    /// The relay is at its connection limit (503); retry after `Retry-After`.
    Overloaded,
    /// Not an HTTP answer: the code a job carries when its lease expired too often.
    AgentUnavailable,
    Internal,
}

impl ErrorCode {
    /// The HTTP status protocol.md §6 assigns to this code.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidJson | InvalidRequest | InvalidUrl => 400,
            MissingHeader | InvalidTimestamp | StaleTimestamp | InvalidNonce | ReplayedNonce
            | UnknownKey | RevokedKey | BadSignature => 401,
            Forbidden => 403,
            NotFound => 404,
            LeaseLost => 409,
            PayloadTooLarge | BatchTooLarge => 413,
            IdempotencyConflict => 422,
            RequestTimeout => 408,
            QuotaExceeded | QueueFull | RateLimited | TooManyPolls => 429,
            AgentUnavailable | Overloaded => 503,
            Internal => 500,
        }
    }

    /// The wire spelling, e.g. `"bad_signature"`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidJson => "invalid_json",
            InvalidRequest => "invalid_request",
            InvalidUrl => "invalid_url",
            MissingHeader => "missing_header",
            InvalidTimestamp => "invalid_timestamp",
            StaleTimestamp => "stale_timestamp",
            InvalidNonce => "invalid_nonce",
            ReplayedNonce => "replayed_nonce",
            UnknownKey => "unknown_key",
            RevokedKey => "revoked_key",
            BadSignature => "bad_signature",
            Forbidden => "forbidden",
            NotFound => "not_found",
            LeaseLost => "lease_lost",
            PayloadTooLarge => "payload_too_large",
            BatchTooLarge => "batch_too_large",
            IdempotencyConflict => "idempotency_conflict",
            QuotaExceeded => "quota_exceeded",
            QueueFull => "queue_full",
            TooManyPolls => "too_many_polls",
            RateLimited => "rate_limited",
            RequestTimeout => "request_timeout",
            Overloaded => "overloaded",
            AgentUnavailable => "agent_unavailable",
            Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The inner object of the error envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Present on 401 `stale_timestamp`: the relay's clock, so a client can correct its offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_time: Option<i64>,
}

/// `{"error": {...}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            server_time: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spelling_round_trips_through_serde() {
        for code in [
            ErrorCode::InvalidJson,
            ErrorCode::StaleTimestamp,
            ErrorCode::IdempotencyConflict,
            ErrorCode::AgentUnavailable,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn stale_timestamp_carries_server_time_inside_error() {
        let body = ErrorBody {
            error: ApiError {
                server_time: Some(1_700_000_000),
                ..ApiError::new(ErrorCode::StaleTimestamp, "too old")
            },
        };
        let v: serde_json::Value = serde_json::to_value(&body).unwrap();
        assert_eq!(v["error"]["serverTime"], 1_700_000_000);
        assert_eq!(v["error"]["code"], "stale_timestamp");
        assert_eq!(ErrorCode::StaleTimestamp.status(), 401);
    }
}
