//! The client examples in `examples/` run unchanged against a live relay.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

#[path = "../crates/relay/tests/common/mod.rs"]
mod common;

use common::TestRelay;
use link_peeler_wire::protocol::paths;
use serde_json::Value;

fn example(rel: &str) -> String {
    format!("{}/examples/{rel}", env!("CARGO_MANIFEST_DIR"))
}

async fn run(relay: &TestRelay, program: &str, args: &[&str]) -> (Value, common::Client) {
    let key = relay.key();
    let out = tokio::process::Command::new(program)
        .args(args)
        .env("LINK_PEELER_ENDPOINT", relay.url(paths::LINKS_FETCH))
        .env("LINK_PEELER_KEY_ID", &key.key_id)
        .env("LINK_PEELER_SECRET", &key.secret)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e} (is it installed? .ci/run installs it)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{program} {args:?} failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{stdout}: {e}"));
    (first, relay.api(&key))
}

async fn assert_job_exists(api: &common::Client, idem: &str, source: &str) {
    let a = api
        .get(&format!("/api/links/jobs?idempotencyKey={idem}"))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["source"], source);
    assert_eq!(a.json["trackingUrl"], "https://trk.example/a1");
}

#[tokio::test]
async fn node_example_creates_a_job() {
    let relay = TestRelay::start().await;
    let (out, api) = run(
        &relay,
        "node",
        &[
            &example("node/submit.mjs"),
            "https://trk.example/a1",
            "node-1",
        ],
    )
    .await;
    assert_eq!(out["status"], 202, "{out}");
    assert!(out["job"]["jobId"].as_str().unwrap().starts_with("job_"));
    assert_job_exists(&api, "node-1", "node-example").await;
}

#[tokio::test]
async fn python_example_creates_a_job() {
    let relay = TestRelay::start().await;
    let (out, api) = run(
        &relay,
        "python3",
        &[
            &example("python/submit.py"),
            "https://trk.example/a1",
            "--idempotency-key",
            "py-1",
        ],
    )
    .await;
    assert_eq!(out["status"], 202, "{out}");
    assert_job_exists(&api, "py-1", "python-example").await;
}

#[tokio::test]
async fn curl_example_creates_and_reads_a_job() {
    let relay = TestRelay::start().await;
    let key = relay.key();
    let out = tokio::process::Command::new("bash")
        .args([
            &example("curl/submit.sh"),
            "https://trk.example/a1",
            "curl-1",
        ])
        .env("LINK_PEELER_ENDPOINT", relay.url(paths::LINKS_FETCH))
        .env("LINK_PEELER_KEY_ID", &key.key_id)
        .env("LINK_PEELER_SECRET", &key.secret)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["jobId"], lines[1]["jobId"]);
    assert_job_exists(&relay.api(&key), "curl-1", "curl-example").await;
}

#[tokio::test]
async fn examples_fail_loudly_with_a_wrong_secret() {
    let relay = TestRelay::start().await;
    let key = relay.key();
    let out = tokio::process::Command::new("node")
        .arg(example("node/submit.mjs"))
        .env("LINK_PEELER_ENDPOINT", relay.url(paths::LINKS_FETCH))
        .env("LINK_PEELER_KEY_ID", &key.key_id)
        .env("LINK_PEELER_SECRET", "wrong")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bad_signature"));
}
