//! The client examples in `examples/` run unchanged against a live relay:
//! the submission clients, the webhook receivers (Node and Python) and the
//! results-feed consumer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod agent_support;
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

// ---- webhook receivers ---------------------------------------------------

/// A receiver example running as a child process, read through the JSON
/// lines it prints: `{"listening": URL}` first, then one per request.
struct Receiver {
    _child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    url: String,
}

impl Receiver {
    async fn start(program: &str, script: &str, key_id: &str, secret: &str) -> Receiver {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(program)
            .arg(example(script))
            .env("LINK_PEELER_KEY_ID", key_id)
            .env("LINK_PEELER_SECRET", secret)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut r = Receiver {
            _child: child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            url: String::new(),
        };
        let first = r.next().await;
        r.url = first["listening"].as_str().unwrap().to_owned();
        assert!(r.url.starts_with("http://127.0.0.1:"), "{first}");
        r
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(agent_support::PATIENCE, self.lines.next_line())
            .await
            .expect("the receiver printed a line in time")
            .unwrap()
            .expect("the receiver is still running");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// POSTs `body` with these headers, as a relay (or a forger) would.
    async fn post(&self, headers: &[(&str, String)], body: &str) -> (u16, Value) {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut req = http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let a = common::answer(req.send().await.unwrap()).await;
        (a.status, a.json)
    }
}

/// Delivery headers signed with `secret` at `timestamp`.
fn delivery_headers(
    key_id: &str,
    secret: &str,
    timestamp: i64,
    delivery: &str,
    body: &str,
) -> Vec<(&'static str, String)> {
    let signer = link_peeler_wire::signing::Signer::new(key_id, secret.as_bytes());
    let mut h = signer
        .headers_with(&timestamp.to_string(), &common::nonce(), body.as_bytes())
        .to_vec();
    h.push(("x-link-peeler-delivery", delivery.to_owned()));
    h.push(("x-link-peeler-event", "job.done".to_owned()));
    h
}

/// A relay that may deliver to loopback, a key whose webhook is the example
/// receiver, a job finished by a device's signed result: the receiver verifies
/// and records the real delivery, then refuses a forged signature, a stale
/// timestamp and a replayed delivery id.
async fn receiver_verifies_dedupes_and_refuses(program: &str, script: &str) {
    use agent_support::{Relay, api_key, enroll_http, wait_for};
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start_with_args(
        tmp.path(),
        None,
        &["--webhook-allow-network", "127.0.0.1/32"],
    )
    .await;
    let (key_id, secret) = api_key(&relay);
    let mut receiver = Receiver::start(program, script, &key_id, &secret).await;
    let set = std::process::Command::new(agent_support::relay_bin())
        .arg("--db")
        .arg(&relay.db)
        .args(["keys", "set-webhook", &key_id, &receiver.url])
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    let api = link_peeler_wire::api::ApiClient::new(&relay.url(), &key_id, &secret).unwrap();
    let job = api
        .submit("hook-1", "https://trk.example/a1", None)
        .await
        .unwrap();
    let (device, device_secret) = enroll_http(&relay).await;
    let agent = common::Client {
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        base: relay.url(),
        signer: link_peeler_wire::signing::Signer::new(device, device_secret.into_bytes()),
    };
    let polled = agent.poll(1, 5).await;
    let task = &polled.json["tasks"][0];
    assert_eq!(task["taskId"], job.job_id.as_str(), "{polled:?}");
    let posted = agent
        .post_result(
            task["taskId"].as_str().unwrap(),
            task["leaseId"].as_str().unwrap(),
            "https://trk.example/a1",
        )
        .await;
    assert_eq!(posted.status, 200, "{posted:?}");

    let accepted = receiver.next().await;
    let delivery = accepted["accepted"].as_str().unwrap().to_owned();
    assert!(delivery.starts_with("whd_"), "{accepted}");
    assert_eq!(accepted["event"], "job.done");
    assert_eq!(accepted["jobId"], job.job_id.as_str());
    assert_eq!(accepted["status"], "done");
    assert_eq!(accepted["conclusion"], "resolved");
    wait_for("the relay to record the delivery", || async {
        let j = api.job(&job.job_id).await.unwrap();
        j.webhook
            .filter(|w| w.state == link_peeler_wire::protocol::WebhookState::Delivered)
            .map(|w| assert_eq!(w.delivery_id, delivery))
    })
    .await;

    let body = format!(r#"{{"jobId":"{}","status":"done"}}"#, job.job_id);
    let now = common::now();
    // A forged signature: the right key id, the wrong secret.
    let forged = delivery_headers(
        &key_id,
        "lp_sk_test_not-the-secret",
        now,
        "whd_forged",
        &body,
    );
    assert_eq!(receiver.post(&forged, &body).await.0, 401);
    let line = receiver.next().await;
    assert_eq!(
        (line["rejected"].as_str(), line["reason"].as_str()),
        (Some("whd_forged"), Some("bad signature")),
        "{line}"
    );
    // A body changed after signing.
    let tampered = delivery_headers(&key_id, &secret, now, "whd_tampered", &body);
    let changed = body.replace("done", "failed");
    assert_eq!(receiver.post(&tampered, &changed).await.0, 401);
    assert_eq!(receiver.next().await["reason"], "bad signature");
    // Correctly signed, but 301 s old.
    let stale = delivery_headers(&key_id, &secret, now - 301, "whd_stale", &body);
    assert_eq!(receiver.post(&stale, &body).await.0, 401);
    let line = receiver.next().await;
    assert_eq!(
        (line["rejected"].as_str(), line["reason"].as_str()),
        (Some("whd_stale"), Some("stale timestamp")),
        "{line}"
    );
    // Correctly signed and fresh, but a delivery id already processed: acknowledged, not processed.
    let again = delivery_headers(&key_id, &secret, now, &delivery, &body);
    let (status, answer) = receiver.post(&again, &body).await;
    assert_eq!(
        (status, &answer["duplicate"]),
        (200, &Value::Bool(true)),
        "{answer}"
    );
    assert_eq!(receiver.next().await["duplicate"], delivery.as_str());
    // A missing header.
    let mut headless = delivery_headers(&key_id, &secret, now, "whd_headless", &body);
    headless.retain(|(k, _)| !k.eq_ignore_ascii_case("x-link-peeler-nonce"));
    assert_eq!(receiver.post(&headless, &body).await.0, 401);
    assert_eq!(receiver.next().await["reason"], "missing header");
    // And a genuine new delivery is still accepted: the refusals were for cause.
    let fresh = delivery_headers(&key_id, &secret, now, "whd_fresh", &body);
    assert_eq!(receiver.post(&fresh, &body).await.0, 200);
    assert_eq!(receiver.next().await["accepted"], "whd_fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_webhook_receiver_verifies_dedupes_and_refuses() {
    receiver_verifies_dedupes_and_refuses("node", "node/webhook-receiver.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_webhook_receiver_verifies_dedupes_and_refuses() {
    receiver_verifies_dedupes_and_refuses("python3", "python/webhook_receiver.py").await;
}

// ---- results feed consumer -----------------------------------------------

/// Runs a feed consumer with `--cursor-file FILE --wait 0 --until-idle`: (exit code, JSON lines).
async fn follow_feed(
    (program, script): (&str, &str),
    relay: &TestRelay,
    key_id: &str,
    secret: &str,
    cursor_file: &std::path::Path,
) -> (i32, Vec<Value>) {
    let out = tokio::process::Command::new(program)
        .arg(example(script))
        .arg("--cursor-file")
        .arg(cursor_file)
        .args(["--wait", "0", "--until-idle"])
        .env("LINK_PEELER_ENDPOINT", relay.url(paths::LINKS_FETCH))
        .env("LINK_PEELER_KEY_ID", key_id)
        .env("LINK_PEELER_SECRET", secret)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[tokio::test]
async fn python_feed_consumer_resumes_from_its_stored_cursor() {
    feed_consumer_resumes_from_its_stored_cursor(("python3", "python/feed.py")).await;
}

#[tokio::test]
async fn node_feed_consumer_resumes_from_its_stored_cursor() {
    feed_consumer_resumes_from_its_stored_cursor(("node", "node/feed.mjs")).await;
}

/// Three jobs, two finished: the consumer prints those two in finish order and
/// stores the cursor; run again it prints nothing, and after the third finishes
/// only the third; a wrong secret fails and leaves the cursor alone.
async fn feed_consumer_resumes_from_its_stored_cursor(consumer: (&str, &str)) {
    let relay = TestRelay::start().await;
    let key = relay.key();
    let api = relay.api(&key);
    let mut jobs = Vec::new();
    for i in 0..3 {
        let a = api
            .submit(&format!("feed-{i}"), &format!("https://trk.example/{i}"))
            .await;
        assert_eq!(a.status, 202, "{a:?}");
        jobs.push(a.json["jobId"].as_str().unwrap().to_owned());
    }
    let (_, device) = relay.device().await;
    let polled = device.poll(3, 1).await;
    let tasks = polled.json["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 3, "{polled:?}");
    let lease = |id: &str| {
        tasks
            .iter()
            .find(|t| t["taskId"] == id)
            .map(|t| t["leaseId"].as_str().unwrap().to_owned())
            .unwrap()
    };
    // Finish the second, then the first: the feed is in finish order.
    for j in [&jobs[1], &jobs[0]] {
        let a = device
            .post_result(j, &lease(j), "https://trk.example/x")
            .await;
        assert_eq!(a.status, 200, "{a:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let cursor_file = dir.path().join("feed.cursor");
    let (code, lines) = follow_feed(consumer, &relay, &key.key_id, &key.secret, &cursor_file).await;
    assert_eq!(code, 0, "{lines:?}");
    let seen: Vec<&str> = lines.iter().map(|l| l["jobId"].as_str().unwrap()).collect();
    assert_eq!(seen, [jobs[1].as_str(), jobs[0].as_str()]);
    assert_eq!(lines[0]["event"], "job.done");
    assert_eq!(lines[0]["conclusion"], "resolved");
    let stored = std::fs::read_to_string(&cursor_file).unwrap();
    assert_eq!(stored.trim(), lines[1]["cursor"].as_str().unwrap());

    // Nothing new: nothing printed, the cursor stays.
    let (code, lines) = follow_feed(consumer, &relay, &key.key_id, &key.secret, &cursor_file).await;
    assert_eq!((code, lines.len()), (0, 0), "{lines:?}");
    assert_eq!(std::fs::read_to_string(&cursor_file).unwrap(), stored);

    // The third finishes: only it is new.
    let a = device
        .post_result(&jobs[2], &lease(&jobs[2]), "https://trk.example/x")
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let (code, lines) = follow_feed(consumer, &relay, &key.key_id, &key.secret, &cursor_file).await;
    assert_eq!(code, 0);
    let seen: Vec<&str> = lines.iter().map(|l| l["jobId"].as_str().unwrap()).collect();
    assert_eq!(seen, [jobs[2].as_str()]);

    // A wrong secret fails loudly and leaves the cursor alone.
    let before = std::fs::read_to_string(&cursor_file).unwrap();
    let (code, lines) = follow_feed(consumer, &relay, &key.key_id, "wrong", &cursor_file).await;
    assert_eq!(code, 1);
    assert_eq!(
        lines[0]["error"]["error"]["code"], "bad_signature",
        "{lines:?}"
    );
    assert_eq!(std::fs::read_to_string(&cursor_file).unwrap(), before);
}

#[tokio::test]
async fn feed_consumers_refuse_bad_arguments() {
    for (program, script) in [("python3", "python/feed.py"), ("node", "node/feed.mjs")] {
        for args in [
            &["--cursor-file", "c", "--wait", "31"][..],
            &["--cursor-file", "c", "--wait", "soon"],
            &["--wait", "5"],
        ] {
            let out = tokio::process::Command::new(program)
                .arg(example(script))
                .args(args)
                .env("LINK_PEELER_ENDPOINT", "http://127.0.0.1:9/api/links/fetch")
                .env("LINK_PEELER_KEY_ID", "lp_test_000000000000000000000000")
                .env("LINK_PEELER_SECRET", "s")
                .output()
                .await
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{script} {args:?}");
            assert!(!out.stderr.is_empty(), "{script} {args:?} says why");
        }
    }
}
