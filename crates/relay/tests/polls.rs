//! Long-polls at fleet scale and immediate revocation (protocol.md §4.2–§4.3).
//!
//! A new task wakes one held poll, not all of them (the writer's work per
//! job stays constant however many agents wait); a device holds at most a
//! few polls at once; a revoked device or API key is refused from the moment
//! the admin command returns, held polls included.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Answer, Client, TestRelay};
use link_peeler_relay::admin;
use link_peeler_wire::protocol::paths;
use tokio::task::JoinHandle;

/// A hang guard, not a timing assertion.
const GUARD: Duration = Duration::from_secs(20);

/// Claims the writer has run so far.
fn claims(relay: &TestRelay) -> u64 {
    relay
        .relay
        .store()
        .writer_stats()
        .claims
        .load(Ordering::Relaxed)
}

fn task_ids(a: &Answer) -> Vec<String> {
    a.json["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("not a poll answer: {a:?}"))
        .iter()
        .map(|t| t["taskId"].as_str().unwrap().to_owned())
        .collect()
}

fn hold(device: &Client, capacity: u32) -> JoinHandle<Answer> {
    let device = device.clone();
    tokio::spawn(async move { device.poll(capacity, 30).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_new_job_wakes_one_of_a_hundred_held_polls() {
    const DEVICES: usize = 100;
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let mut polls = Vec::new();
    for _ in 0..DEVICES {
        let (_, device) = relay.device().await;
        polls.push(hold(&device, 1));
    }
    relay.wait_for_held_polls(DEVICES).await;

    let before = claims(&relay);
    let first = api.submit("one", "https://trk.example/one").await;
    assert_eq!(first.status, 202);
    // Exactly one poll answers, with the job.
    let mut answered = Vec::new();
    let deadline = tokio::time::Instant::now() + GUARD;
    while answered.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no poll got the job"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        answered = (0..polls.len())
            .filter(|&i| polls[i].is_finished())
            .collect();
    }
    // Give any needless wake-ups time to show up as claims or answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let claimed = claims(&relay) - before;
    eprintln!("one job, {DEVICES} held polls: {claimed} claims");
    assert!(
        claimed <= 3,
        "one job cost {claimed} claims with {DEVICES} polls held"
    );
    let answered: Vec<usize> = (0..polls.len())
        .filter(|&i| polls[i].is_finished())
        .collect();
    assert_eq!(answered.len(), 1, "only one poll answers");
    let got = polls.remove(answered[0]).await.unwrap();
    assert_eq!(task_ids(&got), [first.json["jobId"].as_str().unwrap()]);
    relay.wait_for_held_polls(DEVICES - 1).await;

    // Every other poll is still waiting, and each gets a later job.
    let before = claims(&relay);
    let mut jobs = std::collections::HashSet::new();
    for i in 0..DEVICES - 1 {
        let a = api
            .submit(&format!("later-{i}"), "https://trk.example/later")
            .await;
        assert_eq!(a.status, 202);
        jobs.insert(a.json["jobId"].as_str().unwrap().to_owned());
    }
    for p in polls {
        let a = tokio::time::timeout(GUARD, p).await.unwrap().unwrap();
        let ids = task_ids(&a);
        assert_eq!(ids.len(), 1, "{a:?}");
        assert!(jobs.remove(&ids[0]), "task {} handed out twice", ids[0]);
    }
    assert!(jobs.is_empty());
    let claimed = claims(&relay) - before;
    eprintln!("{} more jobs: {claimed} claims", DEVICES - 1);
    assert!(
        claimed <= 3 * (DEVICES as u64 - 1),
        "{claimed} claims for {} jobs",
        DEVICES - 1
    );
}

#[tokio::test]
async fn a_device_holds_at_most_four_polls_and_a_fifth_is_429_at_once() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (_, device) = relay.device().await;
    let (_, other) = relay.device().await;
    let held: Vec<_> = (0..4).map(|_| hold(&device, 1)).collect();
    relay.wait_for_held_polls(4).await;

    let fifth = device.capture(r#"{"capacity":1,"waitSeconds":30}"#);
    let a = tokio::time::timeout(
        Duration::from_secs(5),
        device.send_post(paths::AGENT_POLL, &fifth),
    )
    .await
    .expect("answered at once, not held");
    assert_eq!((a.status, a.code()), (429, "too_many_polls"), "{a:?}");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    // Another device is not limited by this one.
    let o = other.poll(1, 0).await;
    assert_eq!(o.status, 200, "{o:?}");

    // Once a held poll ends (a job takes one), the device may poll again.
    api.submit("k", "https://trk.example/k").await;
    let deadline = tokio::time::Instant::now() + GUARD;
    while !held.iter().any(|p| p.is_finished()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no poll got the job"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.wait_for_held_polls(3).await;
    let done: Vec<_> = held.into_iter().filter(|p| p.is_finished()).collect();
    assert_eq!(done.len(), 1);
    for p in done {
        let a = tokio::time::timeout(GUARD, p).await.unwrap().unwrap();
        assert_eq!(task_ids(&a).len(), 1, "{a:?}");
    }
    let a = device.poll(1, 0).await;
    assert_eq!(a.status, 200, "{a:?}");
    // The refused request stays spent.
    let a = device.send_post(paths::AGENT_POLL, &fifth).await;
    assert_eq!((a.status, a.code()), (401, "replayed_nonce"), "{a:?}");
}

/// Revokes with the real command line, from another process.
fn revoke_device(relay: &TestRelay, device_id: &str) {
    relay.admin_cli(&["devices", "revoke", device_id]);
}

#[tokio::test]
async fn a_device_revoked_while_its_poll_is_held_never_gets_the_task() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (revoked, device) = relay.device().await;
    let (_, other) = relay.device().await;
    // The revoked device waits first, so it is the first one a new task wakes.
    let held = hold(&device, 1);
    relay.wait_for_held_polls(1).await;
    let waiting = hold(&other, 1);
    relay.wait_for_held_polls(2).await;
    revoke_device(&relay, &revoked.device_id);

    let job = api.submit("k", "https://trk.example/k").await;
    let a = tokio::time::timeout(GUARD, held).await.unwrap().unwrap();
    assert_eq!((a.status, a.code()), (401, "revoked_key"), "{a:?}");
    let b = tokio::time::timeout(GUARD, waiting).await.unwrap().unwrap();
    assert_eq!(task_ids(&b), [job.json["jobId"].as_str().unwrap()]);

    let later = device.poll(1, 0).await;
    assert_eq!(
        (later.status, later.code()),
        (401, "revoked_key"),
        "{later:?}"
    );
}

#[tokio::test]
async fn a_held_poll_of_a_device_revoked_alone_ends_without_the_task() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (revoked, device) = relay.device().await;
    let held = hold(&device, 1);
    relay.wait_for_held_polls(1).await;
    revoke_device(&relay, &revoked.device_id);

    let job = api.submit("k", "https://trk.example/k").await;
    let a = tokio::time::timeout(GUARD, held).await.unwrap().unwrap();
    assert_eq!((a.status, a.code()), (401, "revoked_key"), "{a:?}");
    let g = api
        .get(&paths::job(job.json["jobId"].as_str().unwrap()))
        .await;
    assert_eq!(g.json["status"], "queued", "{g:?}");
    // Another device gets it.
    let (_, other) = relay.device().await;
    let b = other.poll(1, 0).await;
    assert_eq!(task_ids(&b), [job.json["jobId"].as_str().unwrap()]);
}

/// A task leased to a device that is then revoked goes back to the queue at
/// the next maintenance pass instead of waiting out its lease.
#[tokio::test]
async fn the_leases_of_a_revoked_device_return_to_the_queue() {
    let relay = TestRelay::start_with(|c| c.maintenance_interval = Duration::from_millis(50)).await;
    let api = relay.api(&relay.key());
    let (revoked, device) = relay.device().await;
    let (_, other) = relay.device().await;
    let job = api.submit("k", "https://trk.example/k").await;
    let id = job.json["jobId"].as_str().unwrap().to_owned();
    assert_eq!(task_ids(&device.poll(1, 0).await), [id.as_str()]);
    revoke_device(&relay, &revoked.device_id);
    let b = tokio::time::timeout(GUARD, other.poll(1, 10))
        .await
        .unwrap();
    assert_eq!(
        task_ids(&b),
        [id.as_str()],
        "requeued long before the 120 s lease ends"
    );
    assert_eq!(b.json["tasks"][0]["attempt"], 2);
}

#[tokio::test]
async fn an_api_key_is_refused_as_soon_as_keys_revoke_returns() {
    let relay = TestRelay::start().await;
    let key = relay.key();
    let api = relay.api(&key);
    // Warm every pooled read connection with this key first.
    for i in 0..8 {
        assert_eq!(
            api.submit(&format!("w{i}"), "https://trk.example/w")
                .await
                .status,
            202
        );
    }
    relay.admin_cli(&["keys", "revoke", &key.key_id]);
    let a = api.submit("after", "https://trk.example/after").await;
    assert_eq!((a.status, a.code()), (401, "revoked_key"), "{a:?}");
    let listed = admin::list_keys(&relay.db).unwrap();
    assert!(listed[0].revoked_at.is_some());
}
