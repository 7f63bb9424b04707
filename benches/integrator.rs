//! The integrator's data channels, measured (not a test): `cargo bench --bench integrator`.
//!
//! Real processes on loopback, as deployed: the `link-peeler-relay` binary
//! (webhooks allowed to 127.0.0.1 only), one `link-peeler run --headless`
//! agent at capacity 32, the redirect lab and a webhook receiver in this
//! process. Every job is a 3-hop lab chain (`/chain/2`) really resolved by
//! the agent.
//!
//! 1. submit → webhook received, 200 sequential jobs: p50/p99/max; beside it,
//!    in the same run, the way before webhooks: submit → `done` seen by a
//!    client reading the job every millisecond;
//! 2. feed catch-up: 5,000 finished jobs read from cursor 0 in pages of 500,
//!    in jobs/s; beside it, the same jobs read one `GET /api/links/jobs/{id}`
//!    at a time.
//!
//! Without `--bench` (as under `cargo test --all-targets`) it only prints how to run it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use link_peeler::demo::lab::Lab;
use link_peeler_wire::api::ApiClient;
use link_peeler_wire::protocol::{FetchRequest, JobStatus};
use support::{admin, enroll, spawn_agent, start_relay};
use tokio::sync::Notify;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("integrator bench: run with `cargo bench --bench integrator`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

/// When each job's webhook arrived, by job id.
#[derive(Clone, Default)]
struct Arrivals {
    at: Arc<Mutex<HashMap<String, Instant>>>,
    arrived: Arc<Notify>,
}

async fn receive(State(a): State<Arrivals>, _headers: HeaderMap, body: axum::body::Bytes) {
    let now = Instant::now();
    let job: serde_json::Value = serde_json::from_slice(&body).expect("job json");
    let id = job["jobId"].as_str().expect("jobId").to_owned();
    a.at.lock().expect("lock").insert(id, now);
    a.arrived.notify_waiters();
}

impl Arrivals {
    async fn wait_for(&self, id: &str) -> Instant {
        loop {
            let notified = self.arrived.notified();
            if let Some(t) = self.at.lock().expect("lock").get(id) {
                return *t;
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), notified).await;
        }
    }
}

fn percentiles(mut lat: Vec<Duration>) -> String {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    )
}

async fn run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let arrivals = Arrivals::default();
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("receiver");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (mut relay, relay_url, db) =
        start_relay(tmp.path(), &["--webhook-allow-network", "127.0.0.1/32"]).await;
    let lab = Lab::start().await.expect("lab");
    let limits = ["--max-queued", "100000", "--daily-limit", "10000000"];
    let hooked = admin(
        &db,
        &[
            &["keys", "create", "--name", "hooked", "--webhook-url", &hook][..],
            &limits,
        ]
        .concat(),
    );
    let plain = admin(
        &db,
        &[&["keys", "create", "--name", "plain"][..], &limits].concat(),
    );
    let client = |k: &serde_json::Value| {
        ApiClient::new(
            &relay_url,
            k["keyId"].as_str().expect("keyId"),
            k["secret"].as_str().expect("secret"),
        )
        .expect("api")
    };
    let (hooked, plain) = (client(&hooked), client(&plain));
    let creds = enroll(&relay_url, &db).await;
    let mut agent = spawn_agent(tmp.path(), "agent", &relay_url, &creds, 32);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let chain = lab.url("/chain/2");

    // 1. Submit → webhook received, and submit → done by polling (before).
    for round in 0..2 {
        let mut webhook = vec![];
        for i in 0..200 {
            let t = Instant::now();
            let job = hooked
                .submit(&format!("hook-{round}-{i}"), &chain, None)
                .await
                .expect("submit");
            webhook.push(arrivals.wait_for(&job.job_id).await - t);
        }
        let mut polled = vec![];
        for i in 0..200 {
            let t = Instant::now();
            let job = plain
                .submit(&format!("poll-{round}-{i}"), &chain, None)
                .await
                .expect("submit");
            loop {
                if plain.job(&job.job_id).await.expect("job").status == JobStatus::Done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            polled.push(t.elapsed());
        }
        println!(
            "round {round}: submit → webhook received (200 sequential 3-hop jobs): {}",
            percentiles(webhook)
        );
        println!(
            "round {round}: submit → done read by polling the job every 1 ms (same run): {}",
            percentiles(polled)
        );
    }

    // 2. Feed catch-up against reading job by job.
    let n = 5000;
    let mut ids = Vec::with_capacity(n);
    for chunk in 0..n / 500 {
        let jobs: Vec<FetchRequest> = (0..500)
            .map(|i| FetchRequest {
                idempotency_key: format!("feed-{}", chunk * 500 + i),
                tracking_url: chain.clone(),
                source: Some("bench".into()),
                row_id: None,
                options: None,
            })
            .collect();
        for item in plain.batch(&jobs).await.expect("batch") {
            ids.push(item.job.expect("created").job_id);
        }
    }
    // Wait until every one of them finished (the feed tells).
    let mut cursor = "0".to_owned();
    let mut finished = 0;
    while finished < n + 400 {
        let page = plain
            .events(Some(&cursor), Duration::from_secs(10), Some(500))
            .await
            .expect("events");
        finished += page.events.len();
        cursor = page.next_cursor;
    }
    for limit in [500, 100] {
        let t = Instant::now();
        let mut cursor = "0".to_owned();
        let mut read = 0;
        loop {
            let page = plain
                .events(Some(&cursor), Duration::ZERO, Some(limit))
                .await
                .expect("events");
            if page.events.is_empty() {
                break;
            }
            read += page.events.len();
            cursor = page.next_cursor;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "feed catch-up, pages of {limit}: {read} finished jobs in {secs:.2} s → {:.0} jobs/s",
            read as f64 / secs
        );
    }
    let t = Instant::now();
    for id in &ids {
        let j = plain.job(id).await.expect("job");
        assert_eq!(j.status, JobStatus::Done);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "reading the same {n} jobs one GET /api/links/jobs/{{id}} at a time: {secs:.2} s → {:.0} jobs/s",
        n as f64 / secs
    );
    let _ = agent.kill().await;
    let _ = relay.kill().await;
    lab.shutdown().await;
}
