//! The API for agents (protocol.md §4): enrollment, long-poll, result posting.

use serde::{Deserialize, Serialize};

use super::{ApiError, ErrorCode, FetchOptions, ResolutionResult};

/// Most tasks one poll may ask for.
pub const MAX_POLL_CAPACITY: u32 = 64;
/// Longest a poll may be held open.
pub const MAX_POLL_WAIT_SECONDS: u32 = 30;

/// Body of `POST /api/agent/enroll` (unsigned: the one-time code is the credential).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollRequest {
    pub code: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

impl EnrollRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.code.trim().is_empty() || self.code.len() > 64 {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "code must be 1–64 characters",
            ));
        }
        for (field, v, max) in [
            ("name", &self.name, 128),
            ("platform", &self.platform, 32),
            ("version", &self.version, 64),
        ] {
            if let Some(v) = v
                && (v.len() > max || v.chars().any(char::is_control))
            {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("{field} must be at most {max} bytes without control characters"),
                ));
            }
        }
        Ok(())
    }
}

/// Answer to a successful enrollment. The secret is shown exactly once.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollResponse {
    pub device_id: String,
    pub device_secret: String,
}

impl std::fmt::Debug for EnrollResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollResponse")
            .field("device_id", &self.device_id)
            .field("device_secret", &"<redacted>")
            .finish()
    }
}

/// Body of `POST /api/agent/poll`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollRequest {
    pub capacity: u32,
    #[serde(default)]
    pub wait_seconds: u32,
}

impl PollRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        if !(1..=MAX_POLL_CAPACITY).contains(&self.capacity) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "capacity must be between 1 and 64",
            ));
        }
        if self.wait_seconds > MAX_POLL_WAIT_SECONDS {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "waitSeconds must be between 0 and 30",
            ));
        }
        Ok(())
    }
}

/// One leased task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub task_id: String,
    pub lease_id: String,
    pub tracking_url: String,
    #[serde(default)]
    pub options: FetchOptions,
    pub attempt: u32,
    pub lease_expires_at: String,
}

/// Answer to a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollResponse {
    pub tasks: Vec<Task>,
}

/// Body of `POST /api/agent/tasks/{taskId}/result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResultPost {
    pub lease_id: String,
    pub result: ResolutionResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_bounds() {
        let ok = PollRequest {
            capacity: 64,
            wait_seconds: 30,
        };
        assert!(ok.validate().is_ok());
        assert!(
            PollRequest {
                capacity: 0,
                wait_seconds: 0
            }
            .validate()
            .is_err()
        );
        assert!(
            PollRequest {
                capacity: 65,
                wait_seconds: 0
            }
            .validate()
            .is_err()
        );
        assert!(
            PollRequest {
                capacity: 1,
                wait_seconds: 31
            }
            .validate()
            .is_err()
        );
        assert!(serde_json::from_str::<PollRequest>(r#"{"capacity":-1}"#).is_err());
    }

    #[test]
    fn enroll_secret_is_not_in_debug_output() {
        let r = EnrollResponse {
            device_id: "dev_x".into(),
            device_secret: "s3cr3t".into(),
        };
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }
}
