//! Webhook deliveries against real receivers on loopback (protocol.md §3.12):
//! signed with the key's own secret, retried through outages, 429 and 503
//! with `Retry-After`, stopped by other 4xx, and never sent where the address
//! guard refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use std::time::Duration;

use common::receiver::{Receiver, Reply, free_port};
use common::{Client, TestRelay};
use link_peeler_relay::admin::{self, CreatedKey};
use link_peeler_wire::protocol::paths;
use link_peeler_wire::signing::SignedHeaders;
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(20);

/// A relay whose deliveries may reach 127.0.0.1 (only), retrying fast.
async fn relay() -> TestRelay {
    TestRelay::start_with(|c| {
        c.webhook_allow_networks = vec!["127.0.0.1/32".parse().unwrap()];
        c.webhook_retry_base = Duration::from_millis(100);
        c.webhook_timeout = Duration::from_secs(2);
    })
    .await
}

fn key_with_webhook(relay: &TestRelay, url: &str) -> CreatedKey {
    let key = relay.key();
    assert!(admin::set_webhook(&relay.db, &key.key_id, Some(url)).unwrap());
    key
}

/// Submits a job and has a real device finish it; returns the job id.
async fn finish_job(relay: &TestRelay, api: &Client, idem: &str) -> String {
    let (_, device) = relay.device().await;
    let s = api.submit(idem, "https://trk.example/a").await;
    assert_eq!(s.status, 202, "{s:?}");
    let polled = device.poll(1, 5).await;
    let task = &polled.json["tasks"][0];
    let r = device
        .post_result(
            task["taskId"].as_str().unwrap(),
            task["leaseId"].as_str().unwrap(),
            "https://trk.example/a",
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    s.json["jobId"].as_str().unwrap().to_owned()
}

/// The job's `webhook` object once `done(webhook)` holds; panics after PATIENCE.
async fn webhook_until(api: &Client, job_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = std::time::Instant::now() + PATIENCE;
    loop {
        let g = api.get(&paths::job(job_id)).await;
        assert_eq!(g.status, 200, "{g:?}");
        if done(&g.json["webhook"]) {
            return g.json["webhook"].clone();
        }
        assert!(
            std::time::Instant::now() < until,
            "webhook state never matched: {}",
            g.json["webhook"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |w| w["state"] == s
}

#[tokio::test]
async fn a_finished_job_is_posted_signed_with_the_keys_own_secret() {
    let relay = relay().await;
    let receiver = Receiver::start(vec![]).await;
    let key = key_with_webhook(&relay, &receiver.url());
    let api = relay.api(&key);
    let job_id = finish_job(&relay, &api, "w-1").await;

    let hits = receiver.wait_hits(1, PATIENCE).await;
    let hit = &hits[0];
    assert_eq!(hit.header("x-link-peeler-event"), "job.done");
    assert_eq!(hit.header("content-type"), "application/json");
    let delivery = hit.header("x-link-peeler-delivery").to_owned();
    assert!(
        delivery.starts_with("whd_") && delivery.len() == 28,
        "{delivery}"
    );
    // The integrator verifies with the code it signs requests with.
    let signed = SignedHeaders::from_headers(&hit.headers).unwrap();
    assert_eq!(signed.key_id, key.key_id);
    signed.verify(key.secret.as_bytes(), &hit.body).unwrap();
    assert!(
        signed.verify(b"lp_sk_live_wrong", &hit.body).is_err(),
        "the check can fail"
    );
    let body = hit.json();
    assert_eq!(body["jobId"], job_id.as_str());
    assert_eq!(body["status"], "done");
    assert_eq!(body["result"]["finalUrl"], "https://trk.example/a");
    assert!(body.get("webhook").is_none(), "{body}");

    let w = webhook_until(&api, &job_id, state_is("delivered")).await;
    assert_eq!(w["deliveryId"], delivery.as_str());
    assert_eq!(w["event"], "job.done");
    assert_eq!(w["attempts"], 1);
    assert_eq!(w["lastStatus"], 200);
    assert!(w["lastError"].is_null());
    assert!(w["nextAttemptAt"].is_null());
    // Listing and the feed show the same delivery state.
    let listed = api.get("/api/links/jobs?status=done").await;
    assert_eq!(listed.json["jobs"][0]["webhook"]["state"], "delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 1, "delivered once");
    let (status, _, text) = relay.ops_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"relay_webhook_deliveries{state="delivered"} 1"#)
            && text.contains(r#"relay_webhook_deliveries{state="pending"} 0"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_delivery_when_it_comes_back() {
    let relay = relay().await;
    let addr = free_port();
    let url = format!("http://{addr}/hooks");
    let key = key_with_webhook(&relay, &url);
    let api = relay.api(&key);
    let job_id = finish_job(&relay, &api, "w-down").await;

    // Nothing listens: attempts fail and are retried.
    let w = webhook_until(&api, &job_id, |w| {
        w["state"] == "pending" && w["attempts"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert!(w["lastStatus"].is_null());
    assert!(!w["lastError"].as_str().unwrap().is_empty(), "{w}");
    assert!(w["nextAttemptAt"].is_string());

    let receiver = Receiver::start_on(addr, vec![]).await;
    let hits = receiver.wait_hits(1, PATIENCE).await;
    assert_eq!(
        hits[0].header("x-link-peeler-delivery"),
        w["deliveryId"].as_str().unwrap()
    );
    let w = webhook_until(&api, &job_id, state_is("delivered")).await;
    assert!(w["attempts"].as_u64().unwrap() >= 3, "{w}");
}

#[tokio::test]
async fn retry_after_from_503_and_429_is_honoured_with_the_same_delivery_id() {
    let relay = relay().await;
    let receiver = Receiver::start(vec![
        Reply::Status(503, Some("2")),
        Reply::Status(429, Some("1")),
    ])
    .await;
    let key = key_with_webhook(&relay, &receiver.url());
    let api = relay.api(&key);
    let job_id = finish_job(&relay, &api, "w-ra").await;

    let hits = receiver.wait_hits(3, PATIENCE).await;
    // Retry-After is a floor on the wait: never earlier (a lower bound, not a speed claim).
    assert!(
        hits[1].at - hits[0].at >= Duration::from_millis(1900),
        "{:?}",
        hits[1].at - hits[0].at
    );
    assert!(hits[2].at - hits[1].at >= Duration::from_millis(900));
    let ids: Vec<&str> = hits
        .iter()
        .map(|h| h.header("x-link-peeler-delivery"))
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let nonces: std::collections::HashSet<&str> = hits
        .iter()
        .map(|h| h.header("x-link-peeler-nonce"))
        .collect();
    assert_eq!(nonces.len(), 3, "a fresh nonce on every attempt");
    let w = webhook_until(&api, &job_id, state_is("delivered")).await;
    assert_eq!(w["attempts"], 3);
}

#[tokio::test]
async fn other_4xx_and_redirects_stop_the_delivery_as_rejected() {
    for (reply, status) in [
        (Reply::Status(410, None), 410),
        (
            Reply::Status(302, Some("http://127.0.0.1:9/elsewhere")),
            302,
        ),
    ] {
        let relay = relay().await;
        let receiver = Receiver::start(vec![reply]).await;
        let key = key_with_webhook(&relay, &receiver.url());
        let api = relay.api(&key);
        let job_id = finish_job(&relay, &api, "w-4xx").await;
        let w = webhook_until(&api, &job_id, state_is("rejected")).await;
        assert_eq!(w["lastStatus"], status);
        assert_eq!(w["attempts"], 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            receiver.hits().len(),
            1,
            "not retried, redirect not followed"
        );
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_cut_at_the_attempt_timeout_and_retried() {
    let relay = relay().await;
    let receiver = Receiver::start(vec![Reply::Hang]).await;
    let key = key_with_webhook(&relay, &receiver.url());
    let api = relay.api(&key);
    let job_id = finish_job(&relay, &api, "w-hang").await;
    let w = webhook_until(&api, &job_id, state_is("delivered")).await;
    assert_eq!(w["attempts"], 2);
    assert_eq!(receiver.hits().len(), 2);
}

#[tokio::test]
async fn refused_addresses_are_never_contacted() {
    let relay = relay().await;
    // A receiver really listens on 127.0.0.2, outside the opened 127.0.0.1/32:
    // it must see nothing.
    let trap = Receiver::start_on("127.0.0.2:0".parse().unwrap(), vec![]).await;
    for url in [
        format!("http://127.0.0.2:{}/hooks", trap.addr.port()),
        format!("http://localhost:{}/hooks", trap.addr.port()),
        format!("http://[::ffff:127.0.0.2]:{}/hooks", trap.addr.port()),
        "http://169.254.169.254/latest/meta-data".to_owned(),
    ] {
        let key = key_with_webhook(&relay, &url);
        let api = relay.api(&key);
        let job_id = finish_job(&relay, &api, "w-ssrf").await;
        let w = webhook_until(&api, &job_id, state_is("refused")).await;
        assert_eq!(w["attempts"], 1, "{url}");
        assert!(w["lastStatus"].is_null());
        let why = w["lastError"].as_str().unwrap();
        assert!(
            why.contains("loopback") || why.contains("link-local") || why.contains("localhost"),
            "{url}: {why}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(trap.hits().is_empty(), "the refused target was contacted");
}

#[tokio::test]
async fn a_job_that_fails_sends_job_failed() {
    let relay = TestRelay::start_with(|c| {
        c.webhook_allow_networks = vec!["127.0.0.1/32".parse().unwrap()];
        c.lease_duration = Duration::from_millis(300);
        c.max_lease_expiries = 1;
        c.maintenance_interval = Duration::from_millis(100);
    })
    .await;
    let receiver = Receiver::start(vec![]).await;
    let key = key_with_webhook(&relay, &receiver.url());
    let api = relay.api(&key);
    let (_, device) = relay.device().await;
    let s = api.submit("w-fail", "https://trk.example/a").await;
    let polled = device.poll(1, 5).await;
    assert_eq!(polled.json["tasks"].as_array().unwrap().len(), 1);
    // The device never answers: the one allowed lease expires.
    let hits = receiver.wait_hits(1, PATIENCE).await;
    assert_eq!(hits[0].header("x-link-peeler-event"), "job.failed");
    let body = hits[0].json();
    assert_eq!(body["jobId"], s.json["jobId"]);
    assert_eq!(body["status"], "failed");
    assert_eq!(body["error"]["code"], "agent_unavailable");
}

#[tokio::test]
async fn keys_without_a_webhook_queue_nothing_and_a_removed_url_stops_new_deliveries() {
    let relay = relay().await;
    let receiver = Receiver::start(vec![]).await;
    let key = key_with_webhook(&relay, &receiver.url());
    let api = relay.api(&key);
    let first = finish_job(&relay, &api, "w-a").await;
    webhook_until(&api, &first, state_is("delivered")).await;
    assert!(admin::set_webhook(&relay.db, &key.key_id, None).unwrap());
    let second = finish_job(&relay, &api, "w-b").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let g = api.get(&paths::job(&second)).await;
    assert_eq!(g.json["status"], "done");
    assert!(g.json.get("webhook").is_none(), "{}", g.json);
    assert_eq!(receiver.hits().len(), 1);
}

#[test]
fn webhook_urls_are_checked_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let key = admin::create_key(&db, &admin::NewKey::named("k")).unwrap();
    for bad in [
        "",
        "not a url",
        "/relative",
        "ftp://files.example/x",
        "https://user:pass@hooks.example/x",
        "https://hooks.example/x#frag",
        "http://",
        &format!("https://hooks.example/{}", "x".repeat(2048)),
    ] {
        let e = admin::set_webhook(&db, &key.key_id, Some(bad)).unwrap_err();
        assert!(e.to_string().contains("webhook URL"), "{bad:?}: {e}");
        let e = admin::create_key(
            &db,
            &admin::NewKey {
                webhook_url: Some(bad.to_owned()),
                ..admin::NewKey::named("k2")
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("webhook URL"), "{bad:?}: {e}");
    }
    assert!(!admin::set_webhook(&db, "lp_live_nosuchkey", Some("https://h.example/")).unwrap());
    assert!(admin::set_webhook(&db, &key.key_id, Some("https://hooks.example/lp?x=1")).unwrap());
    let listed = admin::list_keys(&db).unwrap();
    assert_eq!(
        listed[0].webhook_url.as_deref(),
        Some("https://hooks.example/lp?x=1")
    );
}
