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
    /// What the agent is doing and why (protocol.md §4.2). Optional: agents
    /// before it send none; the relay keeps the last one per device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AgentReport>,
}

/// Most pause reasons one [`AgentReport`] may carry.
pub const MAX_REPORT_REASONS: usize = 8;

/// An agent's report of its own state, sent with its polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentReport {
    /// `active` or `paused`.
    pub state: String,
    /// Why it is paused: `user`, `meteredNetwork`, `onBattery`,
    /// `outsideAllowedHours`, `quotaReached`, … (empty when active).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// What is left of the user's quotas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_left: Option<QuotaLeft>,
    /// The agent's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What is left of each quota of the agent's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaLeft {
    pub links_this_hour: u64,
    pub links_today: u64,
    pub bytes_today: u64,
    pub bytes_this_month: u64,
}

impl AgentReport {
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |m: &str| Err(ApiError::new(ErrorCode::InvalidRequest, m));
        if self.state != "active" && self.state != "paused" {
            return bad("state.state must be \"active\" or \"paused\"");
        }
        let word = |s: &str| {
            !s.is_empty()
                && s.len() <= 40
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if self.reasons.len() > MAX_REPORT_REASONS || !self.reasons.iter().all(|r| word(r)) {
            return bad(
                "state.reasons must be at most 8 words of letters, digits and _ (40 characters each)",
            );
        }
        if let Some(v) = &self.version
            && (v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_control()))
        {
            return bad("state.version must be 1–64 characters without control characters");
        }
        Ok(())
    }
}

impl PollRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        // Capacity 0 with a state report: report only (a paused agent), no tasks.
        let report_only = self.capacity == 0 && self.state.is_some();
        if !report_only && !(1..=MAX_POLL_CAPACITY).contains(&self.capacity) {
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
        if let Some(state) = &self.state {
            state.validate()?;
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
    /// Who asked (protocol.md §4.2): the name of the API key that submitted
    /// the job, so the person whose computer runs it can see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_name: Option<String>,
    /// The job's `source`, when the integrator gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
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
            state: None,
        };
        assert!(ok.validate().is_ok());
        assert!(
            PollRequest {
                capacity: 0,
                wait_seconds: 0,
                state: None
            }
            .validate()
            .is_err()
        );
        assert!(
            PollRequest {
                capacity: 65,
                wait_seconds: 0,
                state: None
            }
            .validate()
            .is_err()
        );
        assert!(
            PollRequest {
                capacity: 1,
                wait_seconds: 31,
                state: None
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

    #[test]
    fn the_optional_state_report() {
        let old: PollRequest = serde_json::from_str(r#"{"capacity":2,"waitSeconds":5}"#).unwrap();
        assert_eq!(old.state, None);
        assert!(!serde_json::to_string(&old).unwrap().contains("state"));
        let new: PollRequest = serde_json::from_str(
            r#"{"capacity":2,"state":{"state":"paused","reasons":["user","quotaReached"],"quotaLeft":{"linksThisHour":0,"linksToday":5,"bytesToday":10,"bytesThisMonth":20},"version":"0.1.0"}}"#,
        )
        .unwrap();
        assert!(new.validate().is_ok());
        assert_eq!(
            new.state.as_ref().unwrap().reasons,
            ["user", "quotaReached"]
        );
        for bad in [
            r#"{"capacity":1,"state":{"state":"sleepy"}}"#,
            r#"{"capacity":1,"state":{"state":"paused","reasons":["has space"]}}"#,
            r#"{"capacity":1,"state":{"state":"paused","reasons":["a","b","c","d","e","f","g","h","i"]}}"#,
            r#"{"capacity":1,"state":{"state":"active","version":""}}"#,
        ] {
            let p: PollRequest = serde_json::from_str(bad).unwrap();
            assert!(p.validate().is_err(), "{bad}");
        }
        assert!(
            serde_json::from_str::<PollRequest>(
                r#"{"capacity":1,"state":{"state":"active","extra":1}}"#
            )
            .is_err()
        );
        // Capacity 0 is a report-only poll, and only with a report.
        let report: PollRequest =
            serde_json::from_str(r#"{"capacity":0,"state":{"state":"paused","reasons":["user"]}}"#)
                .unwrap();
        assert!(report.validate().is_ok());
        let empty: PollRequest = serde_json::from_str(r#"{"capacity":0}"#).unwrap();
        assert!(empty.validate().is_err());
    }
}
