//! A client for the external-system API (docs/protocol.md §3): submit a job,
//! read it back, wait for it. `link-peeler submit`, the demo, the agent tests
//! and the relay's bench all use it, so each speaks to the relay exactly as an
//! external system would — real HTTP, real signatures.

use std::time::Duration;

use reqwest::Method;
use url::Url;

use crate::client::{REQUEST_TIMEOUT, RelayError, SignedClient};
use crate::protocol::{
    BatchItem, BatchRequest, BatchResponse, EventsPage, FetchOptions, FetchRequest,
    HEADER_IDEMPOTENT_REPLAYED, Job, JobList, JobStatus, paths,
};
use crate::signing::Signer;

/// What `POST /api/links/fetch` answered.
#[derive(Debug)]
pub struct Submitted {
    pub job: Job,
    /// The idempotency key was known: this is the job it created earlier.
    pub replayed: bool,
}

/// Submits and reads jobs with one API key.
#[derive(Debug)]
pub struct ApiClient {
    client: SignedClient,
}

impl ApiClient {
    /// `base` like `http://127.0.0.1:8787`; the key is an `lp_live_…`/`lp_test_…` id and its secret.
    pub fn new(base: &str, key_id: &str, secret: &str) -> Result<Self, RelayError> {
        let base = Url::parse(base).map_err(|e| RelayError::Unreachable {
            url: base.to_owned(),
            detail: format!("not a URL: {e}"),
            tls: false,
        })?;
        let signer = Signer::new(key_id, secret.as_bytes());
        let user_agent = concat!("link-peeler-api-client/", env!("CARGO_PKG_VERSION"));
        Ok(ApiClient {
            client: SignedClient::new(base, Some(signer), user_agent)?,
        })
    }

    /// `POST /api/links/fetch` with `request` as it is.
    pub async fn submit_request(&self, request: &FetchRequest) -> Result<Submitted, RelayError> {
        let url = self.client.url(paths::LINKS_FETCH);
        let body = serde_json::to_vec(request)
            .map_err(|e| RelayError::unreadable(0, format!("cannot encode the job: {e}")))?;
        let answer = self
            .client
            .send(Method::POST, url, body, REQUEST_TIMEOUT)
            .await?;
        Ok(Submitted {
            job: answer.json("job")?,
            replayed: answer.headers.contains_key(HEADER_IDEMPOTENT_REPLAYED),
        })
    }

    /// `POST /api/links/fetch` for `tracking_url`, with no source or row id.
    pub async fn submit(
        &self,
        idempotency_key: &str,
        tracking_url: &str,
        options: Option<FetchOptions>,
    ) -> Result<Job, RelayError> {
        let request = FetchRequest {
            idempotency_key: idempotency_key.to_owned(),
            tracking_url: tracking_url.to_owned(),
            source: None,
            row_id: None,
            options,
        };
        Ok(self.submit_request(&request).await?.job)
    }

    /// `GET /api/links/jobs/{jobId}`.
    pub async fn job(&self, job_id: &str) -> Result<Job, RelayError> {
        let url = self.client.url_with_segments(&paths::job_segments(job_id));
        let answer = self
            .client
            .send(Method::GET, url, Vec::new(), REQUEST_TIMEOUT)
            .await?;
        answer.json("job")
    }

    /// `POST /api/links/batch`: one outcome per request, in order.
    pub async fn batch(&self, jobs: &[FetchRequest]) -> Result<Vec<BatchItem>, RelayError> {
        let url = self.client.url(paths::LINKS_BATCH);
        let body = serde_json::to_vec(&BatchRequest {
            jobs: jobs.to_vec(),
        })
        .map_err(|e| RelayError::unreadable(0, format!("cannot encode the batch: {e}")))?;
        let answer = self
            .client
            .send(Method::POST, url, body, REQUEST_TIMEOUT)
            .await?;
        let page: BatchResponse = answer.json("batch results")?;
        if page.results.len() != jobs.len() {
            return Err(RelayError::unreadable(
                answer.status.as_u16(),
                format!(
                    "the relay answered {} outcomes for {} jobs",
                    page.results.len(),
                    jobs.len()
                ),
            ));
        }
        Ok(page.results)
    }

    /// `GET /api/links/events?after=…&waitSeconds=…&limit=…`: the jobs of this
    /// key that finished after `after` (from the start when `None`), waiting up
    /// to `wait` for one when there is none yet.
    pub async fn events(
        &self,
        after: Option<&str>,
        wait: Duration,
        limit: Option<u32>,
    ) -> Result<EventsPage, RelayError> {
        let mut url = self.client.url(paths::LINKS_EVENTS);
        {
            let mut q = url.query_pairs_mut();
            if let Some(after) = after {
                q.append_pair("after", after);
            }
            q.append_pair("waitSeconds", &wait.as_secs().to_string());
            if let Some(limit) = limit {
                q.append_pair("limit", &limit.to_string());
            }
        }
        let answer = self
            .client
            .send(Method::GET, url, Vec::new(), REQUEST_TIMEOUT + wait)
            .await?;
        answer.json("events")
    }

    /// `GET /api/links/jobs?…`: one page of this key's jobs. `filters` are
    /// query pairs as protocol.md §3.11 names them (`source`, `rowId`,
    /// `status`, `createdAfter`, `createdBefore`, `limit`, `cursor`).
    pub async fn list_jobs(&self, filters: &[(&str, &str)]) -> Result<JobList, RelayError> {
        let mut url = self.client.url(paths::LINKS_JOBS);
        if !filters.is_empty() {
            url.query_pairs_mut().extend_pairs(filters);
        }
        let answer = self
            .client
            .send(Method::GET, url, Vec::new(), REQUEST_TIMEOUT)
            .await?;
        answer.json("job list")
    }

    /// Reads the job every `interval` until it is `done` or `failed`, or `deadline` passes.
    pub async fn wait_finished(
        &self,
        job_id: &str,
        interval: Duration,
        deadline: Duration,
    ) -> Result<Job, WaitError> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let job = self.job(job_id).await?;
            if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
                return Ok(job);
            }
            if tokio::time::Instant::now() >= until {
                return Err(WaitError::StillRunning {
                    job_id: job_id.to_owned(),
                    status: job.status.as_str(),
                    waited: deadline,
                });
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// Why [`ApiClient::wait_finished`] returned without a finished job.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error("job {job_id} still {status} after {} s", waited.as_secs())]
    StillRunning {
        job_id: String,
        status: &'static str,
        waited: Duration,
    },
}
