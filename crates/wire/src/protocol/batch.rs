//! `POST /api/links/batch` (protocol.md §3.9): many submissions in one signed
//! request, one outcome per item.
//!
//! A scheduled worker with thousands of rows should not pay a signature, a
//! round trip and a durable commit per row. Each item is still judged on its
//! own — idempotency, validation and quota — so one bad row never sinks the
//! others, and the answer lists the outcomes in the order of the items.

use serde::{Deserialize, Serialize};

use super::{ApiError, FetchRequest, Job};

/// Most jobs in one batch.
pub const MAX_BATCH_JOBS: usize = 500;

/// Largest batch body the relay reads: larger than the single-job
/// [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) because it carries up to
/// [`MAX_BATCH_JOBS`] of them.
pub const MAX_BATCH_BODY_BYTES: usize = 1024 * 1024;

/// Body of `POST /api/links/batch`: each item is a `POST /api/links/fetch` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchRequest {
    pub jobs: Vec<FetchRequest>,
}

/// What happened to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchOutcome {
    /// A new job (what `POST /api/links/fetch` answers 202 for).
    Created,
    /// The idempotency key was known with the same payload: the earlier job.
    Replayed,
    /// The idempotency key was known with a different payload (`idempotency_conflict`).
    Conflict,
    /// The item is malformed or invalid (`invalid_json`, `invalid_request`, `invalid_url`).
    Invalid,
    /// The key's quota refused it (`quota_exceeded`, `queue_full`).
    Refused,
}

impl BatchOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchOutcome::Created => "created",
            BatchOutcome::Replayed => "replayed",
            BatchOutcome::Conflict => "conflict",
            BatchOutcome::Invalid => "invalid",
            BatchOutcome::Refused => "refused",
        }
    }
}

/// One item's outcome: the job for `created`/`replayed`, the error otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItem {
    pub outcome: BatchOutcome,
    /// The item's idempotency key, when the item was readable enough to have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

/// Answer of `POST /api/links/batch`: `results[i]` is the outcome of `jobs[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub results: Vec<BatchItem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_pinned() {
        let item = BatchItem {
            outcome: BatchOutcome::Invalid,
            idempotency_key: Some("k".into()),
            job: None,
            error: Some(ApiError::new(super::super::ErrorCode::InvalidUrl, "bad")),
        };
        let json = serde_json::to_string(&BatchResponse {
            results: vec![item],
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"results":[{"outcome":"invalid","idempotencyKey":"k","error":{"code":"invalid_url","message":"bad"}}]}"#
        );
        for o in [
            BatchOutcome::Created,
            BatchOutcome::Replayed,
            BatchOutcome::Conflict,
            BatchOutcome::Invalid,
            BatchOutcome::Refused,
        ] {
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
    }

    #[test]
    fn unknown_top_level_fields_are_refused() {
        assert!(serde_json::from_str::<BatchRequest>(r#"{"jobs":[],"job":[]}"#).is_err());
        assert!(serde_json::from_str::<BatchRequest>(r#"{"jobs":[]}"#).is_ok());
    }
}
