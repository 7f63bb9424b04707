//! Agent benchmark (not a test): `cargo bench --bench agent`.
//!
//! Real processes on loopback, as deployed: the `link-peeler-relay` binary,
//! the `link-peeler run --headless` binary with credentials from the
//! environment, and the built-in redirect lab in this process.
//!
//! 1. idle: one agent long-polling an empty relay for 60 s — RSS (current and
//!    peak), CPU time, and polls counted by the relay's `/metrics`;
//! 2. throughput: 1,000 jobs of 3-hop lab chains (`/chain/2`) through the relay
//!    and one agent at capacity 32, both with the agent already running
//!    (submit → all done) and with the queue filled before the agent starts;
//! 3. latency: 200 sequential jobs on an otherwise idle system, submit → `done`
//!    as seen by a client reading the job every millisecond; p50/p99.
//!
//! `BENCH_IDLE_SECS` shortens the idle phase for a quick run. Without `--bench`
//! (as under `cargo test --all-targets`) it only prints how to run it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use link_peeler::demo::lab::Lab;
use link_peeler_agent::client::RelayClient;
use link_peeler_wire::api::ApiClient;
use link_peeler_wire::protocol::{EnrollRequest, JobStatus};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const AGENT_BIN: &str = env!("CARGO_BIN_EXE_link-peeler");
/// The relay binary. It belongs to the `link-peeler-relay` crate, so Cargo
/// sets no `CARGO_BIN_EXE_` for it here; it is built into the same directory
/// as `link-peeler` (`cargo test` in the workspace root builds both).
fn relay_bin() -> std::path::PathBuf {
    let name = format!("link-peeler-relay{}", std::env::consts::EXE_SUFFIX);
    std::path::Path::new(AGENT_BIN).with_file_name(name)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("agent bench: run with `cargo bench --bench agent`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut relay, relay_url, db) = start_relay(tmp.path()).await;
    let lab = Lab::start().await.expect("lab");
    let key = admin(
        &db,
        &[
            "keys",
            "create",
            "--name",
            "bench",
            "--max-queued",
            "100000",
            "--daily-limit",
            "10000000",
        ],
    );
    let api = Arc::new(
        ApiClient::new(
            &relay_url,
            key["keyId"].as_str().expect("keyId"),
            key["secret"].as_str().expect("secret"),
        )
        .expect("api"),
    );

    // 1. Idle.
    let idle_secs: u64 = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let creds = enroll(&relay_url, &db).await;
    let mut agent = spawn_agent(tmp.path(), "idle", &relay_url, &creds, 4);
    let pid = agent.id().expect("pid");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polls0 = metric(&relay_url, "/api/agent/poll").await;
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let cpu1 = cpu_ticks(pid);
    let wall = t0.elapsed().as_secs_f64();
    let polls = metric(&relay_url, "/api/agent/poll").await - polls0;
    let (rss, hwm) = rss_kib(pid);
    let ticks = clock_ticks();
    let cpu_pct = (cpu1 - cpu0) as f64 / ticks / wall * 100.0;
    println!(
        "idle: {wall:.0} s, RSS {:.1} MiB (peak {:.1} MiB), CPU {:.3} % ({} ticks), {polls} polls (long-poll 30 s)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        cpu_pct,
        cpu1 - cpu0
    );
    let _ = agent.kill().await;

    // 2a. Throughput with the agent running: submit 1,000 and wait for all of them.
    let creds = enroll(&relay_url, &db).await;
    let mut agent = spawn_agent(tmp.path(), "busy", &relay_url, &creds, 32);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = 1000;
    let base_results = metric(&relay_url, "/api/agent/tasks/{task_id}/result").await;
    let started = Instant::now();
    let ids = submit_all(&api, &lab, "live", n).await;
    let submitted = started.elapsed();
    wait_results(&relay_url, base_results + n as u64).await;
    let live = started.elapsed();
    check_done(&api, &ids).await;
    println!(
        "throughput (agent running, 16 concurrent submitters): {n} jobs submitted in {:.2} s, all done in {:.2} s → {:.0} jobs/s",
        submitted.as_secs_f64(),
        live.as_secs_f64(),
        n as f64 / live.as_secs_f64()
    );
    let _ = agent.kill().await;

    // 2b. Drain: fill the queue first, then start the agent.
    let ids = submit_all(&api, &lab, "drain", n).await;
    let base_results = metric(&relay_url, "/api/agent/tasks/{task_id}/result").await;
    let started = Instant::now();
    let mut agent = spawn_agent(tmp.path(), "busy", &relay_url, &creds, 32);
    wait_results(&relay_url, base_results + n as u64).await;
    let drain = started.elapsed();
    check_done(&api, &ids).await;
    println!(
        "throughput (queue pre-filled, agent start included): {n} jobs in {:.2} s → {:.0} jobs/s",
        drain.as_secs_f64(),
        n as f64 / drain.as_secs_f64()
    );

    // 3. Latency on an idle system (the capacity-32 agent is long-polling).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut lat = vec![];
    for i in 0..200 {
        let t = Instant::now();
        let job = api
            .submit(&format!("lat-{i}"), &lab.url("/chain/2"), None)
            .await
            .expect("submit");
        loop {
            let j = api.job(&job.job_id).await.expect("job");
            if j.status == JobStatus::Done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "latency submit→done (200 sequential 3-hop jobs): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    let _ = agent.kill().await;
    let _ = relay.kill().await;
    lab.shutdown().await;
}

async fn submit_all(api: &Arc<ApiClient>, lab: &Lab, tag: &str, n: usize) -> Vec<String> {
    let url = lab.url("/chain/2");
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let (api, url, tag) = (api.clone(), url.clone(), tag.to_owned());
        tasks.spawn(async move {
            let mut ids = vec![];
            for i in (w..n).step_by(16) {
                let job = api
                    .submit(&format!("{tag}-{i}"), &url, None)
                    .await
                    .expect("submit");
                ids.push(job.job_id);
            }
            ids
        });
    }
    let mut all = vec![];
    while let Some(ids) = tasks.join_next().await {
        all.extend(ids.expect("submitter"));
    }
    all
}

async fn check_done(api: &ApiClient, ids: &[String]) {
    for id in ids {
        let j = api.job(id).await.expect("job");
        assert_eq!(j.status, JobStatus::Done, "{j:?}");
        assert_eq!(j.result.expect("result").hops.len(), 3);
    }
}

async fn wait_results(relay_url: &str, target: u64) {
    let until = Instant::now() + Duration::from_secs(600);
    while metric(relay_url, "/api/agent/tasks/{task_id}/result").await < target {
        assert!(Instant::now() < until, "results did not arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The relay's operations listener (`/metrics`), set by [`start_relay`].
static OPS_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `relay_http_requests_total{route=ROUTE,status="200"}` from `/metrics` (the
/// relay at `_relay_url` serves it on its operations listener).
async fn metric(_relay_url: &str, route: &str) -> u64 {
    let ops = OPS_URL.get().expect("start_relay ran");
    let text = reqwest::get(format!("{ops}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let want = format!("route=\"{route}\"");
    text.lines()
        .filter(|l| {
            l.starts_with("relay_http_requests_total{")
                && l.contains(&want)
                && l.contains("status=\"200\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn start_relay(dir: &Path) -> (Child, String, PathBuf) {
    let db = dir.join("relay.db");
    let mut child = Command::new(relay_bin())
        .args(["serve", "--db"])
        .arg(&db)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("relay");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next_line().await.expect("read").expect("line");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let v: serde_json::Value = serde_json::from_str(&first).expect("json");
    let url = format!("http://{}", v["listen"].as_str().expect("listen"));
    let ops = format!("http://{}", v["ops"].as_str().expect("ops"));
    let _ = OPS_URL.set(ops);
    (child, url, db)
}

fn admin(db: &Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(relay_bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .arg("--json")
        .output()
        .expect("admin");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("admin json")
}

async fn enroll(relay_url: &str, db: &Path) -> (String, String) {
    let code = admin(db, &["devices", "enroll", "--name", "bench"])["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let c = RelayClient::new(
        link_peeler_agent::config::relay_url(relay_url).expect("url"),
        None,
    )
    .expect("client");
    let r = c
        .enroll(&EnrollRequest {
            code,
            name: Some("bench".into()),
            platform: None,
            version: None,
        })
        .await
        .expect("enroll");
    (r.device_id, r.device_secret)
}

fn spawn_agent(
    root: &Path,
    name: &str,
    relay_url: &str,
    creds: &(String, String),
    capacity: u32,
) -> Child {
    let home = root.join(name);
    std::fs::create_dir_all(&home).expect("home");
    Command::new(AGENT_BIN)
        .args([
            "run",
            "--headless",
            "--allow-network",
            "127.0.0.0/8",
            "--relay",
            relay_url,
        ])
        .args(["--capacity", &capacity.to_string()])
        .env("LINK_PEELER_CONFIG", home.join("config.toml"))
        .env("LINK_PEELER_DATA_DIR", home.join("data"))
        .env("LINK_PEELER_DEVICE_ID", &creds.0)
        .env("LINK_PEELER_DEVICE_SECRET", &creds.1)
        .env("LINK_PEELER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("agent")
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    100.0
}
