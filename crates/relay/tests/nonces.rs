//! Every verified nonce is spent, whatever the answer (protocol.md §2.7).
//!
//! Each test makes the relay refuse a correctly signed request after its
//! signature verified, then sends the identical bytes again once the reason
//! for the refusal is gone (the queue drained, the quota raised, the
//! idempotency key freed; or another route, since the method, path and query
//! are not signed). The second answer must be `401 replayed_nonce`, never a
//! success: a captured request is good for one answer only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use common::{Captured, Client, TestRelay};
use link_peeler_wire::protocol::paths;

fn fetch_body(idem: &str, url: &str) -> String {
    format!(r#"{{"idempotencyKey":"{idem}","trackingUrl":"{url}"}}"#)
}

fn assert_replayed(a: &common::Answer) {
    assert_eq!((a.status, a.code()), (401, "replayed_nonce"), "{a:?}");
}

/// Leases the one queued task to `device` and posts its result, so the job is `done`.
async fn finish_one(device: &Client) {
    let p = device.poll(1, 0).await;
    let task = &p.json["tasks"][0];
    let done = device
        .post_result(
            task["taskId"].as_str().unwrap(),
            task["leaseId"].as_str().unwrap(),
            "https://trk.example/done",
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
}

/// Submits `url` under `idem` and returns the job id.
async fn job(api: &Client, idem: &str, url: &str) -> String {
    let a = api.submit(idem, url).await;
    assert_eq!(a.status, 202, "{a:?}");
    a.json["jobId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_400_after_the_signature_verified_spends_the_nonce() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let id = job(&api, "k1", "https://trk.example/1").await;

    // The query is not signed: refused for its empty idempotencyKey…
    let lookup = api.capture("");
    let a = api
        .send_get(&format!("{}?idempotencyKey=", paths::LINKS_JOBS), &lookup)
        .await;
    assert_eq!((a.status, a.code()), (400, "invalid_request"), "{a:?}");
    // …the same request with a query added must not then succeed.
    let a = api
        .send_get(&format!("{}?idempotencyKey=k1", paths::LINKS_JOBS), &lookup)
        .await;
    assert_replayed(&a);

    // An empty body is not a job (invalid_json), but it is a valid signed GET.
    let empty = api.capture("");
    let a = api.send_post(paths::LINKS_FETCH, &empty).await;
    assert_eq!((a.status, a.code()), (400, "invalid_json"), "{a:?}");
    assert_replayed(&api.send_get(&paths::job(&id), &empty).await);

    // A poll is the wrong shape for a result post (invalid_request)…
    let (_, device) = relay.device().await;
    let poll = device.capture(r#"{"capacity":1,"waitSeconds":0}"#);
    let a = device.send_post(&paths::task_result(&id), &poll).await;
    assert_eq!((a.status, a.code()), (400, "invalid_request"), "{a:?}");
    // …and must not then lease the job as a poll.
    assert_replayed(&device.send_post(paths::AGENT_POLL, &poll).await);
    assert_eq!(api.get(&paths::job(&id)).await.json["status"], "queued");
}

#[tokio::test]
async fn a_403_spends_the_nonce() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (_, device) = relay.device().await;
    let id = job(&api, "k1", "https://trk.example/1").await;

    // An API key on an agent route, then the same bytes as a read of its own job.
    let wrong_route = api.capture("");
    let a = api.send_post(paths::AGENT_POLL, &wrong_route).await;
    assert_eq!((a.status, a.code()), (403, "forbidden"), "{a:?}");
    assert_replayed(&api.send_get(&paths::job(&id), &wrong_route).await);

    // A device on a links route, then the same bytes as a poll that would lease the job.
    let poll = device.capture(r#"{"capacity":1,"waitSeconds":0}"#);
    let a = device.send_post(paths::LINKS_FETCH, &poll).await;
    assert_eq!((a.status, a.code()), (403, "forbidden"), "{a:?}");
    assert_replayed(&device.send_post(paths::AGENT_POLL, &poll).await);
    let g = api.get(&paths::job(&id)).await;
    assert_eq!(g.json["status"], "queued", "the replay leased nothing");
}

/// A result post refused with 404 (no such task) or 409 (another task's
/// lease) must not be accepted when the same bytes go to the right task.
#[tokio::test]
async fn a_404_or_409_from_a_result_post_spends_the_nonce() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (_, device) = relay.device().await;
    let first = job(&api, "k1", "https://trk.example/1").await;
    let second = job(&api, "k2", "https://trk.example/2").await;
    let tasks = device.poll(2, 0).await.json["tasks"].clone();
    let lease_of = |id: &str| {
        tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["taskId"] == id)
            .unwrap()["leaseId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let post = |lease: &str| {
        device.capture(&format!(
            r#"{{"leaseId":"{lease}","result":{}}}"#,
            common::result_json("https://trk.example/1")
        ))
    };

    let to_nowhere = post(&lease_of(&first));
    let a = device
        .send_post(&paths::task_result("job_doesnotexist"), &to_nowhere)
        .await;
    assert_eq!((a.status, a.code()), (404, "not_found"), "{a:?}");
    assert_replayed(
        &device
            .send_post(&paths::task_result(&first), &to_nowhere)
            .await,
    );

    let to_other_task = post(&lease_of(&second));
    let a = device
        .send_post(&paths::task_result(&first), &to_other_task)
        .await;
    assert_eq!((a.status, a.code()), (409, "lease_lost"), "{a:?}");
    assert_replayed(
        &device
            .send_post(&paths::task_result(&second), &to_other_task)
            .await,
    );

    for id in [&first, &second] {
        let g = api.get(&paths::job(id)).await;
        assert_eq!(
            g.json["status"], "leased",
            "no replay stored a result: {g:?}"
        );
    }
}

#[tokio::test]
async fn a_422_spends_the_nonce() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (_, device) = relay.device().await;
    job(&api, "k1", "https://trk.example/original").await;
    let conflicting = api.capture(&fetch_body("k1", "https://trk.example/other"));
    let a = api.send_post(paths::LINKS_FETCH, &conflicting).await;
    assert_eq!((a.status, a.code()), (422, "idempotency_conflict"), "{a:?}");

    // The job finishes and retention deletes it: the idempotency key is free again.
    finish_one(&device).await;
    relay.sql("DELETE FROM jobs WHERE status = 'done'");
    assert_replayed(&api.send_post(paths::LINKS_FETCH, &conflicting).await);
    let fresh = api.submit("k1", "https://trk.example/other").await;
    assert_eq!(
        fresh.status, 202,
        "the key is free for a freshly signed request: {fresh:?}"
    );
}

#[tokio::test]
async fn a_429_queue_full_spends_the_nonce() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key_with(100, 1));
    let (_, device) = relay.device().await;
    job(&api, "k1", "https://trk.example/1").await;
    let second = api.capture(&fetch_body("k2", "https://trk.example/2"));
    let a = api.send_post(paths::LINKS_FETCH, &second).await;
    assert_eq!((a.status, a.code()), (429, "queue_full"), "{a:?}");

    finish_one(&device).await;
    assert_replayed(&api.send_post(paths::LINKS_FETCH, &second).await);
    assert_eq!(api.submit("k2", "https://trk.example/2").await.status, 202);
}

#[tokio::test]
async fn a_429_quota_exceeded_spends_the_nonce() {
    let relay = TestRelay::start().await;
    let key = relay.key_with(1, 100);
    let api = relay.api(&key);
    job(&api, "k1", "https://trk.example/1").await;
    let second = api.capture(&fetch_body("k2", "https://trk.example/2"));
    let a = api.send_post(paths::LINKS_FETCH, &second).await;
    assert_eq!((a.status, a.code()), (429, "quota_exceeded"), "{a:?}");

    // As if the UTC day had turned: the quota allows more again.
    relay.sql(&format!(
        "UPDATE api_keys SET daily_limit = 10 WHERE id = '{}'",
        key.key_id
    ));
    assert_replayed(&api.send_post(paths::LINKS_FETCH, &second).await);
    assert_eq!(api.submit("k2", "https://trk.example/2").await.status, 202);
}

/// A forged request still burns nothing: only a verified signature spends a nonce.
#[tokio::test]
async fn a_request_refused_before_its_signature_verified_keeps_its_nonce() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let genuine = api.capture(&fetch_body("k1", "https://trk.example/1"));
    let mut forged: Captured = genuine.clone();
    forged.body = fetch_body("k1", "https://evil.example/").into_bytes();
    let a = api.send_post(paths::LINKS_FETCH, &forged).await;
    assert_eq!((a.status, a.code()), (401, "bad_signature"), "{a:?}");
    let a = api.send_post(paths::LINKS_FETCH, &genuine).await;
    assert_eq!(a.status, 202, "{a:?}");
    assert_replayed(&api.send_post(paths::LINKS_FETCH, &genuine).await);
}
