//! The API for external systems (protocol.md §3): job submission and job reads.

use serde::{Deserialize, Serialize};

use super::{ApiError, ErrorCode, ResolutionResult, WebhookStatus};

/// Longest `trackingUrl` accepted.
pub const MAX_TRACKING_URL_LEN: usize = 8192;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 1024;
const MAX_USER_AGENT_LEN: usize = 512;

/// What [`is_valid_user_agent`] accepts, for error messages.
pub const USER_AGENT_RULE: &str = "1–512 characters of printable ASCII (space to ~)";

/// The one User-Agent rule, applied by the relay (`options.userAgent`), the
/// agent (config, managed settings, flags) and the resolver: 1–512 bytes of
/// printable ASCII. Those are the bytes every HTTP stack sends as a header
/// value unchanged, so a job the relay accepts is one the agent can run.
pub fn is_valid_user_agent(ua: &str) -> bool {
    (1..=MAX_USER_AGENT_LEN).contains(&ua.len()) && ua.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Body of `POST /api/links/fetch`.
///
/// Unknown fields are refused rather than ignored: a misspelt `trackingURL`
/// should fail loudly, not create a job without its URL. Duplicate keys are
/// refused by serde's derive. The relay compares idempotent replays on this
/// parsed form re-serialised ([`FetchRequest::canonical_json`]), so whitespace,
/// key order and `null` versus an absent optional field do not matter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FetchRequest {
    pub idempotency_key: String,
    pub tracking_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<FetchOptions>,
}

/// Per-job resolver options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FetchOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hops: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl FetchRequest {
    /// Checks every field's form (protocol.md §3). The URL's reachability is the agent's business.
    pub fn validate(&self) -> Result<(), ApiError> {
        let len = self.idempotency_key.chars().count();
        if len == 0 || len > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(invalid("idempotencyKey must be 1–255 characters"));
        }
        if self.idempotency_key.chars().any(char::is_control) {
            return Err(invalid(
                "idempotencyKey must not contain control characters",
            ));
        }
        validate_tracking_url(&self.tracking_url)?;
        for (field, value) in [("source", &self.source), ("rowId", &self.row_id)] {
            let Some(v) = value else { continue };
            if v.chars().count() > MAX_LABEL_LEN {
                return Err(invalid(format!(
                    "{field} must be at most {MAX_LABEL_LEN} characters"
                )));
            }
            // Every store must hold what it accepts: PostgreSQL text cannot.
            if v.contains('\0') {
                return Err(invalid(format!(
                    "{field} must not contain the NUL character (U+0000)"
                )));
            }
        }
        if let Some(opts) = &self.options {
            if let Some(h) = opts.max_hops
                && !(1..=100).contains(&h)
            {
                return Err(invalid("options.maxHops must be between 1 and 100"));
            }
            if let Some(ua) = &opts.user_agent
                && !is_valid_user_agent(ua)
            {
                return Err(invalid(format!(
                    "options.userAgent must be {USER_AGENT_RULE}"
                )));
            }
        }
        Ok(())
    }

    /// The canonical form used to compare idempotent replays.
    pub fn canonical_json(&self) -> String {
        // Serialising a derived struct cannot fail: every field is a string or number.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// `trackingUrl` must be an absolute http(s) URL with a host, ≤ 8192 characters.
pub fn validate_tracking_url(raw: &str) -> Result<url::Url, ApiError> {
    let bad = |why: &str| ApiError::new(ErrorCode::InvalidUrl, format!("trackingUrl {why}"));
    if raw.is_empty() {
        return Err(bad("must not be empty"));
    }
    if raw.len() > MAX_TRACKING_URL_LEN {
        return Err(bad("must be at most 8192 characters"));
    }
    let parsed = url::Url::parse(raw).map_err(|e| bad(&format!("is not an absolute URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("must use http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("must have a host"));
    }
    Ok(parsed)
}

/// A job's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Leased,
    Done,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Leased => "leased",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "leased" => JobStatus::Leased,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            _ => return None,
        })
    }
}

/// Why a job failed without a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobError {
    pub code: ErrorCode,
    pub message: String,
}

/// The job object returned by submission and job reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub job_id: String,
    pub idempotency_key: String,
    pub tracking_url: String,
    pub source: Option<String>,
    pub row_id: Option<String>,
    pub status: JobStatus,
    pub attempts: u32,
    pub created_at: String,
    pub updated_at: String,
    pub resolved_by: Option<String>,
    pub result: Option<ResolutionResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// The finished job's webhook delivery, when its key has a webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<FetchRequest, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn canonical_form_ignores_whitespace_order_and_nulls() {
        let a =
            req(r#"{"idempotencyKey":"k","trackingUrl":"https://a.test/","source":"s"}"#).unwrap();
        let b = req(r#"{ "source" : "s", "rowId": null,
                         "trackingUrl":"https://a.test/", "idempotencyKey":"k" }"#)
        .unwrap();
        assert_eq!(a.canonical_json(), b.canonical_json());
        let c = req(r#"{"idempotencyKey":"k","trackingUrl":"https://a.test/x"}"#).unwrap();
        assert_ne!(a.canonical_json(), c.canonical_json());
    }

    #[test]
    fn duplicate_and_unknown_keys_are_refused() {
        assert!(
            req(r#"{"idempotencyKey":"k","idempotencyKey":"j","trackingUrl":"https://a.test/"}"#)
                .is_err()
        );
        assert!(req(r#"{"idempotencyKey":"k","trackingURL":"https://a.test/"}"#).is_err());
        assert!(req(r#"{"idempotencyKey":"k","trackingUrl":"https://a.test/","options":{"maxHops":3,"maxHops":4}}"#).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut r = req(r#"{"idempotencyKey":"k","trackingUrl":"https://a.test/"}"#).unwrap();
        assert!(r.validate().is_ok());
        r.idempotency_key = String::new();
        assert!(r.validate().unwrap_err().message.contains("idempotencyKey"));
        r.idempotency_key = "x".repeat(256);
        assert!(r.validate().is_err());
        r.idempotency_key = "é".repeat(255);
        assert!(
            r.validate().is_ok(),
            "the limit counts characters, not bytes"
        );
        r.options = Some(FetchOptions {
            max_hops: Some(0),
            user_agent: None,
        });
        assert!(r.validate().unwrap_err().message.contains("maxHops"));
        r.options = Some(FetchOptions {
            max_hops: Some(101),
            user_agent: None,
        });
        assert!(r.validate().is_err());
        r.options = Some(FetchOptions {
            max_hops: None,
            user_agent: Some("a\nb".into()),
        });
        assert!(r.validate().unwrap_err().message.contains("userAgent"));
    }

    #[test]
    fn one_user_agent_rule() {
        for ok in [
            "a",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
            "~ !",
            &"x".repeat(512),
        ] {
            assert!(is_valid_user_agent(ok), "{ok:?}");
        }
        for bad in [
            "",
            "a\nb",
            "tab\there",
            "caf\u{e9}",
            "\u{7f}",
            &"x".repeat(513),
        ] {
            assert!(!is_valid_user_agent(bad), "{bad:?}");
        }
    }

    #[test]
    fn tracking_url_form() {
        for ok in ["https://a.test/x", "http://127.0.0.1:9/", "http://[::1]/"] {
            assert!(validate_tracking_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a.test/x",
            "/relative",
            "ftp://a.test/",
            "javascript:alert(1)",
            "mailto:a@b.c",
            "http://",
        ] {
            let e = validate_tracking_url(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidUrl, "{bad}");
        }
        let long = format!("https://a.test/{}", "x".repeat(MAX_TRACKING_URL_LEN));
        assert_eq!(
            validate_tracking_url(&long).unwrap_err().code,
            ErrorCode::InvalidUrl
        );
    }
}
