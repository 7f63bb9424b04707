//! The results feed, `GET /api/links/events` (protocol.md §3.10): a key's
//! finished jobs in commit order after a cursor, held until one finishes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Client, TestRelay};
use link_peeler_wire::protocol::paths;
use serde_json::Value;

/// Leases and finishes every task the device gets, until `n` are done.
async fn finish(device: &Client, n: usize) {
    let mut done = 0;
    while done < n {
        let polled = device.poll(8, 2).await;
        assert_eq!(polled.status, 200, "{polled:?}");
        for t in polled.json["tasks"].as_array().unwrap() {
            let r = device
                .post_result(
                    t["taskId"].as_str().unwrap(),
                    t["leaseId"].as_str().unwrap(),
                    t["trackingUrl"].as_str().unwrap(),
                )
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            done += 1;
        }
    }
}

async fn events(api: &Client, query: &str) -> Value {
    let a = api.get(&format!("{}?{query}", paths::LINKS_EVENTS)).await;
    assert_eq!(a.status, 200, "{query}: {a:?}");
    a.json
}

fn cursors(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_key_reads_its_own_finished_jobs_in_order_after_a_cursor() {
    let relay = TestRelay::start().await;
    let (a_key, b_key) = (relay.key(), relay.key());
    let (a, b) = (relay.api(&a_key), relay.api(&b_key));
    let (_, device) = relay.device().await;

    let empty = events(&a, "").await;
    assert_eq!(empty["events"], serde_json::json!([]));
    assert_eq!(empty["nextCursor"], "0");

    for i in 0..3 {
        assert_eq!(
            a.submit(&format!("a{i}"), "https://trk.example/a")
                .await
                .status,
            202
        );
        assert_eq!(
            b.submit(&format!("b{i}"), "https://trk.example/b")
                .await
                .status,
            202
        );
    }
    finish(&device, 6).await;

    let page = events(&a, "after=0").await;
    let got = page["events"].as_array().unwrap();
    assert_eq!(got.len(), 3, "only key A's jobs: {page}");
    for e in got {
        assert_eq!(e["event"], "job.done");
        assert_eq!(e["job"]["status"], "done");
        assert_eq!(e["job"]["trackingUrl"], "https://trk.example/a");
    }
    let c = cursors(&page);
    assert!(c.windows(2).all(|w| w[0] < w[1]), "{c:?}");
    assert_eq!(page["nextCursor"], got[2]["cursor"]);

    // Paging with limit, then nothing after the last cursor.
    let first = events(&a, "limit=2").await;
    assert_eq!(cursors(&first), c[..2]);
    let rest = events(
        &a,
        &format!("after={}", first["nextCursor"].as_str().unwrap()),
    )
    .await;
    assert_eq!(cursors(&rest), c[2..]);
    let none = events(&a, &format!("after={}&waitSeconds=0", c[2])).await;
    assert_eq!(none["events"], serde_json::json!([]));
    assert_eq!(none["nextCursor"], c[2].to_string());
    // The feed is signed like every links route: a device may not read it.
    let g = device.get(paths::LINKS_EVENTS).await;
    assert_eq!((g.status, g.code()), (403, "forbidden"));
}

#[tokio::test]
async fn a_held_feed_request_answers_when_a_job_finishes() {
    let relay = TestRelay::start().await;
    let api = Arc::new(relay.api(&relay.key()));
    let (_, device) = relay.device().await;
    let held = {
        let api = api.clone();
        tokio::spawn(async move { events(&api, "after=0&waitSeconds=30").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "nothing finished yet: still held");
    assert_eq!(
        api.submit("held", "https://trk.example/h").await.status,
        202
    );
    finish(&device, 1).await;
    let page = tokio::time::timeout(Duration::from_secs(25), held)
        .await
        .expect("answered before waitSeconds ran out")
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");

    // Held for waitSeconds when nothing finishes: an empty page, the same cursor.
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let again = events(&api, &format!("after={cursor}&waitSeconds=1")).await;
    assert_eq!(again["events"], serde_json::json!([]));
    assert_eq!(again["nextCursor"], cursor.as_str());
}

#[tokio::test]
async fn bad_feed_parameters_are_refused_by_name() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    for (q, names) in [
        ("waitSeconds=31", "waitSeconds"),
        ("waitSeconds=-1", "waitSeconds"),
        ("waitSeconds=", "waitSeconds"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("after=abc", "after"),
        ("after=-5", "after"),
        ("after=01", "after"),
        ("after=1&after=2", "after"),
        ("cursor=1", "cursor"),
        ("wait=5", "wait"),
    ] {
        let a = api.get(&format!("{}?{q}", paths::LINKS_EVENTS)).await;
        assert_eq!((a.status, a.code()), (400, "invalid_request"), "{q}: {a:?}");
        let msg = a.json["error"]["message"].as_str().unwrap();
        assert!(msg.contains(names), "{q}: {msg}");
    }
}

/// 20 agents finish 1,000 jobs at the same time while a consumer follows the
/// cursor: it sees every job exactly once, in commit order, and a second
/// pass from the start sees the same sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_following_the_cursor_sees_each_of_1000_jobs_once_in_commit_order() {
    const JOBS: usize = 1000;
    const AGENTS: usize = 20;
    let relay = TestRelay::start().await;
    let key = relay.key();
    let api = Arc::new(relay.api(&key));

    let consumer = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut cursor = "0".to_owned();
            let mut seen: Vec<(u64, String)> = Vec::new();
            while seen.len() < JOBS {
                let page = events(&api, &format!("after={cursor}&waitSeconds=5&limit=100")).await;
                for e in page["events"].as_array().unwrap() {
                    seen.push((
                        e["cursor"].as_str().unwrap().parse().unwrap(),
                        e["job"]["jobId"].as_str().unwrap().to_owned(),
                    ));
                }
                cursor = page["nextCursor"].as_str().unwrap().to_owned();
            }
            seen
        })
    };

    let mut submitted = HashSet::new();
    for chunk in 0..(JOBS / 100) {
        let items: Vec<String> = (0..100)
            .map(|i| {
                format!(
                    r#"{{"idempotencyKey":"f{}","trackingUrl":"https://trk.example/{}"}}"#,
                    chunk * 100 + i,
                    chunk * 100 + i
                )
            })
            .collect();
        let a = api
            .post(
                paths::LINKS_BATCH,
                &format!(r#"{{"jobs":[{}]}}"#, items.join(",")),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        for r in a.json["results"].as_array().unwrap() {
            assert_eq!(r["outcome"], "created");
            submitted.insert(r["job"]["jobId"].as_str().unwrap().to_owned());
        }
    }
    let mut agents = Vec::new();
    for _ in 0..AGENTS {
        let (_, device) = relay.device().await;
        agents.push(tokio::spawn(async move {
            let mut done = 0usize;
            let mut idle = 0;
            while idle < 2 {
                let polled = device.poll(4, 1).await;
                let tasks = polled.json["tasks"].as_array().unwrap().clone();
                if tasks.is_empty() {
                    idle += 1;
                }
                for t in tasks {
                    let r = device
                        .post_result(
                            t["taskId"].as_str().unwrap(),
                            t["leaseId"].as_str().unwrap(),
                            t["trackingUrl"].as_str().unwrap(),
                        )
                        .await;
                    assert_eq!(r.status, 200);
                    done += 1;
                }
            }
            done
        }));
    }
    let mut finished = 0;
    for a in agents {
        finished += a.await.unwrap();
    }
    assert_eq!(finished, JOBS, "each task done exactly once");

    let seen = tokio::time::timeout(Duration::from_secs(60), consumer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.len(), JOBS, "no job seen twice in one pass");
    let ids: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), JOBS, "every job exactly once");
    assert!(ids.iter().all(|id| submitted.contains(*id)));
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "in commit (cursor) order"
    );

    // A second pass from the start: the same jobs in the same order.
    let mut again = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let page = events(&api, &format!("after={cursor}&limit=500")).await;
        let batch = page["events"].as_array().unwrap();
        if batch.is_empty() {
            break;
        }
        again.extend(batch.iter().map(|e| {
            (
                e["cursor"].as_str().unwrap().parse::<u64>().unwrap(),
                e["job"]["jobId"].as_str().unwrap().to_owned(),
            )
        }));
        cursor = page["nextCursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(again, seen);
}
