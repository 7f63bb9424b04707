//! `link-peeler demo`: the whole system in one process, on loopback only.
//!
//! It starts the bundled relay on `127.0.0.1:0` with a temporary SQLite
//! file, the built-in redirect [`lab`], and an agent whose device was
//! enrolled through the real `/api/agent/enroll` endpoint (credentials kept
//! in memory only); then it submits a handful of signed jobs over real HTTP,
//! as an external system would, waits for the agent to resolve and post
//! them, and prints each chain. Nothing is configured, nothing outlives the
//! process, and no packet leaves the machine.
//!
//! The demo is the one place besides tests where the relay and the agent
//! meet in code; the agent module itself never depends on the relay.

pub mod lab;
mod render;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use link_peeler_agent::client::RelayClient;
use link_peeler_agent::credentials::DeviceCredentials;
use link_peeler_agent::outbox::Outbox;
use link_peeler_agent::runner::{Exit, Runner, RunnerConfig};
use link_peeler_relay::admin::{CreatedKey, EnrollmentCode};
use link_peeler_relay::{RelayConfig, admin};
use link_peeler_wire::api::ApiClient;
use link_peeler_wire::protocol::{EnrollRequest, FetchRequest, Job};

pub use render::render;

/// The chains the demo resolves: a title and a path on the lab.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("Ad click through two trackers", "/ad/click?id=42"),
    ("Interstitial page with a meta refresh", "/interstitial"),
    ("JavaScript bounce page", "/js-bounce"),
    ("HTTP Refresh header", "/refresh-header"),
    (
        "Link-protection page that POSTs a form from its scripts",
        "/gate",
    ),
    ("Link shortener using every trick", "/s/spring24"),
    ("Expired campaign", "/expired-campaign"),
    ("Redirect loop", "/loop/a"),
];

/// What the demo did, for printing.
#[derive(Debug)]
pub struct Report {
    pub relay_url: String,
    pub lab_url: String,
    pub device_id: String,
    pub capacity: u32,
    /// (title, finished job) in submission order.
    pub jobs: Vec<(String, Job)>,
    /// From the first submission to the last finished job.
    pub elapsed: Duration,
}

/// Why the demo ended early.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Runs the demo; `stop` (Ctrl-C) ends it early and cleanly.
pub async fn run(capacity: u32, stop: CancellationToken) -> Result<Report, DemoError> {
    let dir = tempfile::Builder::new()
        .prefix("link-peeler-demo-")
        .tempdir()
        .map_err(anyhow::Error::from)?;
    let db = dir.path().join("relay.db");
    let relay = link_peeler_relay::serve(RelayConfig {
        db: db.clone().into(),
        listen: ([127, 0, 0, 1], 0).into(),
        ..Default::default()
    })
    .await?;
    let lab = lab::Lab::start().await.map_err(anyhow::Error::from)?;

    let outcome = drive(&relay.url(), &lab, &db, dir.path(), capacity, &stop).await;

    lab.shutdown().await;
    let _ = relay.shutdown().await;
    drop(dir);
    outcome
}

async fn drive(
    relay_url: &str,
    lab: &lab::Lab,
    db: &Path,
    work_dir: &Path,
    capacity: u32,
    stop: &CancellationToken,
) -> Result<Report, DemoError> {
    let (key, code) = provision(db).await?;
    let (base, creds) = enroll(relay_url, code).await?;
    let device_id = creds.device_id.clone();
    let agent_stop = CancellationToken::new();
    let agent = start_agent(base, creds, work_dir, capacity, agent_stop.clone())?;

    // The external system submits signed jobs and reads them back.
    let api = ApiClient::new(relay_url, &key.key_id, &key.secret).map_err(anyhow::Error::from)?;
    let started = Instant::now();
    let result = tokio::select! {
        r = submit_and_wait(&api, lab) => r.map_err(DemoError::from),
        _ = stop.cancelled() => Err(DemoError::Interrupted),
    };
    let elapsed = started.elapsed();
    agent_stop.cancel();
    let _ = agent.await;
    Ok(Report {
        relay_url: relay_url.to_owned(),
        lab_url: lab.base(),
        device_id,
        capacity,
        jobs: result?,
        elapsed,
    })
}

/// An admin creates an API key for the external system and a one-time code
/// for the agent (SQLite calls, so on a blocking thread).
async fn provision(db: &Path) -> anyhow::Result<(CreatedKey, EnrollmentCode)> {
    let db = db.to_path_buf();
    let created = tokio::task::spawn_blocking(move || {
        let key = admin::create_key(&db, &admin::NewKey::named("demo"))?;
        let code = admin::create_enrollment_code(&db, "demo-agent")?;
        anyhow::Ok((key, code))
    })
    .await??;
    Ok(created)
}

/// The agent enrolls over HTTP, exactly like `link-peeler enroll`, but keeps
/// the secret in memory. Returns the relay's base URL and the credentials.
async fn enroll(relay_url: &str, code: EnrollmentCode) -> anyhow::Result<(Url, DeviceCredentials)> {
    let base = link_peeler_agent::config::relay_url(relay_url)?;
    let anonymous = RelayClient::new(base.clone(), None)?;
    let enrolled = anonymous
        .enroll(&EnrollRequest {
            code: code.code,
            name: Some("demo-agent".into()),
            platform: Some(link_peeler_agent::platform().into()),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        })
        .await?;
    let creds = DeviceCredentials {
        device_id: enrolled.device_id,
        device_secret: enrolled.device_secret,
        relay: Some(base.to_string()),
    };
    Ok((base, creds))
}

/// Starts the agent's runner (loopback allowed, outbox in `work_dir`); it
/// runs until `agent_stop` is cancelled.
fn start_agent(
    base: Url,
    creds: DeviceCredentials,
    work_dir: &Path,
    capacity: u32,
    agent_stop: CancellationToken,
) -> anyhow::Result<JoinHandle<Exit>> {
    let resolver =
        link_peeler_agent::resolve::build(None, &link_peeler_agent::config::loopback_networks())?;
    let outbox = Outbox::open(work_dir.join("outbox"))?;
    let runner = Runner::new(
        Arc::new(RelayClient::new(base, Some(creds.signer()))?),
        resolver,
        outbox,
        RunnerConfig {
            capacity,
            ..Default::default()
        },
        agent_stop,
    );
    Ok(tokio::spawn(runner.run()))
}

/// Submits every scenario as a signed job, then waits for each to finish;
/// (title, job) in submission order.
async fn submit_and_wait(api: &ApiClient, lab: &lab::Lab) -> anyhow::Result<Vec<(String, Job)>> {
    let mut ids = vec![];
    for (i, (title, path)) in SCENARIOS.iter().enumerate() {
        let request = FetchRequest {
            idempotency_key: format!("demo-{i}"),
            tracking_url: lab.url(path),
            source: Some("link-peeler demo".into()),
            row_id: None,
            options: None,
        };
        let job = api.submit_request(&request).await?.job;
        ids.push((title.to_string(), job.job_id));
    }
    let mut jobs = vec![];
    for (title, id) in ids {
        let job = api
            .wait_finished(&id, Duration::from_millis(10), Duration::from_secs(90))
            .await?;
        jobs.push((title, job));
    }
    Ok(jobs)
}
