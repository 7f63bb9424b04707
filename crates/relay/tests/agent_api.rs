//! The agent side of the relay: enrollment, long-poll, leases, results (protocol.md §4).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use std::time::Duration;

use common::{TestRelay, result_json};
use link_peeler_relay::admin;
use link_peeler_wire::protocol::paths;

/// A hang guard, not a timing assertion: generous bounds so a broken wake-up fails instead of hanging.
const GUARD: Duration = Duration::from_secs(20);

async fn short_leases() -> TestRelay {
    TestRelay::start_with(|c| {
        c.lease_duration = Duration::from_millis(400);
        c.maintenance_interval = Duration::from_millis(50);
    })
    .await
}

#[tokio::test]
async fn enrollment_codes_are_single_use_and_checked() {
    let relay = TestRelay::start().await;
    let code = admin::create_enrollment_code(&relay.db, "laptop").unwrap();
    let body = format!(
        r#"{{"code":"{}","name":"laptop-7","platform":"linux","version":"0.1.0"}}"#,
        code.code.to_lowercase()
    );
    let a = relay
        .raw_post(paths::AGENT_ENROLL, &[], body.clone().into_bytes())
        .await;
    assert_eq!(a.status, 200, "codes are case-insensitive: {a:?}");
    assert!(a.json["deviceId"].as_str().unwrap().starts_with("dev_"));
    assert!(a.json["deviceSecret"].as_str().unwrap().len() >= 32);
    let again = relay
        .raw_post(paths::AGENT_ENROLL, &[], body.into_bytes())
        .await;
    assert_eq!(
        (again.status, again.code()),
        (403, "forbidden"),
        "{again:?}"
    );
    assert!(
        again.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used")
    );

    let wrong = relay
        .raw_post(
            paths::AGENT_ENROLL,
            &[],
            br#"{"code":"AAAA-BBBB-CCCC"}"#.to_vec(),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (403, "forbidden"));

    let expired = admin::create_enrollment_code_with_ttl(&relay.db, "old", 1).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let a = relay
        .raw_post(
            paths::AGENT_ENROLL,
            &[],
            format!(r#"{{"code":"{}"}}"#, expired.code).into_bytes(),
        )
        .await;
    assert_eq!((a.status, a.code()), (403, "forbidden"));
    assert!(
        a.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    for bad in [
        &b"nope"[..],
        br#"{"name":"x"}"#,
        br#"{"code":""}"#,
        br#"{"code":"x","extra":1}"#,
    ] {
        let a = relay.raw_post(paths::AGENT_ENROLL, &[], bad.to_vec()).await;
        assert_eq!(a.status, 400, "{}: {a:?}", String::from_utf8_lossy(bad));
    }
    let devices = admin::list_devices(&relay.db).unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].name, "laptop-7");
}

#[tokio::test]
async fn an_empty_poll_answers_after_wait_seconds() {
    let relay = TestRelay::start().await;
    let (_, device) = relay.device().await;
    let a = tokio::time::timeout(GUARD, device.poll(4, 1))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["tasks"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_waiting_poll_wakes_when_a_job_arrives() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (creds, device) = relay.device().await;
    let poll = tokio::spawn(async move { device.poll(4, 30).await });
    // Wait until the poll is held open (the gauge says so), then submit.
    let mut held = false;
    for _ in 0..200 {
        if relay
            .ops_get(paths::METRICS)
            .await
            .2
            .contains("relay_poll_waiters 1")
        {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(held, "the poll was never held open");
    let job = api.submit("wake", "https://trk.example/w").await;
    // The poll was asked to wait 30 s; it must come back with the task long before that.
    let a = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("poll did not wake")
        .unwrap();
    let tasks = a.json["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{a:?}");
    assert_eq!(tasks[0]["taskId"], job.json["jobId"]);
    assert_eq!(tasks[0]["trackingUrl"], "https://trk.example/w");
    assert_eq!(tasks[0]["attempt"], 1);
    assert!(tasks[0]["leaseId"].as_str().unwrap().starts_with("lease_"));
    assert!(tasks[0]["leaseExpiresAt"].as_str().unwrap().ends_with('Z'));
    let g = api
        .get(&paths::job(job.json["jobId"].as_str().unwrap()))
        .await;
    assert_eq!(g.json["status"], "leased");
    assert!(!creds.device_id.is_empty());
}

#[tokio::test]
async fn two_agents_never_hold_the_same_task() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    for i in 0..20 {
        assert_eq!(
            api.submit(&format!("t{i}"), &format!("https://trk.example/{i}"))
                .await
                .status,
            202
        );
    }
    let (_, a) = relay.device().await;
    let (_, b) = relay.device().await;
    let mut seen = std::collections::HashSet::new();
    loop {
        let (ra, rb) = tokio::join!(a.poll(3, 0), b.poll(3, 0));
        let mut got = 0;
        for r in [ra, rb] {
            for t in r.json["tasks"].as_array().unwrap() {
                got += 1;
                assert!(
                    seen.insert(t["taskId"].as_str().unwrap().to_owned()),
                    "task handed out twice: {t}"
                );
            }
        }
        if got == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 20);
}

#[tokio::test]
async fn poll_requests_are_validated() {
    let relay = TestRelay::start().await;
    let (_, device) = relay.device().await;
    for body in [
        r#"{"capacity":0}"#,
        r#"{"capacity":65}"#,
        r#"{"capacity":1,"waitSeconds":31}"#,
        r#"{"capacity":-1}"#,
        r#"{"waitSeconds":1}"#,
        r#"{"capacity":"4"}"#,
    ] {
        let a = device.post(paths::AGENT_POLL, body).await;
        assert_eq!(
            (a.status, a.code()),
            (400, "invalid_request"),
            "{body}: {a:?}"
        );
    }
    let a = device.post(paths::AGENT_POLL, "{").await;
    assert_eq!(a.code(), "invalid_json");
}

#[tokio::test]
async fn results_are_stored_idempotently_with_resolved_by() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (creds, device) = relay.device().await;
    let job = api.submit("r1", "https://trk.example/r").await;
    let task = device.poll(1, 0).await.json["tasks"][0].clone();
    let path = paths::task_result(task["taskId"].as_str().unwrap());
    let post = format!(
        r#"{{"leaseId":"{}","result":{}}}"#,
        task["leaseId"].as_str().unwrap(),
        result_json("https://trk.example/r")
    );
    assert_eq!(device.post(&path, &post).await.status, 200);
    assert_eq!(
        device.post(&path, &post).await.status,
        200,
        "posting the same result again is fine"
    );
    let g = api
        .get(&paths::job(job.json["jobId"].as_str().unwrap()))
        .await;
    assert_eq!(g.json["status"], "done");
    assert_eq!(g.json["resolvedBy"], creds.device_id.as_str());
    assert_eq!(g.json["result"]["conclusion"], "resolved");
    assert_eq!(g.json["result"]["hops"][0]["status"], 200);
    assert_eq!(g.json["attempts"], 1);

    // Wrong lease id, unknown task, malformed result.
    let wrong = format!(
        r#"{{"leaseId":"lease_other","result":{}}}"#,
        result_json("https://trk.example/r")
    );
    assert_eq!(device.post(&path, &wrong).await.code(), "lease_lost");
    assert_eq!(
        device
            .post(&paths::task_result("job_nope"), &post)
            .await
            .code(),
        "not_found"
    );
    for bad in [
        r#"{"leaseId":"x"}"#,
        r#"{"leaseId":"x","result":{"conclusion":"great"}}"#,
        "[]",
    ] {
        let a = device.post(&path, bad).await;
        assert_eq!(
            (a.status, a.code()),
            (400, "invalid_request"),
            "{bad}: {a:?}"
        );
    }
}

/// An agent whose user's destination rules refuse a link posts it back,
/// unrequested, as `refused_by_policy` (protocol.md §5.3): stored and shown.
#[tokio::test]
async fn a_result_refused_by_the_agents_policy_is_accepted() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (_, device) = relay.device().await;
    let job = api.submit("p1", "https://ads.example/x").await;
    let task = device.poll(1, 0).await.json["tasks"][0].clone();
    let path = paths::task_result(task["taskId"].as_str().unwrap());
    let post = format!(
        r#"{{"leaseId":"{}","result":{{"inputUrl":"https://ads.example/x","finalUrl":"https://ads.example/x","conclusion":"refused_by_policy","finalStatus":null,"redirectCount":0,"elapsedMs":0,"error":"ads.example is on this computer's deny list","hops":[{{"url":"https://ads.example/x","status":null,"redirectKind":null,"location":null,"elapsedMs":0,"remoteAddr":null}}]}}}}"#,
        task["leaseId"].as_str().unwrap(),
    );
    let a = device.post(&path, &post).await;
    assert_eq!(a.status, 200, "{a:?}");
    let g = api
        .get(&paths::job(job.json["jobId"].as_str().unwrap()))
        .await;
    assert_eq!(g.json["status"], "done");
    assert_eq!(g.json["result"]["conclusion"], "refused_by_policy");
    assert_eq!(
        g.json["result"]["hops"][0]["status"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn results_with_form_hops_methods_and_notes_are_accepted_and_returned() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (_creds, device) = relay.device().await;
    let job = api.submit("f1", "https://trk.example/f").await;
    let task = device.poll(1, 0).await.json["tasks"][0].clone();
    let path = paths::task_result(task["taskId"].as_str().unwrap());
    let lease = task["leaseId"].as_str().unwrap();
    let result = |hop0: &str| {
        format!(
            r#"{{"leaseId":"{lease}","result":{{"inputUrl":"https://trk.example/f","finalUrl":"https://shop.example/","conclusion":"resolved","finalStatus":200,"redirectCount":2,"elapsedMs":9,"error":null,"hops":[{hop0},{{"url":"https://trk.example/go","status":303,"redirectKind":"location","location":"https://shop.example/","elapsedMs":3,"remoteAddr":null,"method":"POST"}},{{"url":"https://shop.example/","status":200,"redirectKind":null,"location":null,"elapsedMs":3,"remoteAddr":null}}]}}}}"#
        )
    };
    for bad in [
        r#"{"url":"https://trk.example/f","status":200,"redirectKind":"teleport","location":"https://trk.example/go","elapsedMs":3}"#.to_string(),
        r#"{"url":"https://trk.example/f","status":200,"redirectKind":"form","location":"https://trk.example/go","elapsedMs":3,"method":5}"#.to_string(),
        r#"{"url":"https://trk.example/f","status":200,"redirectKind":"form","location":"https://trk.example/go","elapsedMs":3,"note":[]}"#.to_string(),
        r#"{"url":"https://trk.example/f","status":200,"redirectKind":"form","location":"https://trk.example/go","elapsedMs":3,"method":"DELETE"}"#.to_string(),
        r#"{"url":"https://trk.example/f","status":200,"redirectKind":"form","location":"https://trk.example/go","elapsedMs":3,"note":"two\nlines"}"#.to_string(),
        format!(
            r#"{{"url":"https://trk.example/f","status":200,"redirectKind":"form","location":"https://trk.example/go","elapsedMs":3,"note":"{}"}}"#,
            "n".repeat(513)
        ),
    ] {
        let a = device.post(&path, &result(&bad)).await;
        assert_eq!(
            (a.status, a.code()),
            (400, "invalid_request"),
            "{bad}: {a:?}"
        );
    }
    let good = r#"{"url":"https://trk.example/f","status":200,"redirectKind":"form","location":"https://trk.example/go","elapsedMs":3,"remoteAddr":null,"note":"the page's scripts were stopped: time budget exhausted"}"#;
    assert_eq!(device.post(&path, &result(good)).await.status, 200);
    let g = api
        .get(&paths::job(job.json["jobId"].as_str().unwrap()))
        .await;
    let hops = &g.json["result"]["hops"];
    assert_eq!(hops[0]["redirectKind"], "form");
    assert_eq!(
        hops[0]["note"],
        "the page's scripts were stopped: time budget exhausted"
    );
    assert!(hops[0].get("method").is_none(), "a GET hop has no method");
    assert_eq!(hops[1]["method"], "POST");
    assert!(hops[2].get("note").is_none());
}

#[tokio::test]
async fn an_expired_lease_is_requeued_and_the_late_result_is_lease_lost() {
    let relay = short_leases().await;
    let api = relay.api(&relay.key());
    let (_, slow) = relay.device().await;
    let (_, fast) = relay.device().await;
    let job = api.submit("exp", "https://trk.example/e").await;
    let first = slow.poll(1, 0).await.json["tasks"][0].clone();
    assert_eq!(first["attempt"], 1);
    // The slow agent never answers; the task comes back to the queue and the fast agent gets it.
    let second = tokio::time::timeout(GUARD, async {
        loop {
            let t = fast.poll(1, 5).await.json["tasks"][0].clone();
            if !t.is_null() {
                return t;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(second["taskId"], first["taskId"]);
    assert_eq!(second["attempt"], 2);
    assert_ne!(second["leaseId"], first["leaseId"]);
    let late = format!(
        r#"{{"leaseId":"{}","result":{}}}"#,
        first["leaseId"].as_str().unwrap(),
        result_json("https://trk.example/e")
    );
    let a = slow
        .post(
            &paths::task_result(first["taskId"].as_str().unwrap()),
            &late,
        )
        .await;
    assert_eq!((a.status, a.code()), (409, "lease_lost"), "{a:?}");
    let on_time = format!(
        r#"{{"leaseId":"{}","result":{}}}"#,
        second["leaseId"].as_str().unwrap(),
        result_json("https://trk.example/e")
    );
    assert_eq!(
        fast.post(
            &paths::task_result(second["taskId"].as_str().unwrap()),
            &on_time
        )
        .await
        .status,
        200
    );
    let g = api
        .get(&paths::job(job.json["jobId"].as_str().unwrap()))
        .await;
    assert_eq!(g.json["status"], "done");
    assert_eq!(g.json["attempts"], 2);
}

#[tokio::test]
async fn three_expired_leases_fail_the_job_as_agent_unavailable() {
    let relay = short_leases().await;
    let api = relay.api(&relay.key());
    let (_, device) = relay.device().await;
    let job = api.submit("dead", "https://trk.example/d").await;
    let id = job.json["jobId"].as_str().unwrap().to_owned();
    let mut leases = 0;
    let status = tokio::time::timeout(GUARD, async {
        loop {
            let p = device.poll(1, 1).await;
            leases += p.json["tasks"].as_array().unwrap().len();
            let g = api.get(&paths::job(&id)).await;
            if g.json["status"] == "failed" {
                return g;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(leases, 3);
    assert!(status.json["result"].is_null());
    assert_eq!(status.json["error"]["code"], "agent_unavailable");
    assert_eq!(status.json["attempts"], 3);
    // A failed job frees its queue slot and is never handed out again.
    assert_eq!(
        device.poll(1, 0).await.json["tasks"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn a_revoked_device_is_refused_on_its_next_request() {
    let relay = TestRelay::start().await;
    let (creds, device) = relay.device().await;
    assert_eq!(device.poll(1, 0).await.status, 200);
    assert!(admin::revoke_device(&relay.db, &creds.device_id).unwrap());
    let a = device.poll(1, 0).await;
    assert_eq!((a.status, a.code()), (401, "revoked_key"));
    let listed = admin::list_devices(&relay.db).unwrap();
    assert!(listed[0].revoked_at.is_some());
    assert!(listed[0].last_seen_at.is_some());
}

#[tokio::test]
async fn shutdown_answers_held_polls_at_once() {
    let relay = TestRelay::start().await;
    let (_, device) = relay.device().await;
    let poll = tokio::spawn(async move { device.poll(1, 30).await });
    for _ in 0..200 {
        if relay
            .ops_get(paths::METRICS)
            .await
            .2
            .contains("relay_poll_waiters 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let TestRelay { relay: running, .. } = relay;
    tokio::time::timeout(GUARD, running.shutdown())
        .await
        .expect("drained")
        .unwrap();
    let a = tokio::time::timeout(GUARD, poll).await.unwrap().unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.json["tasks"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn metrics_expose_routes_waiters_jobs_and_failures() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    api.submit("m1", "https://trk.example/m").await;
    let body = relay.ops_get(paths::METRICS).await.2;
    for needle in [
        r#"relay_http_requests_total{route="/api/links/fetch",status="202"} 1"#,
        "relay_poll_waiters 0",
        r#"relay_jobs{state="queued"} 1"#,
        r#"relay_jobs{state="done"} 0"#,
        r#"relay_signature_failures_total{code="replayed_nonce"} 0"#,
    ] {
        assert!(body.contains(needle), "missing {needle} in\n{body}");
    }
}
