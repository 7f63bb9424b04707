//! Batches (`POST /api/links/batch`, protocol.md §3.9) and job listing
//! (`GET /api/links/jobs`, §3.11).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use common::{Client, TestRelay};
use link_peeler_wire::protocol::paths;
use serde_json::{Value, json};

fn item(idem: &str, url: &str) -> Value {
    json!({"idempotencyKey": idem, "trackingUrl": url})
}

async fn batch(api: &Client, jobs: Vec<Value>) -> common::Answer {
    api.post(paths::LINKS_BATCH, &json!({ "jobs": jobs }).to_string())
        .await
}

fn outcomes(a: &common::Answer) -> Vec<String> {
    a.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let code = r["error"]["code"].as_str().unwrap_or("");
            format!(
                "{}{}{code}",
                r["outcome"].as_str().unwrap(),
                if code.is_empty() { "" } else { ":" }
            )
        })
        .collect()
}

#[tokio::test]
async fn each_item_gets_its_own_outcome_in_order_with_quota_per_item() {
    let relay = TestRelay::start().await;
    let key = relay.key_with(3, 100);
    let api = relay.api(&key);
    assert_eq!(
        api.submit("old", "https://trk.example/old").await.status,
        202
    );

    let a = batch(
        &api,
        vec![
            item("new-1", "https://trk.example/1"),
            item("old", "https://trk.example/old"),
            item("old", "https://trk.example/changed"),
            item("bad-url", "not a url"),
            json!({"idempotencyKey": "no-url"}),
            json!("not an object"),
            item("new-1", "https://trk.example/1"),
            item("new-2", "https://trk.example/2"),
            item("over", "https://trk.example/3"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        outcomes(&a),
        [
            "created",
            "replayed",
            "conflict:idempotency_conflict",
            "invalid:invalid_url",
            "invalid:invalid_request",
            "invalid:invalid_request",
            "replayed",
            "created",
            "refused:quota_exceeded",
        ]
    );
    let r = a.json["results"].as_array().unwrap();
    assert_eq!(r[0]["idempotencyKey"], "new-1");
    assert_eq!(r[0]["job"]["status"], "queued");
    assert_eq!(
        r[6]["job"]["jobId"], r[0]["job"]["jobId"],
        "a repeat within the batch"
    );
    assert_eq!(r[4]["idempotencyKey"], "no-url");
    assert!(
        r[4]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("trackingUrl")
    );
    assert!(r[5].get("idempotencyKey").is_none());
    assert!(r[8].get("job").is_none());

    // The refused and invalid items created nothing; the created ones exist.
    let listed = api.get(paths::LINKS_JOBS).await;
    let keys: Vec<&str> = listed.json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["idempotencyKey"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["old", "new-1", "new-2"]);
}

#[tokio::test]
async fn sending_a_batch_again_replays_every_item_and_its_nonce_is_spent_once() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let jobs: Vec<Value> = (0..50)
        .map(|i| item(&format!("r{i}"), &format!("https://trk.example/{i}")))
        .collect();
    let first = batch(&api, jobs.clone()).await;
    assert!(outcomes(&first).iter().all(|o| o == "created"));
    let again = batch(&api, jobs.clone()).await;
    assert!(
        outcomes(&again).iter().all(|o| o == "replayed"),
        "{:?}",
        outcomes(&again)
    );
    for (a, b) in first.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again.json["results"].as_array().unwrap())
    {
        assert_eq!(a["job"]["jobId"], b["job"]["jobId"]);
    }
    let captured = api.capture(&json!({ "jobs": jobs }).to_string());
    assert_eq!(
        api.send_post(paths::LINKS_BATCH, &captured).await.status,
        200
    );
    let replay = api.send_post(paths::LINKS_BATCH, &captured).await;
    assert_eq!((replay.status, replay.code()), (401, "replayed_nonce"));
}

#[tokio::test]
async fn batch_limits_and_shapes() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let many = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| item(&format!("m{i}"), &format!("https://trk.example/{i}")))
            .collect()
    };
    let a = batch(&api, many(501)).await;
    assert_eq!((a.status, a.code()), (413, "batch_too_large"), "{a:?}");
    assert!(a.json["error"]["message"].as_str().unwrap().contains("500"));
    let a = batch(&api, many(500)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["results"].as_array().unwrap().len(), 500);
    let a = batch(&api, vec![]).await;
    assert_eq!((a.status, a.code()), (400, "invalid_request"));

    // Up to 1 MiB for a batch; over it, payload_too_large before any parsing.
    let long = format!("https://trk.example/{}", "x".repeat(8000));
    let big: Vec<Value> = (0..120).map(|i| item(&format!("b{i}"), &long)).collect();
    let body = json!({ "jobs": big }).to_string();
    assert!(body.len() > 64 * 1024 && body.len() < 1024 * 1024);
    assert_eq!(api.post(paths::LINKS_BATCH, &body).await.status, 200);
    let huge: Vec<Value> = (0..140).map(|i| item(&format!("h{i}"), &long)).collect();
    let body = json!({ "jobs": huge }).to_string();
    assert!(body.len() > 1024 * 1024);
    let a = api.post(paths::LINKS_BATCH, &body).await;
    assert_eq!((a.status, a.code()), (413, "payload_too_large"));
    // The single-job route keeps its 64 KiB limit.
    let a = api
        .post(
            paths::LINKS_FETCH,
            &format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000)),
        )
        .await;
    assert_eq!((a.status, a.code()), (413, "payload_too_large"));

    for (body, code) in [
        ("", "invalid_json"),
        ("{\"jobs\":", "invalid_json"),
        ("[]", "invalid_request"),
        ("{}", "invalid_request"),
        ("{\"jobs\":{}}", "invalid_request"),
        ("{\"jobs\":[],\"extra\":1}", "invalid_request"),
        ("{\"job\":[]}", "invalid_request"),
    ] {
        let a = api.post(paths::LINKS_BATCH, body).await;
        assert_eq!((a.status, a.code()), (400, code), "{body}: {a:?}");
    }
}

#[tokio::test]
async fn listing_filters_pages_and_sees_only_the_callers_jobs() {
    let relay = TestRelay::start().await;
    let (key, other) = (relay.key(), relay.key());
    let api = relay.api(&key);
    let jobs: Vec<Value> = (0..25)
        .map(|i| {
            json!({"idempotencyKey": format!("l{i}"), "trackingUrl": "https://trk.example/",
                   "source": if i % 2 == 0 { "even" } else { "odd" }, "rowId": format!("{i}")})
        })
        .collect();
    assert_eq!(batch(&api, jobs).await.status, 200);
    assert_eq!(
        relay
            .api(&other)
            .submit("x", "https://trk.example/")
            .await
            .status,
        202
    );

    // Paging by cursor covers every job once, in creation order.
    let mut seen = Vec::new();
    let mut query = "limit=7".to_owned();
    loop {
        let a = api.get(&format!("{}?{query}", paths::LINKS_JOBS)).await;
        assert_eq!(a.status, 200, "{a:?}");
        for j in a.json["jobs"].as_array().unwrap() {
            seen.push(j["rowId"].as_str().unwrap().to_owned());
        }
        match a.json["nextCursor"].as_str() {
            Some(c) => query = format!("limit=7&cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);

    let count = |q: &str| {
        let api = &api;
        let q = q.to_owned();
        async move {
            let a = api.get(&format!("{}?{q}", paths::LINKS_JOBS)).await;
            assert_eq!(a.status, 200, "{q}: {a:?}");
            a.json["jobs"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("source=even").await, 13);
    assert_eq!(count("source=odd&rowId=3").await, 1);
    assert_eq!(count("rowId=3&source=even").await, 0);
    assert_eq!(count("status=queued").await, 25);
    assert_eq!(count("status=done").await, 0);
    assert_eq!(count("createdAfter=2000-01-01T00:00:00Z").await, 25);
    assert_eq!(count("createdBefore=2000-01-01T00:00:00Z").await, 0);
    assert_eq!(count("createdAfter=2999-01-01T00:00:00%2B02:00").await, 0);
    assert_eq!(count("limit=500").await, 25);
    // The idempotencyKey form still answers one job and ignores the rest.
    let one = api
        .get("/api/links/jobs?idempotencyKey=l4&status=done")
        .await;
    assert_eq!(one.json["rowId"], "4");

    for q in [
        "status=finished",
        "status=",
        "limit=0",
        "limit=501",
        "limit=ten",
        "cursor=abc",
        "cursor=-1",
        "createdAfter=yesterday",
        "createdBefore=2026-12-02",
        "source=a&source=b",
        "row_id=3",
        "sort=desc",
    ] {
        let a = api.get(&format!("{}?{q}", paths::LINKS_JOBS)).await;
        assert_eq!((a.status, a.code()), (400, "invalid_request"), "{q}: {a:?}");
    }
}
