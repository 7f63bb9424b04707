//! `link-peeler-relay bench --polls N`: a fleet of N agents long-polling one relay.
//!
//! The relay is a real child process (this binary's `serve`, on a fresh
//! SQLite file) started under a soft open-file limit of 1,024, as a default
//! Linux session would give it: it has to raise its own soft limit to hold N
//! connections. This process plays every agent: it enrolls N devices (codes
//! made through the admin functions, in batches), raises its own soft limit,
//! and keeps one `waitSeconds: 30` long-poll per device open on one HTTP
//! client, re-polling as soon as a poll answers. Then it measures, from
//! `/proc/<pid>` and the relay's `/metrics` (operations listener):
//!
//! - the relay's RSS with N polls held;
//! - its CPU over an idle period (no jobs; polls only end at `waitSeconds`);
//! - writer operations per job, and how many claims each job's wake-up cost;
//! - submit → pickup latency: from just before a signed submission until a
//!   held poll answers with that job, over `--pickups` sequential jobs.
//!
//! Linux only (it reads `/proc`); loopback only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::percentile;
use crate::admin::{self, CreatedKey};
use link_peeler_wire::api::ApiClient;
use link_peeler_wire::protocol::{EnrollResponse, FetchRequest, PollResponse, paths};
use link_peeler_wire::signing::Signer;

/// The soft open-file limit the relay is started under.
const CHILD_SOFT_NOFILE: u64 = 1024;
/// Enrollment codes made per admin transaction.
const CODE_BATCH: usize = 1000;
/// Enrollments in flight at once.
const ENROLL_CONCURRENCY: usize = 64;
/// Polls started per ramp step (so the listen backlog never overflows).
const RAMP_STEP: usize = 100;
/// How long a held poll may wait (the protocol's maximum).
const WAIT_SECONDS: u32 = 30;

/// What one `bench --polls N` run measured.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PollsReport {
    pub devices: usize,
    pub relay_pid: u32,
    /// The relay's soft open-file limit once it was serving (it started at 1,024).
    pub relay_soft_nofile: Option<u64>,
    /// Polls the relay held at once (its `relay_poll_waiters`).
    pub polls_held: u64,
    /// After enrollment, before any poll.
    pub relay_rss_before_polls_mib: f64,
    pub relay_rss_mib: f64,
    pub relay_hwm_mib: f64,
    pub idle_seconds: u64,
    /// Percent of one core over the idle period (utime + stime from `/proc`).
    pub idle_cpu_percent: f64,
    /// Polls that ended at `waitSeconds` and were renewed during the idle period.
    pub idle_polls_renewed: u64,
    pub idle_writer_ops: u64,
    pub jobs: usize,
    /// All writer ops during the job phase, divided by the jobs.
    pub writer_ops_per_job: f64,
    /// Of those: claims run because a job woke a held poll (total ops minus
    /// submissions, arriving polls and maintenance passes), per job.
    pub wake_claims_per_job: f64,
    pub pickup_p50_ms: f64,
    pub pickup_p99_ms: f64,
    pub pickup_max_ms: f64,
    /// Poll requests that failed on the client side (connection errors, non-200).
    pub poll_errors: u64,
}

pub async fn run(
    devices: usize,
    pickups: u32,
    idle_seconds: u64,
    dir: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let own = crate::server::limits::raise_open_file_limit();
    if own.is_some_and(|l| l < devices as u64 + 256) {
        anyhow::bail!(
            "this process may open {} files, too few for {devices} polls; raise the hard limit (ulimit -Hn)",
            own.unwrap_or(0)
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("lp-bench-polls")
        .tempdir_in(dir.unwrap_or_else(std::env::temp_dir))?;
    let db = tmp.path().join("bench.db");
    let key = super::create_unlimited_key(&db).await?;
    let mut relay = Relay::start(&db, devices, tmp.path()).await?;
    let result = measure(&relay, &db, &key, devices, pickups, idle_seconds, json).await;
    relay.stop().await;
    let report = result?;
    print(&report, json)
}

/// The phases, against a started relay.
async fn measure(
    relay: &Relay,
    db: &Path,
    key: &CreatedKey,
    devices: usize,
    pickups: u32,
    idle_seconds: u64,
    json: bool,
) -> anyhow::Result<PollsReport> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(u64::from(WAIT_SECONDS) + 30))
        .build()?;
    let t = Instant::now();
    let fleet = enroll(&http, &relay.url, db, devices).await?;
    say(
        json,
        format!(
            "enrolled {devices} devices in {:.1} s",
            t.elapsed().as_secs_f64()
        ),
    );
    let rss_before = proc_status_kib(relay.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
    let agents = Agents::start(&http, &relay.url, fleet);
    let held = relay.wait_held(devices, &agents).await?;
    say(json, format!("{held} polls held"));

    let idle = idle_phase(relay, &agents, idle_seconds).await?;
    let rss = proc_status_kib(relay.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
    let hwm = proc_status_kib(relay.pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let api = ApiClient::new(&relay.url, &key.key_id, &key.secret)?;
    let jobs = job_phase(relay, &agents, &api, pickups).await?;
    Ok(PollsReport {
        devices,
        relay_pid: relay.pid,
        relay_soft_nofile: nofile_soft(relay.pid),
        polls_held: held,
        relay_rss_before_polls_mib: rss_before,
        relay_rss_mib: rss,
        relay_hwm_mib: hwm,
        idle_seconds,
        idle_cpu_percent: idle.cpu_percent,
        idle_polls_renewed: idle.polls,
        idle_writer_ops: idle.writer_ops,
        jobs: jobs.samples.len(),
        writer_ops_per_job: jobs.writer_ops as f64 / f64::from(pickups),
        wake_claims_per_job: jobs.wake_claims as f64 / f64::from(pickups),
        pickup_p50_ms: percentile(&jobs.samples, 0.50),
        pickup_p99_ms: percentile(&jobs.samples, 0.99),
        pickup_max_ms: jobs.samples.last().copied().unwrap_or(0.0),
        poll_errors: agents.errors.load(Ordering::Relaxed),
    })
}

fn say(json: bool, line: String) {
    if !json {
        println!("{line}");
    }
}

fn print(r: &PollsReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let nofile = r
        .relay_soft_nofile
        .map_or("unknown".to_owned(), |n| n.to_string());
    println!(
        "relay (pid {}): soft open-file limit {CHILD_SOFT_NOFILE} at start, {nofile} while serving\n\
         polls held: {} of {} devices ({} client errors)\n\
         relay RSS: {:.1} MiB before the polls, {:.1} MiB with them held (peak {:.1} MiB)\n\
         idle CPU over {} s: {:.2} % of one core ({} polls renewed at waitSeconds, {} writer ops)\n\
         writer ops per job: {:.2} (claims woken per job: {:.2})\n\
         submit → held poll returns the task: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} jobs)",
        r.relay_pid,
        r.polls_held,
        r.devices,
        r.poll_errors,
        r.relay_rss_before_polls_mib,
        r.relay_rss_mib,
        r.relay_hwm_mib,
        r.idle_seconds,
        r.idle_cpu_percent,
        r.idle_polls_renewed,
        r.idle_writer_ops,
        r.writer_ops_per_job,
        r.wake_claims_per_job,
        r.pickup_p50_ms,
        r.pickup_p99_ms,
        r.pickup_max_ms,
        r.jobs,
    );
    Ok(())
}

/// The relay child process.
struct Relay {
    child: Child,
    pid: u32,
    url: String,
    ops: String,
    /// For `/metrics` reads (one client, not one per read).
    ops_http: reqwest::Client,
}

impl Relay {
    /// `link-peeler-relay serve` under `ulimit -Sn 1024`, with an operations
    /// listener, room for `devices` connections, leases that outlast the run
    /// and no enrollment throttle (every enrollment of the fleet comes from here).
    async fn start(db: &Path, devices: usize, dir: &Path) -> anyhow::Result<Relay> {
        let exe = std::env::current_exe()?;
        let log = std::fs::File::create(dir.join("relay.log"))?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -Sn {CHILD_SOFT_NOFILE} && exec \"$0\" \"$@\""
            ))
            .arg(exe)
            .arg("--db")
            .arg(db)
            .args(["--json", "serve", "--listen", "127.0.0.1:0"])
            .args(["--ops-listen", "127.0.0.1:0", "--lease-seconds", "3600"])
            .args(["--max-connections", &(devices + 1024).to_string()])
            // The fleet enrolls from one address, 64 at a time.
            .args(["--enroll-failures-per-ip", "1000000"])
            .args(["--enroll-failures-total", "1000000"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("the relay exited at once"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout from the relay"))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| anyhow::anyhow!("the relay did not start within 30 s"))??
            .ok_or_else(|| anyhow::anyhow!("the relay exited; see {}", dir.display()))?;
        let started: serde_json::Value = serde_json::from_str(&first)?;
        let field = |name: &str| {
            started[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("no {name} in the relay's start line: {first}"))
        };
        Ok(Relay {
            url: field("url")?,
            ops: format!("http://{}", field("ops")?),
            ops_http: reqwest::Client::builder().no_proxy().build()?,
            pid,
            child,
        })
    }

    async fn stop(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// One value of the relay's `/metrics`.
    async fn metric(&self, name: &str) -> anyhow::Result<u64> {
        let text = self
            .ops_http
            .get(format!("{}{}", self.ops, paths::METRICS))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .map(|v| v as u64)
            .ok_or_else(|| anyhow::anyhow!("no {name} in /metrics"))
    }

    /// Waits until every device's first poll is held (or the count stops rising).
    async fn wait_held(&self, devices: usize, agents: &Agents) -> anyhow::Result<u64> {
        let mut best = (0, Instant::now());
        loop {
            let held = self.metric("relay_poll_waiters").await?;
            if held >= devices as u64 {
                return Ok(held);
            }
            if held > best.0 {
                best = (held, Instant::now());
            } else if best.1.elapsed() > Duration::from_secs(20) {
                let errors = agents.errors.load(Ordering::Relaxed);
                anyhow::bail!("only {held} of {devices} polls held ({errors} client errors)");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Codes by batches through the admin functions, then one enrollment per
/// device over HTTP; returns each device's signer.
async fn enroll(
    http: &reqwest::Client,
    base: &str,
    db: &Path,
    devices: usize,
) -> anyhow::Result<Vec<Signer>> {
    let mut codes = Vec::with_capacity(devices);
    while codes.len() < devices {
        let n = CODE_BATCH.min(devices - codes.len());
        let db = db.to_path_buf();
        let batch = tokio::task::spawn_blocking(move || {
            admin::create_enrollment_codes(&db, "bench fleet", n)
        })
        .await??;
        codes.extend(batch.into_iter().map(|c| c.code));
    }
    let url = format!("{base}{}", paths::AGENT_ENROLL);
    let mut signers = Vec::with_capacity(devices);
    for chunk in codes.chunks(ENROLL_CONCURRENCY) {
        let calls: Vec<_> = chunk
            .iter()
            .map(|code| {
                let (http, url) = (http.clone(), url.clone());
                let body = format!(r#"{{"code":"{code}"}}"#);
                tokio::spawn(async move {
                    let r = http.post(url).body(body).send().await?.error_for_status()?;
                    let creds: EnrollResponse = r.json().await?;
                    anyhow::Ok(Signer::new(
                        creds.device_id,
                        creds.device_secret.into_bytes(),
                    ))
                })
            })
            .collect();
        for call in calls {
            signers.push(call.await??);
        }
    }
    Ok(signers)
}

/// The fleet: one task per device, each keeping one long-poll open and
/// reporting the tasks it receives.
struct Agents {
    /// Poll requests sent so far.
    polls: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    /// (task id, when its poll answered).
    received: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Instant)>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Agents {
    fn start(http: &reqwest::Client, base: &str, fleet: Vec<Signer>) -> Agents {
        let polls = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let url = format!("{base}{}", paths::AGENT_POLL);
        let tasks = fleet
            .into_iter()
            .enumerate()
            .map(|(i, signer)| {
                let agent = Agent {
                    http: http.clone(),
                    url: url.clone(),
                    signer,
                    polls: polls.clone(),
                    errors: errors.clone(),
                    received: tx.clone(),
                };
                let ramp = Duration::from_millis(25 * (i / RAMP_STEP) as u64);
                tokio::spawn(async move {
                    tokio::time::sleep(ramp).await;
                    agent.run().await;
                })
            })
            .collect();
        Agents {
            polls,
            errors,
            received: tokio::sync::Mutex::new(rx),
            tasks,
        }
    }

    fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Agent {
    http: reqwest::Client,
    url: String,
    signer: Signer,
    polls: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    received: mpsc::UnboundedSender<(String, Instant)>,
}

impl Agent {
    /// Polls forever: capacity 1, `waitSeconds` 30; a failure waits a second.
    async fn run(self) {
        let body = format!(r#"{{"capacity":1,"waitSeconds":{WAIT_SECONDS}}}"#);
        loop {
            let mut req = self.http.post(&self.url).body(body.clone());
            for (k, v) in self.signer.headers(body.as_bytes()) {
                req = req.header(k, v);
            }
            self.polls.fetch_add(1, Ordering::Relaxed);
            let answer = match req.send().await {
                Ok(r) if r.status().is_success() => {
                    r.json::<PollResponse>().await.map_err(|e| e.to_string())
                }
                Ok(r) => Err(format!(
                    "HTTP {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )),
                Err(e) => Err(link_peeler_wire::client::chain(&e)),
            };
            let at = Instant::now();
            match answer {
                Ok(a) => {
                    for t in a.tasks {
                        let _ = self.received.send((t.task_id, at));
                    }
                }
                Err(e) => {
                    if self.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("poll failed: {e}");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

struct Idle {
    cpu_percent: f64,
    polls: u64,
    writer_ops: u64,
}

/// CPU, renewed polls and writer ops over `seconds` with no jobs.
async fn idle_phase(relay: &Relay, agents: &Agents, seconds: u64) -> anyhow::Result<Idle> {
    let (ticks, polls, ops) = (
        cpu_ticks(relay.pid),
        agents.polls(),
        relay.metric("relay_writer_ops").await?,
    );
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = t.elapsed().as_secs_f64();
    let used = cpu_ticks(relay.pid).zip(ticks).map(|(b, a)| b - a);
    Ok(Idle {
        cpu_percent: used.map_or(f64::NAN, |t| t as f64 / CLOCK_TICKS / elapsed * 100.0),
        polls: agents.polls() - polls,
        writer_ops: relay.metric("relay_writer_ops").await? - ops,
    })
}

struct Jobs {
    /// Sorted submit → pickup latencies, ms.
    samples: Vec<f64>,
    writer_ops: u64,
    wake_claims: u64,
}

/// Sequential jobs: submit, wait until a held poll returns it.
async fn job_phase(
    relay: &Relay,
    agents: &Agents,
    api: &ApiClient,
    jobs: u32,
) -> anyhow::Result<Jobs> {
    let mut received = agents.received.lock().await;
    while received.try_recv().is_ok() {}
    let (ops, polls, t) = (
        relay.metric("relay_writer_ops").await?,
        agents.polls(),
        Instant::now(),
    );
    let mut early: HashMap<String, Instant> = HashMap::new();
    let mut samples = Vec::with_capacity(jobs as usize);
    for i in 0..jobs {
        let request = FetchRequest {
            idempotency_key: format!("pickup-{i}"),
            tracking_url: format!("https://trk.example/{i}"),
            source: Some("bench".into()),
            row_id: None,
            options: None,
        };
        let start = Instant::now();
        let job = api.submit_request(&request).await?.job.job_id;
        let at = match early.remove(&job) {
            Some(at) => at,
            None => loop {
                let (id, at) = tokio::time::timeout(Duration::from_secs(30), received.recv())
                    .await
                    .map_err(|_| anyhow::anyhow!("job {job} was not picked up within 30 s"))?
                    .ok_or_else(|| anyhow::anyhow!("the agents stopped"))?;
                if id == job {
                    break at;
                }
                early.insert(id, at);
            },
        };
        samples.push(at.duration_since(start).as_secs_f64() * 1000.0);
        // The poll that took the job is renewed before the next one.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the last pickup's renewal reach the writer before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let writer_ops = relay.metric("relay_writer_ops").await? - ops;
    let polls = agents.polls() - polls;
    // One maintenance pass per second of the phase.
    let maintenance = t.elapsed().as_secs();
    samples.sort_by(f64::total_cmp);
    Ok(Jobs {
        samples,
        writer_ops,
        wake_claims: writer_ops.saturating_sub(u64::from(jobs) + polls + maintenance),
    })
}

/// Linux's `USER_HZ`: `/proc/<pid>/stat` counts CPU time in these.
const CLOCK_TICKS: f64 = 100.0;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmRSS:`.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft open-file limit of a process, from `/proc/<pid>/limits`.
fn nofile_soft(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
