//! The agent's typed calls to the relay: enroll, poll, post a result, health.
//!
//! Signing, the one clock correction, bounded answers and error envelopes
//! are [`link_peeler_wire::client::SignedClient`]'s, shared with every other
//! caller. What is the agent's own: the endpoints it calls, their timeouts
//! (a long poll waits `waitSeconds` plus slack), and what a failure means for
//! it — [`RelayErrorExt::verdict`] reads [`super::policy`]'s table.
//!
//! A non-loopback relay is `https://` only (checked in
//! [`super::config::relay_url`]), certificates are checked against the OS
//! trust store plus the admin's `relay_ca_file`, if any ([`RelayClient::with_roots`]),
//! and the system proxy is honoured for the relay, never for a loopback relay
//! and never by the resolver, which builds its own client (and never trusts
//! the relay's CA).
//! The agent only ever connects out; nothing here listens.

use std::time::{Duration, Instant};

use reqwest::Method;
use url::Url;

use super::policy::{Op, Verdict, decide};
use link_peeler_wire::client::{ExtraRoots, REQUEST_TIMEOUT, SignedClient, date_header};
use link_peeler_wire::protocol::{
    AgentReport, EnrollRequest, EnrollResponse, ErrorCode, PollRequest, PollResponse, ResultPost,
    Task, paths,
};
use link_peeler_wire::signing::Signer;

use link_peeler_wire::client::RelayError;

/// Slack on top of `waitSeconds` before a long poll counts as hung.
const POLL_SLACK: Duration = Duration::from_secs(20);

/// The agent's reading of a [`RelayError`].
pub trait RelayErrorExt {
    /// What the policy table says about this failure.
    fn verdict(&self, op: Op) -> Verdict;
}

impl RelayErrorExt for RelayError {
    fn verdict(&self, op: Op) -> Verdict {
        decide(op, self.status(), self.code())
    }
}

/// What `GET /healthz` told us.
#[derive(Debug, Clone)]
pub struct Health {
    pub status: u16,
    pub elapsed: Duration,
    /// The relay's clock from its `Date` header, in unix seconds.
    pub server_time: Option<i64>,
}

/// A client for one relay, optionally holding device credentials.
#[derive(Debug)]
pub struct RelayClient {
    client: SignedClient,
    /// The relay refused a poll carrying a state report (a relay older than
    /// the report, whose poll body takes no unknown field): send none again.
    no_state: std::sync::atomic::AtomicBool,
}

impl RelayClient {
    /// A client for `base` (already checked by `config::relay_url`), signing with `signer` if given.
    pub fn new(base: Url, signer: Option<Signer>) -> Result<RelayClient, RelayError> {
        RelayClient::with_roots(base, signer, None)
    }

    /// [`RelayClient::new`], also trusting `roots` (the settings'
    /// `relay_ca_file`) for the relay's certificate.
    pub fn with_roots(
        base: Url,
        signer: Option<Signer>,
        roots: Option<&ExtraRoots>,
    ) -> Result<RelayClient, RelayError> {
        let user_agent = concat!("link-peeler-agent/", env!("CARGO_PKG_VERSION"));
        Ok(RelayClient {
            client: SignedClient::with_roots(base, signer, user_agent, roots)?,
            no_state: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn base(&self) -> &Url {
        self.client.base()
    }

    /// The device id requests are signed with.
    pub fn device_id(&self) -> Option<String> {
        self.client.key_id()
    }

    /// Start from a known clock offset (the hidden test clock, or a remembered one).
    pub fn set_clock_offset(&self, offset: i64) {
        self.client.set_clock_offset(offset);
    }

    /// `POST /api/agent/enroll`: exchanges a one-time code for device credentials (unsigned).
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, RelayError> {
        let url = self.client.url(paths::AGENT_ENROLL);
        let body = serde_json::to_vec(req)
            .map_err(|e| RelayError::unreadable(0, format!("cannot encode enrollment: {e}")))?;
        let answer = self
            .client
            .send_unsigned(Method::POST, url, Some(body), REQUEST_TIMEOUT)
            .await?;
        answer.json::<EnrollResponse>("enrollment answer").map_err(|_| {
            RelayError::unreadable(
                answer.status.as_u16(),
                "the answer to enrollment was not device credentials (is this a Link Peeler relay?)",
            )
        })
    }

    /// `POST /api/agent/poll`: waits up to `wait_seconds` for up to `capacity` tasks.
    pub async fn poll(&self, capacity: u32, wait_seconds: u32) -> Result<Vec<Task>, RelayError> {
        self.poll_reporting(capacity, wait_seconds, None).await
    }

    /// A report-only poll (capacity 0): tells the relay this agent's state
    /// while it takes no tasks (paused). Nothing is sent to a relay that
    /// refused state reports before.
    pub async fn report(&self, state: AgentReport) -> Result<(), RelayError> {
        if self.no_state.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.poll_reporting(0, 0, Some(state)).await.map(drop)
    }

    /// `POST /api/agent/poll` with this agent's state report (protocol.md
    /// §4.2). A relay that refuses the report as an unknown field (`400
    /// invalid_request`, a relay older than it) is asked again without it,
    /// and this client sends no report again.
    pub async fn poll_reporting(
        &self,
        capacity: u32,
        wait_seconds: u32,
        state: Option<AgentReport>,
    ) -> Result<Vec<Task>, RelayError> {
        use std::sync::atomic::Ordering;
        let state = state.filter(|_| !self.no_state.load(Ordering::Relaxed));
        let with_state = state.is_some();
        let body = |state| {
            serde_json::to_vec(&PollRequest {
                capacity,
                wait_seconds,
                state,
            })
            .unwrap_or_default()
        };
        let timeout = Duration::from_secs(wait_seconds.into()) + POLL_SLACK;
        let url = self.client.url(paths::AGENT_POLL);
        let answer = match self
            .client
            .send(Method::POST, url.clone(), body(state), timeout)
            .await
        {
            Err(e) if with_state && e.status() == Some(400) => {
                tracing::info!(error = %e, "the relay does not take state reports with polls; polling without");
                self.no_state.store(true, Ordering::Relaxed);
                self.client
                    .send(Method::POST, url, body(None), timeout)
                    .await?
            }
            other => other?,
        };
        Ok(answer.json::<PollResponse>("poll answer")?.tasks)
    }

    /// `POST /api/agent/tasks/{taskId}/result`.
    pub async fn post_result(&self, task_id: &str, post: &ResultPost) -> Result<(), RelayError> {
        let url = self.task_result_url(task_id);
        let body = serde_json::to_vec(post)
            .map_err(|e| RelayError::unreadable(0, format!("cannot encode the result: {e}")))?;
        self.client
            .send(Method::POST, url, body, REQUEST_TIMEOUT)
            .await?;
        Ok(())
    }

    fn task_result_url(&self, task_id: &str) -> Url {
        self.client
            .url_with_segments(&paths::task_result_segments(task_id))
    }

    /// `GET /healthz` (unsigned): reachability, round trip and the relay's clock.
    pub async fn health(&self) -> Result<Health, RelayError> {
        let url = self.client.url(paths::HEALTHZ);
        let started = Instant::now();
        let answer = self
            .client
            .send_unsigned(Method::GET, url, None, Duration::from_secs(10))
            .await?;
        Ok(Health {
            status: answer.status.as_u16(),
            elapsed: started.elapsed(),
            server_time: date_header(&answer.headers),
        })
    }

    /// Proves the relay accepts these credentials without leasing anything:
    /// a signed poll asking for zero tasks is authenticated first and then
    /// refused as `invalid_request`. `Ok` means the signature was accepted.
    pub async fn check_credentials(&self) -> Result<(), RelayError> {
        let body = br#"{"capacity":0,"waitSeconds":0}"#.to_vec();
        let url = self.client.url(paths::AGENT_POLL);
        match self
            .client
            .send(Method::POST, url, body, REQUEST_TIMEOUT)
            .await
        {
            Err(RelayError::Api {
                status: 400,
                code: Some(ErrorCode::InvalidRequest | ErrorCode::InvalidJson),
                ..
            }) => Ok(()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_one_path_segment() {
        let c = RelayClient::new(Url::parse("http://127.0.0.1:9/lp/").unwrap(), None).unwrap();
        assert_eq!(
            c.task_result_url("job_1").as_str(),
            "http://127.0.0.1:9/lp/api/agent/tasks/job_1/result"
        );
        assert_eq!(
            c.task_result_url("a/../b?c").as_str(),
            "http://127.0.0.1:9/lp/api/agent/tasks/a%2F..%2Fb%3Fc/result"
        );
    }

    #[test]
    fn verdicts_follow_the_table() {
        let e = RelayError::Api {
            status: 401,
            code: Some(ErrorCode::RevokedKey),
            message: "revoked".into(),
            retry_after: None,
            server_time: None,
        };
        assert_eq!(e.verdict(Op::Poll), Verdict::SignIn);
        let e = RelayError::Unreachable {
            url: "u".into(),
            detail: "refused".into(),
            tls: false,
        };
        assert_eq!(e.verdict(Op::PostResult), Verdict::Retry);
    }
}
