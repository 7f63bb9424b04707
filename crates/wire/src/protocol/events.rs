//! The integrator's data channels for finished jobs (protocol.md §3.10–§3.12):
//! the results feed (`GET /api/links/events`), job listing
//! (`GET /api/links/jobs?…`) and webhooks.
//!
//! A job's *finish* (`done` or `failed`) is the one event. The relay numbers
//! finishes in the order they commit; that number is the feed's cursor, so a
//! consumer that remembers the last cursor it processed sees every later
//! finish exactly once per pass, and a webhook carries the same job JSON as
//! the feed.

use serde::{Deserialize, Serialize};

use super::Job;

/// Longest `waitSeconds` of `GET /api/links/events`.
pub const MAX_EVENTS_WAIT_SECONDS: u32 = 30;
/// Most events (and listed jobs) in one answer; also the default `limit`.
pub const MAX_PAGE_LIMIT: u32 = 500;
/// `limit` when the query names none.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;

/// Header naming a webhook's event (`job.done`, `job.failed`).
pub const HEADER_WEBHOOK_EVENT: &str = "x-link-peeler-event";
/// Header carrying a webhook delivery's id, the same on every attempt.
pub const HEADER_WEBHOOK_DELIVERY: &str = "x-link-peeler-delivery";

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventName {
    #[serde(rename = "job.done")]
    JobDone,
    #[serde(rename = "job.failed")]
    JobFailed,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::JobDone => "job.done",
            EventName::JobFailed => "job.failed",
        }
    }

    pub fn parse(s: &str) -> Option<EventName> {
        match s {
            "job.done" => Some(EventName::JobDone),
            "job.failed" => Some(EventName::JobFailed),
            _ => None,
        }
    }
}

/// One finished job in the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Pass it as `after` to read what finished after this event.
    pub cursor: String,
    pub event: EventName,
    pub job: Job,
}

/// Answer of `GET /api/links/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsPage {
    /// In commit order; empty when nothing finished before `waitSeconds` ran out.
    pub events: Vec<Event>,
    /// The cursor to pass as `after` next: the last event's, or `after` itself
    /// when there were none.
    pub next_cursor: String,
}

/// Answer of `GET /api/links/jobs` when listing (no `idempotencyKey`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    /// In creation order.
    pub jobs: Vec<Job>,
    /// Pass it as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Where a job's webhook delivery stands (`webhook` in the job object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookState {
    /// Not yet delivered; the relay keeps trying until `nextAttemptAt`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver answered a 4xx other than 408 and 429: not retried.
    Rejected,
    /// The address guard refused the target: it was never contacted.
    Refused,
    /// Retried for the whole retry window without a 2xx.
    Failed,
}

impl WebhookState {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Pending => "pending",
            WebhookState::Delivered => "delivered",
            WebhookState::Rejected => "rejected",
            WebhookState::Refused => "refused",
            WebhookState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<WebhookState> {
        Some(match s {
            "pending" => WebhookState::Pending,
            "delivered" => WebhookState::Delivered,
            "rejected" => WebhookState::Rejected,
            "refused" => WebhookState::Refused,
            "failed" => WebhookState::Failed,
            _ => return None,
        })
    }
}

/// A job's webhook delivery as its owner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStatus {
    pub delivery_id: String,
    pub event: EventName,
    pub state: WebhookState,
    pub attempts: u32,
    /// RFC 3339, or `null` before the first attempt.
    pub last_attempt_at: Option<String>,
    /// The HTTP status of the last answer, if there was one.
    pub last_status: Option<u16>,
    /// Why the last attempt did not deliver, if it did not.
    pub last_error: Option<String>,
    /// When the next attempt is due (`pending` only).
    pub next_attempt_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_pinned() {
        assert_eq!(
            serde_json::to_string(&EventName::JobDone).unwrap(),
            r#""job.done""#
        );
        assert_eq!(
            serde_json::to_string(&EventName::JobFailed).unwrap(),
            r#""job.failed""#
        );
        for s in [
            WebhookState::Pending,
            WebhookState::Delivered,
            WebhookState::Rejected,
            WebhookState::Refused,
            WebhookState::Failed,
        ] {
            assert_eq!(WebhookState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(EventName::parse("job.done"), Some(EventName::JobDone));
        assert_eq!(EventName::parse("job.queued"), None);
        let page = EventsPage {
            events: vec![],
            next_cursor: "0".into(),
        };
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"events":[],"nextCursor":"0"}"#
        );
    }
}
