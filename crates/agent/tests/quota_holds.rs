//! Quotas hold under concurrency (issue 16): capacity 8, many small pages
//! and a few large ones from a real loopback HTTP server, resolved by the
//! real resolver under the agent's controller — admitted the way the runner
//! admits tasks (room, then a reservation per task). The bytes counted never
//! exceed the daily cap by more than one page's body cap, and once the cap
//! is near, the controller says the quota is reached and takes nothing more.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use link_peeler_agent::control::controller::{Clock, Saved};
use link_peeler_agent::control::{Controller, Decision, Layer, Policy, Quota, Reason, Sensors};
use link_peeler_resolver::{BODY_CAP, Resolver, ResolverConfig};
use link_peeler_wire::protocol::Conclusion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// `/small/N`: a 3 KB page; `/large/N`: a 2 MB page (read up to the body
/// cap); `/hop/N`: a redirect to `/small/N`. Counts requests.
async fn serve() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU64::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split(' ').nth(1).unwrap_or("").to_owned();
                count.fetch_add(1, Ordering::SeqCst);
                if let Some(n) = path.strip_prefix("/hop/") {
                    let head = format!(
                        "HTTP/1.1 302 Found\r\nLocation: /small/{n}\r\nContent-Length: 0\r\n\r\n"
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    return;
                }
                let size = if path.starts_with("/large/") {
                    2 << 20
                } else {
                    3000
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {size}\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 16 * 1024];
                let mut left = size;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    (base, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daily_byte_cap_holds_with_eight_tasks_in_flight() {
    const CAP: u64 = 3 << 20;
    const CAPACITY: u32 = 8;
    let (base, requests) = serve().await;
    let policy = Policy::merge(
        &Layer {
            max_bytes_per_day: Some(CAP),
            ..Default::default()
        },
        &Layer::default(),
        &Layer::default(),
    );
    let (_sensors_tx, sensors) = tokio::sync::watch::channel(Sensors::default());
    let dir = tempfile::tempdir().unwrap();
    let control = Controller::new(
        policy,
        Saved::default(),
        sensors,
        Clock::System,
        Some(dir.path().to_path_buf()),
    );
    let resolver = Resolver::new(ResolverConfig {
        allow_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..Default::default()
    })
    .unwrap();
    // 300 links: mostly small pages and redirects, every tenth a large page.
    let mut links: Vec<String> = (0..300)
        .map(|i| match i % 10 {
            0 => format!("{base}/large/{i}"),
            1..=3 => format!("{base}/hop/{i}"),
            _ => format!("{base}/small/{i}"),
        })
        .rev()
        .collect();
    let mut workers = JoinSet::new();
    let mut taken = 0u64;
    loop {
        while let Some(done) = workers.try_join_next() {
            done.unwrap();
        }
        let free = CAPACITY - workers.len() as u32;
        let room = if free == 0 { 0 } else { control.room(free) };
        if room == 0 || links.is_empty() {
            match workers.join_next().await {
                Some(done) => {
                    done.unwrap();
                    continue;
                }
                None => break,
            }
        }
        for _ in 0..room {
            let Some(url) = links.pop() else { break };
            let task = Arc::new(control.reserve().unwrap());
            taken += 1;
            let resolver = resolver.clone();
            workers.spawn(async move {
                let r = resolver
                    .resolve_watched(&url, None, None, task.clone())
                    .await;
                assert!(
                    matches!(
                        r.conclusion,
                        Conclusion::Resolved | Conclusion::RefusedByPolicy
                    ),
                    "{r:?}"
                );
                task.finish(true);
            });
        }
    }
    let state = control.watch().borrow().clone();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("control.json")).unwrap()).unwrap();
    let counted = saved["quota"]["day"]["bytes"].as_u64().unwrap();
    eprintln!("{taken} links taken, {counted} bytes counted, cap {CAP}");
    assert!(
        taken > 20 && !links.is_empty(),
        "the cap stopped the work: {taken} taken"
    );
    assert!(
        counted <= CAP + BODY_CAP as u64,
        "{counted} bytes counted, cap {CAP}"
    );
    assert!(counted > CAP / 2, "{counted}");
    assert!(requests.load(Ordering::SeqCst) >= taken);
    match &state.decision {
        Decision::Paused(reasons) => assert!(
            reasons.iter().any(|r| matches!(
                r,
                Reason::QuotaReached {
                    quota: Quota::BytesPerDay,
                    ..
                }
            )),
            "{reasons:?}"
        ),
        Decision::Active => panic!("the quota must be reached: {state:?}"),
    }
    assert!(state.quota_left.bytes_today < CAP / 4);
}
