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

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use link_peeler::demo::lab::Lab;
use link_peeler_wire::api::ApiClient;
use link_peeler_wire::protocol::JobStatus;
use support::{admin, clock_ticks, cpu_ticks, enroll, rss_kib, spawn_agent, start_relay};

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
    let (mut relay, relay_url, db) = start_relay(tmp.path(), &[]).await;
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

/// `relay_http_requests_total{route=ROUTE,status="200"}` from `/metrics` (the
/// relay at `_relay_url` serves it on its operations listener).
async fn metric(_relay_url: &str, route: &str) -> u64 {
    let ops = support::OPS_URL.get().expect("start_relay ran");
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
