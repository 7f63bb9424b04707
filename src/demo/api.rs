//! A signed client for the external-system API (protocol.md §3): submit a job,
//! read it back. Used by the demo, the agent tests and the benchmark, so all
//! three speak to the relay exactly as an external system would — real HTTP,
//! real signatures.

use std::time::Duration;

use url::Url;

use link_peeler_wire::protocol::{ErrorBody, FetchOptions, FetchRequest, Job, JobStatus, paths};
use link_peeler_wire::signing::Signer;

/// Submits and reads jobs with one API key.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    signer: Signer,
}

impl ApiClient {
    /// `base` like `http://127.0.0.1:8787`; the key is an `lp_live_…`/`lp_test_…` id and its secret.
    pub fn new(base: &str, key_id: &str, secret: &str) -> anyhow::Result<Self> {
        link_peeler_wire::tls::init();
        let base = Url::parse(base)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .tcp_nodelay(true)
            .build()?;
        Ok(ApiClient {
            http,
            base,
            signer: Signer::new(key_id, secret.as_bytes()),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder, body: Vec<u8>) -> anyhow::Result<Job> {
        let mut req = req;
        for (name, value) in self.signer.headers(&body) {
            req = req.header(name, value);
        }
        let resp = req.body(body).send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            Ok(serde_json::from_slice(&bytes)?)
        } else {
            match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => anyhow::bail!("relay answered {status}: {}", e.error),
                Err(_) => anyhow::bail!("relay answered {status}"),
            }
        }
    }

    /// `POST /api/links/fetch`.
    pub async fn submit(
        &self,
        idempotency_key: &str,
        tracking_url: &str,
        options: Option<FetchOptions>,
    ) -> anyhow::Result<Job> {
        let body = serde_json::to_vec(&FetchRequest {
            idempotency_key: idempotency_key.to_owned(),
            tracking_url: tracking_url.to_owned(),
            source: Some("link-peeler demo".into()),
            row_id: None,
            options,
        })?;
        let req = self
            .http
            .post(self.base.join(paths::LINKS_FETCH)?)
            .header("content-type", "application/json");
        self.send(req, body).await
    }

    /// `GET /api/links/jobs/{jobId}`.
    pub async fn job(&self, job_id: &str) -> anyhow::Result<Job> {
        let req = self.http.get(self.base.join(&paths::job(job_id))?);
        self.send(req, Vec::new()).await
    }

    /// Reads the job every `interval` until it is `done` or `failed`, or `deadline` passes.
    pub async fn wait_finished(
        &self,
        job_id: &str,
        interval: Duration,
        deadline: Duration,
    ) -> anyhow::Result<Job> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let job = self.job(job_id).await?;
            if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
                return Ok(job);
            }
            if tokio::time::Instant::now() >= until {
                anyhow::bail!(
                    "job {job_id} still {} after {} s",
                    job.status.as_str(),
                    deadline.as_secs()
                );
            }
            tokio::time::sleep(interval).await;
        }
    }
}
