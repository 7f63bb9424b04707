//! Job intake for external systems: validation, idempotency, quota, reads (protocol.md §3).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use std::sync::Arc;

use common::TestRelay;
use link_peeler_wire::protocol::paths;

#[tokio::test]
async fn a_new_job_is_202_and_readable_by_id_and_by_idempotency_key() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let body = r#"{"idempotencyKey":"row-17","trackingUrl":"https://trk.example/a1","source":"sheet","rowId":"17","options":{"maxHops":5,"userAgent":"UA/1"}}"#;
    let a = api.post(paths::LINKS_FETCH, body).await;
    assert_eq!(a.status, 202, "{a:?}");
    let job = &a.json;
    assert!(job["jobId"].as_str().unwrap().starts_with("job_"));
    assert_eq!(job["status"], "queued");
    assert_eq!(job["idempotencyKey"], "row-17");
    assert_eq!(job["source"], "sheet");
    assert_eq!(job["rowId"], "17");
    assert_eq!(job["attempts"], 0);
    assert!(job["result"].is_null());
    assert!(job["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(a.headers.get("idempotent-replayed").is_none());

    let id = job["jobId"].as_str().unwrap();
    let g = api.get(&paths::job(id)).await;
    assert_eq!(g.status, 200, "{g:?}");
    assert_eq!(g.json["jobId"], job["jobId"]);
    let f = api.get("/api/links/jobs?idempotencyKey=row-17").await;
    assert_eq!(f.status, 200, "{f:?}");
    assert_eq!(f.json["jobId"], job["jobId"]);
}

#[tokio::test]
async fn same_payload_replays_and_different_payload_conflicts() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let first = api
        .post(
            paths::LINKS_FETCH,
            r#"{"idempotencyKey":"k1","trackingUrl":"https://trk.example/a","source":"s"}"#,
        )
        .await;
    assert_eq!(first.status, 202);
    // Same payload, other whitespace and key order, explicit null: a replay.
    let again = api
        .post(paths::LINKS_FETCH, "{ \"source\": \"s\",\n \"rowId\": null, \"trackingUrl\": \"https://trk.example/a\", \"idempotencyKey\": \"k1\" }")
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.json["jobId"], first.json["jobId"]);
    // Different payload under the same key.
    let other = api
        .post(
            paths::LINKS_FETCH,
            r#"{"idempotencyKey":"k1","trackingUrl":"https://trk.example/b","source":"s"}"#,
        )
        .await;
    assert_eq!(
        (other.status, other.code()),
        (422, "idempotency_conflict"),
        "{other:?}"
    );
    // The same idempotency key under another API key is a separate job.
    let api2 = relay.api(&relay.key());
    let theirs = api2.submit("k1", "https://trk.example/b").await;
    assert_eq!(theirs.status, 202);
    assert_ne!(theirs.json["jobId"], first.json["jobId"]);
}

#[tokio::test]
async fn a_job_is_visible_only_to_its_own_key() {
    let relay = TestRelay::start().await;
    let mine = relay.api(&relay.key());
    let theirs = relay.api(&relay.key());
    let a = mine.submit("private", "https://trk.example/p").await;
    let id = a.json["jobId"].as_str().unwrap().to_owned();
    let g = theirs.get(&paths::job(&id)).await;
    assert_eq!((g.status, g.code()), (404, "not_found"));
    let f = theirs.get("/api/links/jobs?idempotencyKey=private").await;
    assert_eq!((f.status, f.code()), (404, "not_found"));
    let g = mine.get(&paths::job("job_doesnotexist")).await;
    assert_eq!((g.status, g.code()), (404, "not_found"));
}

#[tokio::test]
async fn the_lookup_by_idempotency_key_needs_exactly_one_key() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    for q in [
        "?idempotencyKey=",
        "?idempotencyKey=a&idempotencyKey=b",
        // Without idempotencyKey the path lists jobs (§3.11), whose
        // parameters are checked by name.
        "?other=1",
        // PostgreSQL text cannot hold U+0000: both stores refuse it by name.
        "?source=a%00b",
        "?idempotencyKey=a%00b",
    ] {
        let a = api.get(&format!("/api/links/jobs{q}")).await;
        assert_eq!((a.status, a.code()), (400, "invalid_request"), "{q}: {a:?}");
    }
    let a = api.get("/api/links/jobs").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["jobs"], serde_json::json!([]));
}

#[tokio::test]
async fn bodies_that_are_not_a_valid_job_are_refused_with_the_field_named() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let cases = [not_json(), wrong_shape(), invalid_urls()].concat();
    for (body, status, code, mentions) in cases {
        let a = api.post(paths::LINKS_FETCH, &body).await;
        assert_eq!((a.status, a.code()), (status, code), "{body:.80}: {a:?}");
        let msg = a.json["error"]["message"].as_str().unwrap_or("");
        assert!(
            msg.contains(mentions),
            "{body:.80}: message {msg:?} should name {mentions}"
        );
    }
    // A loopback URL is a well-formed URL: the agent, not the relay, decides.
    let a = api.submit("loop", "http://127.0.0.1:9/x").await;
    assert_eq!(a.status, 202, "{a:?}");
}

/// A refused body: (body, status, code, text the message must contain).
type Refused = (String, u16, &'static str, &'static str);

fn not_json() -> Vec<Refused> {
    vec![
        ("not json".into(), 400, "invalid_json", ""),
        ("{\"idempotencyKey\":".into(), 400, "invalid_json", ""),
        (String::new(), 400, "invalid_json", ""),
    ]
}

/// Well-formed JSON that is not a job: missing, unknown, duplicate, mistyped or out-of-range fields.
fn wrong_shape() -> Vec<Refused> {
    let long_key = "k".repeat(256);
    vec![
        ("[1,2]".into(), 400, "invalid_request", ""),
        (
            r#"{"trackingUrl":"https://a.test/"}"#.into(),
            400,
            "invalid_request",
            "idempotencyKey",
        ),
        (
            r#"{"idempotencyKey":"k"}"#.into(),
            400,
            "invalid_request",
            "trackingUrl",
        ),
        (
            r#"{"idempotencyKey":"","trackingUrl":"https://a.test/"}"#.into(),
            400,
            "invalid_request",
            "idempotencyKey",
        ),
        (
            format!(r#"{{"idempotencyKey":"{long_key}","trackingUrl":"https://a.test/"}}"#),
            400,
            "invalid_request",
            "idempotencyKey",
        ),
        (
            // The agent's User-Agent rule: printable ASCII only.
            r#"{"idempotencyKey":"k","trackingUrl":"https://a.test/","options":{"userAgent":"Caf\u00e9/1"}}"#.into(),
            400,
            "invalid_request",
            "userAgent",
        ),
        (
            r#"{"idempotencyKey":7,"trackingUrl":"https://a.test/"}"#.into(),
            400,
            "invalid_request",
            "",
        ),
        (
            r#"{"idempotencyKey":"k","trackingUrl":"https://a.test/","trackingURL":"x"}"#.into(),
            400,
            "invalid_request",
            "trackingURL",
        ),
        (
            r#"{"idempotencyKey":"k","idempotencyKey":"j","trackingUrl":"https://a.test/"}"#.into(),
            400,
            "invalid_request",
            "idempotencyKey",
        ),
        (
            r#"{"idempotencyKey":"k","trackingUrl":"https://a.test/","options":{"maxHops":0}}"#
                .into(),
            400,
            "invalid_request",
            "maxHops",
        ),
        (
            r#"{"idempotencyKey":"k","trackingUrl":"https://a.test/","options":{"maxHops":101}}"#
                .into(),
            400,
            "invalid_request",
            "maxHops",
        ),
        (
            r#"{"idempotencyKey":"k","trackingUrl":"https://a.test/","source":"a\u0000b"}"#
                .into(),
            400,
            "invalid_request",
            "source",
        ),
        (
            r#"{"idempotencyKey":"k","trackingUrl":"https://a.test/","rowId":"\u0000"}"#.into(),
            400,
            "invalid_request",
            "rowId",
        ),
    ]
}

fn invalid_urls() -> Vec<Refused> {
    let long_url = format!("https://trk.example/{}", "x".repeat(8200));
    vec![
        (
            r#"{"idempotencyKey":"k","trackingUrl":"ftp://a.test/"}"#.into(),
            400,
            "invalid_url",
            "trackingUrl",
        ),
        (
            r#"{"idempotencyKey":"k","trackingUrl":"javascript:alert(1)"}"#.into(),
            400,
            "invalid_url",
            "",
        ),
        (
            r#"{"idempotencyKey":"k","trackingUrl":"/relative/path"}"#.into(),
            400,
            "invalid_url",
            "",
        ),
        (
            r#"{"idempotencyKey":"k","trackingUrl":"https://exa mple.com/"}"#.into(),
            400,
            "invalid_url",
            "",
        ),
        (
            format!(r#"{{"idempotencyKey":"k","trackingUrl":"{long_url}"}}"#),
            400,
            "invalid_url",
            "8192",
        ),
    ]
}

#[tokio::test]
async fn fifty_concurrent_submissions_with_one_key_create_exactly_one_job() {
    let relay = TestRelay::start().await;
    let api = Arc::new(relay.api(&relay.key()));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.submit("same-key", "https://trk.example/c").await
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let a = t.await.unwrap();
        match a.status {
            202 => created += 1,
            200 => assert_eq!(a.headers.get("idempotent-replayed").unwrap(), "true"),
            other => panic!("unexpected {other}: {a:?}"),
        }
        ids.insert(a.json["jobId"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    let metrics = relay.ops_get(paths::METRICS).await.2;
    assert!(
        metrics.contains(r#"relay_jobs{state="queued"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn queue_and_daily_limits_answer_429_with_retry_after() {
    let relay = TestRelay::start().await;
    let queued = relay.api(&relay.key_with(100, 2));
    assert_eq!(
        queued.submit("q1", "https://trk.example/1").await.status,
        202
    );
    assert_eq!(
        queued.submit("q2", "https://trk.example/2").await.status,
        202
    );
    let a = queued.submit("q3", "https://trk.example/3").await;
    assert_eq!((a.status, a.code()), (429, "queue_full"), "{a:?}");
    assert!(
        a.headers
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // A replay is still answered while the queue is full.
    assert_eq!(
        queued.submit("q1", "https://trk.example/1").await.status,
        200
    );

    let daily = relay.api(&relay.key_with(2, 100));
    assert_eq!(
        daily.submit("d1", "https://trk.example/1").await.status,
        202
    );
    assert_eq!(
        daily.submit("d2", "https://trk.example/2").await.status,
        202
    );
    let a = daily.submit("d3", "https://trk.example/3").await;
    assert_eq!((a.status, a.code()), (429, "quota_exceeded"), "{a:?}");
    let retry: u64 = a
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=86_400).contains(&retry),
        "until next UTC midnight: {retry}"
    );
}

#[tokio::test]
async fn finishing_a_job_frees_its_queue_slot() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key_with(100, 1));
    let (_, device) = relay.device().await;
    assert_eq!(api.submit("f1", "https://trk.example/1").await.status, 202);
    assert_eq!(
        api.submit("f2", "https://trk.example/2").await.code(),
        "queue_full"
    );
    let p = device.poll(1, 0).await;
    let task = &p.json["tasks"][0];
    let post = format!(
        r#"{{"leaseId":"{}","result":{}}}"#,
        task["leaseId"].as_str().unwrap(),
        common::result_json("https://trk.example/1")
    );
    let r = device
        .post(&paths::task_result(task["taskId"].as_str().unwrap()), &post)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(api.submit("f2", "https://trk.example/2").await.status, 202);
}
