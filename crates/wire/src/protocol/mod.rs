//! The wire contract (protocol.md §2–§5) as serde types, shared by every side.
//!
//! Nothing in here does I/O. The relay serves these types, the agent and the
//! `submit` command send them, and the resolver produces [`ResolutionResult`].
//! Field names are camelCase on the wire; a rename here is a breaking change
//! for programs we do not control, so every type is pinned by tests.

mod agent;
mod batch;
mod error;
mod events;
mod links;
mod result;

pub use agent::{
    AgentReport, EnrollRequest, EnrollResponse, MAX_POLL_CAPACITY, MAX_POLL_WAIT_SECONDS,
    MAX_REPORT_REASONS, PollRequest, PollResponse, QuotaLeft, ResultPost, Task,
};
pub use batch::{
    BatchItem, BatchOutcome, BatchRequest, BatchResponse, MAX_BATCH_BODY_BYTES, MAX_BATCH_JOBS,
};
pub use error::{ApiError, ErrorBody, ErrorCode};
pub use events::{
    DEFAULT_PAGE_LIMIT, Event, EventName, EventsPage, HEADER_WEBHOOK_DELIVERY,
    HEADER_WEBHOOK_EVENT, JobList, MAX_EVENTS_WAIT_SECONDS, MAX_PAGE_LIMIT, WebhookState,
    WebhookStatus,
};
pub use links::{
    FetchOptions, FetchRequest, Job, JobError, JobStatus, MAX_TRACKING_URL_LEN, USER_AGENT_RULE,
    is_valid_user_agent,
};
pub use result::{Conclusion, Hop, RedirectKind, ResolutionResult};

/// Header carrying the API key id or device id.
pub const HEADER_KEY: &str = "x-link-peeler-key";
/// Header carrying the unix timestamp in seconds.
pub const HEADER_TIMESTAMP: &str = "x-link-peeler-timestamp";
/// Header carrying the single-use nonce.
pub const HEADER_NONCE: &str = "x-link-peeler-nonce";
/// Header carrying the lowercase hex HMAC-SHA256 signature.
pub const HEADER_SIGNATURE: &str = "x-link-peeler-signature";
/// Response header set when an idempotent submission is answered from the stored job.
pub const HEADER_IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Largest request body the relay reads (protocol.md §2), but for a batch
/// ([`MAX_BATCH_BODY_BYTES`]).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// API paths, in one place so the relay router and clients cannot drift apart.
pub mod paths {
    pub const LINKS_FETCH: &str = "/api/links/fetch";
    pub const LINKS_JOBS: &str = "/api/links/jobs";
    pub const LINKS_BATCH: &str = "/api/links/batch";
    pub const LINKS_EVENTS: &str = "/api/links/events";
    pub const AGENT_ENROLL: &str = "/api/agent/enroll";
    pub const AGENT_POLL: &str = "/api/agent/poll";
    pub const HEALTHZ: &str = "/healthz";
    pub const METRICS: &str = "/metrics";
    /// Route template of `GET /api/links/jobs/{jobId}` (the relay's router).
    pub const LINKS_JOB: &str = "/api/links/jobs/{job_id}";
    /// Route template of `POST /api/agent/tasks/{taskId}/result` (the relay's router).
    pub const AGENT_TASK_RESULT: &str = "/api/agent/tasks/{task_id}/result";

    /// The path segments of `GET /api/links/jobs/{jobId}`, for clients that
    /// percent-encode each segment (`SignedClient::url_with_segments`).
    pub fn job_segments(job_id: &str) -> [&str; 4] {
        ["api", "links", "jobs", job_id]
    }

    /// The path segments of `POST /api/agent/tasks/{taskId}/result`.
    pub fn task_result_segments(task_id: &str) -> [&str; 5] {
        ["api", "agent", "tasks", task_id, "result"]
    }

    /// `GET /api/links/jobs/{jobId}`
    pub fn job(job_id: &str) -> String {
        format!("{LINKS_JOBS}/{job_id}")
    }

    /// `POST /api/agent/tasks/{taskId}/result`
    pub fn task_result(task_id: &str) -> String {
        format!("/api/agent/tasks/{task_id}/result")
    }
}
