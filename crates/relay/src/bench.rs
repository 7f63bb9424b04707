//! `link-peeler-relay bench`: throughput and latency of the relay on loopback.
//!
//! Not a test — it asserts nothing and prints numbers (BENCHMARKS.md records
//! them). Everything runs in one process on this machine: a relay with a
//! fresh SQLite file (`synchronous=FULL`, so every 202 is durable), a plain
//! axum "hello" endpoint as the ceiling of what the HTTP stack can do here,
//! and a load generator that signs every request like a real client.
//!
//! With `--db postgres://…` (a fresh, empty database) the relays run on
//! PostgreSQL instead, and `--relays N` starts N relay instances on it in this
//! process (each with its own pool, listener and `LISTEN` connection, as
//! separate processes would have): submissions go round-robin over them, and
//! the pickup latency is measured with the agent's poll held on the last
//! relay and the job submitted through the first, so a NOTIFY has to carry it.
//!
//! `bench --polls N` measures something else: a relay child process holding
//! one long-poll for each of N agents (`bench/polls.rs`).

mod polls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::admin::{self, CreatedKey, NewKey};
use super::store::Database;
use super::{RelayConfig, RunningRelay, serve};
use link_peeler_wire::api::ApiClient;
use link_peeler_wire::client::{REQUEST_TIMEOUT, SignedClient};
use link_peeler_wire::protocol::{EnrollResponse, FetchRequest, PollResponse, paths};
use link_peeler_wire::signing::Signer;
use reqwest::Method;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Seconds to drive load at each concurrency level
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Concurrency levels, comma-separated
    #[arg(long, value_delimiter = ',', default_values_t = vec![1u32, 16, 64], value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: Vec<u32>,
    /// Submit→pickup samples to take
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub pickups: u32,
    /// Directory for the benchmark database [default: a temp dir]
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Instead: hold one long-poll for each of N enrolled devices (10,000
    /// when N is left out) against a relay child process, and measure its
    /// RSS, idle CPU, writer ops per job and pickup latency (--pickups jobs); Linux only
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10000",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub polls: Option<u32>,
    /// Relay instances sharing the database (more than 1 needs a PostgreSQL --db)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub relays: u32,
    /// With --polls: seconds of the idle measurement
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub idle_seconds: u64,
}

/// One measured load level.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Level {
    pub name: String,
    pub concurrency: u32,
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Average writes per fsync'd commit during this level (group commit at work).
    pub ops_per_commit: Option<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub levels: Vec<Level>,
    pub pickup_samples: usize,
    pub pickup_p50_ms: f64,
    pub pickup_p99_ms: f64,
}

pub async fn run(args: BenchArgs, db: Option<Database>, json: bool) -> anyhow::Result<()> {
    link_peeler_wire::tls::init();
    if let Some(devices) = args.polls {
        return polls::run(
            devices as usize,
            args.pickups,
            args.idle_seconds,
            args.dir,
            json,
        )
        .await;
    }
    let tmp = tempfile::Builder::new()
        .prefix("lp-bench")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let db = match db {
        Some(pg @ Database::Postgres(_)) => pg,
        _ if args.relays > 1 => {
            anyhow::bail!(
                "--relays {} needs a PostgreSQL --db (SQLite serves one relay)",
                args.relays
            )
        }
        _ => Database::Sqlite(tmp.path().join("bench.db")),
    };
    if !json {
        println!("store: {} ({db}), {} relay(s)", db.kind(), args.relays);
    }
    let key = create_unlimited_key(&db).await?;
    let mut relays = Vec::new();
    for _ in 0..args.relays {
        relays.push(
            serve(RelayConfig {
                db: db.clone(),
                listen: "127.0.0.1:0".parse()?,
                ..RelayConfig::default()
            })
            .await?,
        );
    }
    let hello = hello_server().await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?;
    let apis = relays
        .iter()
        .map(|r| ApiClient::new(&r.url(), &key.key_id, &key.secret).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let duration = Duration::from_secs(args.seconds);

    let mut levels = Vec::new();
    for &c in &args.concurrency {
        levels.push(submit_level(&relays, &apis, c, duration).await);
        progress(json, levels.last());
    }
    let top = args.concurrency.iter().copied().max().unwrap_or(64);
    levels.push(hello_level(&http, hello, top, duration).await);
    progress(json, levels.last());

    let (first, last) = (&apis[0], &relays[relays.len() - 1]);
    let pickups = pickup_latency(first, &last.url(), &db, args.pickups).await?;
    let report = Report {
        levels,
        pickup_samples: pickups.len(),
        pickup_p50_ms: percentile(&pickups, 0.50),
        pickup_p99_ms: percentile(&pickups, 0.99),
    };
    for relay in relays {
        relay.shutdown().await?;
    }
    print_report(&report, json)
}

/// An API key no quota gets in the way of. Admin calls are blocking work,
/// so they run on a blocking thread.
pub(crate) async fn create_unlimited_key(db: impl Into<Database>) -> anyhow::Result<CreatedKey> {
    let db: Database = db.into();
    tokio::task::spawn_blocking(move || {
        admin::create_key(
            &db,
            &NewKey {
                daily_limit: u32::MAX,
                max_queued: u32::MAX,
                ..NewKey::named("bench")
            },
        )
    })
    .await?
}

/// Signed submissions at `concurrency`, round-robin over the relays, with
/// the writers' average batch size.
async fn submit_level(
    relays: &[RunningRelay],
    apis: &[Arc<ApiClient>],
    concurrency: u32,
    duration: Duration,
) -> Level {
    let totals = || {
        relays.iter().fold((0, 0), |(c, o), r| {
            let stats = r.store().writer_stats();
            (
                c + stats.commits.load(Ordering::Relaxed),
                o + stats.ops.load(Ordering::Relaxed),
            )
        })
    };
    let (commits, ops) = totals();
    let name = format!("signed submit (c={concurrency})");
    let mut level = drive(&name, concurrency, duration, {
        let apis = apis.to_vec();
        move |i| submit_once(apis[(i as usize) % apis.len()].clone(), i)
    })
    .await;
    let (commits_after, ops_after) = totals();
    let (commits, ops) = (commits_after - commits, ops_after - ops);
    level.ops_per_commit = (commits > 0).then(|| ops as f64 / commits as f64);
    level
}

/// Plain GETs of the axum hello endpoint: the HTTP stack's ceiling here.
async fn hello_level(
    http: &reqwest::Client,
    hello: SocketAddr,
    concurrency: u32,
    duration: Duration,
) -> Level {
    let name = format!("axum hello ceiling (c={concurrency})");
    let hello_url = format!("http://{hello}/hello");
    drive(&name, concurrency, duration, {
        let http = http.clone();
        move |_| {
            let (http, url) = (http.clone(), hello_url.clone());
            async move {
                http.get(url)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        }
    })
    .await
}

/// The closing line (the levels were printed as they finished), or the whole
/// report as one JSON line.
fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!(
            "\nsubmit → waiting long-poll returns the task: p50 {:.2} ms, p99 {:.2} ms ({} samples)",
            report.pickup_p50_ms, report.pickup_p99_ms, report.pickup_samples
        );
    }
    Ok(())
}

fn progress(json: bool, level: Option<&Level>) {
    if let (false, Some(l)) = (json, level) {
        let batch = l
            .ops_per_commit
            .map(|b| format!(", {b:.1} writes/commit"))
            .unwrap_or_default();
        println!(
            "{:<34} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} requests, {} errors{batch})",
            l.name, l.per_second, l.p50_ms, l.p99_ms, l.requests, l.errors
        );
    }
}

async fn submit_once(api: Arc<ApiClient>, i: u64) -> bool {
    let request = FetchRequest {
        idempotency_key: format!("bench-{}-{i}", uuid::Uuid::new_v4().simple()),
        tracking_url: format!("https://trk.example/{i}"),
        source: Some("bench".into()),
        row_id: None,
        options: None,
    };
    matches!(api.submit_request(&request).await, Ok(s) if !s.replayed)
}

/// Runs `concurrency` workers calling `op` back to back for `duration`.
async fn drive<F, Fut>(name: &str, concurrency: u32, duration: Duration, op: F) -> Level
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (op, stop) = (op.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = u64::from(w) << 32;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if op(i).await {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((lat, e)) = w.await {
            all.extend(lat);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Level {
        name: name.to_owned(),
        concurrency,
        requests: all.len() as u64,
        errors,
        per_second: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        ops_per_commit: None,
    }
}

/// Submit a job while one agent's long-poll is waiting; time until the poll returns it.
async fn pickup_latency(
    api: &Arc<ApiClient>,
    base: &str,
    db: &Database,
    samples: u32,
) -> anyhow::Result<Vec<f64>> {
    // Drain the queue the load phase filled, so each poll waits for the next job.
    let code = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || admin::create_enrollment_code(&db, "bench agent"))
            .await??
    };
    let anonymous = SignedClient::new(base.parse()?, None, "link-peeler-relay-bench")?;
    let creds: EnrollResponse = anonymous
        .send_unsigned(
            Method::POST,
            anonymous.url(paths::AGENT_ENROLL),
            Some(format!(r#"{{"code":"{}"}}"#, code.code).into_bytes()),
            REQUEST_TIMEOUT,
        )
        .await?
        .json("enrollment answer")?;
    let device = Arc::new(SignedClient::new(
        base.parse()?,
        Some(Signer::new(
            creds.device_id,
            creds.device_secret.into_bytes(),
        )),
        "link-peeler-relay-bench",
    )?);
    let poll = |capacity: u32, wait: u32| {
        let device = device.clone();
        async move {
            let body = format!(r#"{{"capacity":{capacity},"waitSeconds":{wait}}}"#);
            let url = device.url(paths::AGENT_POLL);
            let timeout = REQUEST_TIMEOUT + Duration::from_secs(wait.into());
            device
                .send(Method::POST, url, body.into_bytes(), timeout)
                .await?
                .json::<PollResponse>("poll answer")
        }
    };
    while !poll(64, 0).await?.tasks.is_empty() {}

    let mut out = Vec::new();
    for i in 0..samples {
        let waiting = tokio::spawn(poll(1, 30));
        // Let the poll reach the relay and start waiting.
        tokio::time::sleep(Duration::from_millis(15)).await;
        let t = Instant::now();
        if !submit_once(api.clone(), u64::from(i)).await {
            anyhow::bail!("pickup submission failed");
        }
        let got = waiting.await??;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if got.tasks.len() == 1 {
            out.push(ms);
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

async fn hello_server() -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}
