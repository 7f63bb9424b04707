//! The relay as a real process: durability across `kill -9`, graceful SIGTERM,
//! and the admin command line (`keys`, `devices`, `dev`), plus `link-peeler submit`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

#[path = "../crates/relay/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{Client, answer};
use link_peeler_wire::protocol::paths;
use link_peeler_wire::signing::Signer;
use serde_json::Value;

/// The relay binary. It belongs to the `link-peeler-relay` crate, so Cargo
/// sets no `CARGO_BIN_EXE_` for it here; it is built into the same directory
/// as `link-peeler` (`cargo test` in the workspace root builds both).
fn relay_bin() -> std::path::PathBuf {
    let name = format!("link-peeler-relay{}", std::env::consts::EXE_SUFFIX);
    std::path::Path::new(AGENT).with_file_name(name)
}
const AGENT: &str = env!("CARGO_BIN_EXE_link-peeler");

fn relay_cmd(db: &Path, args: &[&str]) -> Output {
    Command::new(relay_bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap()
}

fn json_line(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "--json prints one line: {text}");
    serde_json::from_str(text.trim()).unwrap()
}

/// Starts `serve --json` and returns the child and its base URL.
fn spawn_serve(db: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(relay_bin())
        .arg("--db")
        .arg(db)
        .args(["serve", "--listen", "127.0.0.1:0", "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("first line {line:?}: {e}"));
    (child, v["url"].as_str().unwrap().to_owned())
}

fn client(base: &str, key: &Value) -> Client {
    link_peeler_wire::tls::init();
    Client {
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        base: base.to_owned(),
        signer: Signer::new(
            key["keyId"].as_str().unwrap(),
            key["secret"].as_str().unwrap().as_bytes().to_vec(),
        ),
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("process did not exit within 15 s");
}

#[tokio::test]
async fn accepted_jobs_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let key = json_line(&relay_cmd(
        &db,
        &["keys", "create", "--name", "durable", "--json"],
    ));
    let (mut child, url) = spawn_serve(&db, &[]);
    let api = client(&url, &key);
    let mut accepted = Vec::new();
    let mut handles = Vec::new();
    for i in 0..40 {
        let api = api.clone();
        handles.push(tokio::spawn(async move {
            api.submit(&format!("d{i}"), &format!("https://trk.example/{i}"))
                .await
        }));
    }
    for h in handles {
        let a = h.await.unwrap();
        assert_eq!(a.status, 202, "{a:?}");
        accepted.push(a.json["jobId"].as_str().unwrap().to_owned());
    }
    child.kill().unwrap(); // SIGKILL: no chance to flush anything.
    child.wait().unwrap();

    let (mut child, url) = spawn_serve(&db, &[]);
    let api = client(&url, &key);
    for id in &accepted {
        let g = api.get(&paths::job(id)).await;
        assert_eq!(g.status, 200, "job {id} lost: {g:?}");
        assert_eq!(g.json["status"], "queued");
    }
    sigterm(&child);
    assert!(wait_exit(&mut child).success());
}

#[tokio::test]
async fn sigterm_drains_a_held_poll_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let code = json_line(&relay_cmd(
        &db,
        &["devices", "enroll", "--name", "box", "--json"],
    ));
    let (mut child, url) = spawn_serve(&db, &[]);
    link_peeler_wire::tls::init();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let creds = answer(
        http.post(format!("{url}{}", paths::AGENT_ENROLL))
            .body(format!(
                r#"{{"code":"{}"}}"#,
                code["code"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await
    .json;
    let device = Client {
        http,
        base: url.clone(),
        signer: Signer::new(
            creds["deviceId"].as_str().unwrap(),
            creds["deviceSecret"].as_str().unwrap().as_bytes().to_vec(),
        ),
    };
    let poll = tokio::spawn(async move { device.poll(1, 30).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&child);
    let a = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, 200);
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn keys_commands_print_secrets_once_and_list_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let k = json_line(&relay_cmd(
        &db,
        &[
            "keys",
            "create",
            "--name",
            "sheet sync",
            "--daily-limit",
            "50",
            "--max-queued",
            "5",
            "--json",
        ],
    ));
    assert!(k["keyId"].as_str().unwrap().starts_with("lp_live_"));
    assert!(k["secret"].as_str().unwrap().starts_with("lp_sk_live_"));
    assert_eq!(k["name"], "sheet sync");
    assert_eq!(k["dailyLimit"], 50);
    assert_eq!(k["maxQueued"], 5);
    let t = json_line(&relay_cmd(
        &db,
        &["keys", "create", "--name", "t", "--test", "--json"],
    ));
    assert!(t["keyId"].as_str().unwrap().starts_with("lp_test_"));

    let list = relay_cmd(&db, &["keys", "list", "--json"]);
    let text = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        !text.contains(k["secret"].as_str().unwrap()),
        "list must not show secrets"
    );
    let v = json_line(&list);
    assert_eq!(v["keys"].as_array().unwrap().len(), 2);

    let r = json_line(&relay_cmd(
        &db,
        &["--json", "keys", "revoke", k["keyId"].as_str().unwrap()],
    ));
    assert_eq!(r["revoked"], true);
    let v = json_line(&relay_cmd(&db, &["keys", "list", "--json"]));
    let revoked = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["keyId"] == k["keyId"])
        .unwrap()
        .clone();
    assert!(revoked["revokedAt"].is_string());

    let human = relay_cmd(&db, &["keys", "list"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("revoked"));

    // Webhook URLs: set at creation, changed, shown by list, removed.
    let w = json_line(&relay_cmd(
        &db,
        &[
            "keys",
            "create",
            "--name",
            "hooked",
            "--webhook-url",
            "https://hooks.example/a",
            "--json",
        ],
    ));
    assert_eq!(w["webhookUrl"], "https://hooks.example/a");
    let id = w["keyId"].as_str().unwrap();
    let set = json_line(&relay_cmd(
        &db,
        &[
            "--json",
            "keys",
            "set-webhook",
            id,
            "https://hooks.example/b",
        ],
    ));
    assert_eq!(set["webhookUrl"], "https://hooks.example/b");
    let human = relay_cmd(&db, &["keys", "list"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("https://hooks.example/b"));
    json_line(&relay_cmd(
        &db,
        &["--json", "keys", "set-webhook", id, "--none"],
    ));
    let v = json_line(&relay_cmd(&db, &["keys", "list", "--json"]));
    let hooked = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["keyId"] == id)
        .unwrap()
        .clone();
    assert!(hooked["webhookUrl"].is_null(), "{hooked}");
}

/// A delivery in flight when the relay is killed is made after the restart,
/// with the same delivery id (the receiver's dedupe key).
#[tokio::test]
async fn a_webhook_in_flight_at_kill_9_is_delivered_after_restart() {
    use common::receiver::{Receiver, Reply};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    // The first attempt hangs: the relay is killed while it waits.
    let receiver = Receiver::start(vec![Reply::Hang]).await;
    let key = json_line(&relay_cmd(
        &db,
        &[
            "keys",
            "create",
            "--name",
            "hooked",
            "--webhook-url",
            &receiver.url(),
            "--json",
        ],
    ));
    let serve_args = [
        "--webhook-allow-network",
        "127.0.0.1/32",
        "--webhook-timeout-seconds",
        "3",
    ];
    let (mut child, url) = spawn_serve(&db, &serve_args);
    let api = client(&url, &key);
    let code = json_line(&relay_cmd(
        &db,
        &["devices", "enroll", "--name", "d", "--json"],
    ));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let enrolled = answer(
        http.post(format!("{url}{}", paths::AGENT_ENROLL))
            .body(format!(
                r#"{{"code":"{}","name":"d"}}"#,
                code["code"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(enrolled.status, 200, "{enrolled:?}");
    let device = Client {
        http,
        base: url.clone(),
        signer: Signer::new(
            enrolled.json["deviceId"].as_str().unwrap(),
            enrolled.json["deviceSecret"]
                .as_str()
                .unwrap()
                .as_bytes()
                .to_vec(),
        ),
    };
    let s = api.submit("hook-1", "https://trk.example/h").await;
    assert_eq!(s.status, 202);
    let polled = device.poll(1, 5).await;
    let task = &polled.json["tasks"][0];
    let r = device
        .post_result(
            task["taskId"].as_str().unwrap(),
            task["leaseId"].as_str().unwrap(),
            "https://trk.example/h",
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let first = receiver.wait_hits(1, Duration::from_secs(20)).await;
    child.kill().unwrap(); // mid-delivery: the receiver has not answered
    child.wait().unwrap();

    let (mut child, url) = spawn_serve(&db, &serve_args);
    let hits = receiver.wait_hits(2, Duration::from_secs(30)).await;
    assert_eq!(
        hits[1].header("x-link-peeler-delivery"),
        first[0].header("x-link-peeler-delivery"),
        "the same delivery id after the restart"
    );
    let api = client(&url, &key);
    let job = s.json["jobId"].as_str().unwrap();
    let mut state = Value::Null;
    for _ in 0..100 {
        state = api.get(&paths::job(job)).await.json["webhook"].clone();
        if state["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state["state"], "delivered", "{state}");
    sigterm(&child);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn devices_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let c = json_line(&relay_cmd(
        &db,
        &["devices", "enroll", "--name", "laptop-7", "--json"],
    ));
    assert_eq!(c["code"].as_str().unwrap().len(), 14);
    assert!(c["expiresAt"].as_str().unwrap().ends_with('Z'));
    let v = json_line(&relay_cmd(&db, &["devices", "list", "--json"]));
    assert_eq!(
        v["devices"].as_array().unwrap().len(),
        0,
        "a code is not a device yet"
    );
    let out = relay_cmd(&db, &["devices", "revoke", "dev_nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no device dev_nope"));
}

#[test]
fn bad_flags_and_bad_databases_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    for args in [
        &["keys", "create"][..],
        &["keys", "create", "--name", "x", "--daily-limit", "0"],
        &["keys", "create", "--name", "x", "--max-queued", "many"],
        &["keys", "revoke"],
        &[
            "devices",
            "enroll",
            "--name",
            "x",
            "--expires-in-hours",
            "0",
        ],
        &["serve", "--listen", "not-an-address"],
        &["serve", "--lease-seconds", "0"],
        &["serve", "--retention-days", "0"],
        &["serve", "--header-timeout-seconds", "0"],
        &["serve", "--idle-timeout-seconds", "soon"],
        &["serve", "--body-timeout-seconds", "3601"],
        &["serve", "--max-connections", "0"],
        &["serve", "--enroll-failures-per-ip", "0"],
        &["serve", "--enroll-failures-total", "-1"],
        &["serve", "--ops-listen", "not-an-address"],
        &["serve", "--tls-key", "key.pem"],
        &["serve", "--webhook-allow-network", "banana"],
        &["serve", "--webhook-allow-network", "10.0.0.0/33"],
        &["serve", "--webhook-allow-network", "127.0.0.1"],
        &["serve", "--webhook-timeout-seconds", "0"],
        &["serve", "--webhook-timeout-seconds", "61"],
        &["keys", "set-webhook"],
        &["keys", "set-webhook", "lp_live_x"],
        &[
            "keys",
            "set-webhook",
            "lp_live_x",
            "https://h.example/",
            "--none",
        ],
        &["dev", "--listen", "nowhere"],
        &["bench", "--seconds", "0"],
        &["bench", "--concurrency", "0"],
        &["bench", "--pickups", "many"],
        &["bench", "--polls", "0"],
        &["bench", "--polls", "10", "--idle-seconds", "0"],
        &["frobnicate"],
    ] {
        let out = relay_cmd(&db, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
    let out = relay_cmd(&db, &["keys", "create", "--name", "   "]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name must be"));
    for url in ["ftp://h.example/", "https://u:p@h.example/", "not a url"] {
        let out = relay_cmd(
            &db,
            &["keys", "create", "--name", "w", "--webhook-url", url],
        );
        assert_eq!(out.status.code(), Some(1), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("webhook URL") && err.lines().count() == 1,
            "{err}"
        );
    }
    let out = relay_cmd(
        &db,
        &[
            "keys",
            "set-webhook",
            "lp_live_nosuch",
            "https://h.example/",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API key lp_live_nosuch"));

    // A directory where the database should be, and a file that is not SQLite.
    let out = relay_cmd(dir.path(), &["keys", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("link-peeler-relay: error:"));
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let out = relay_cmd(&junk, &["keys", "list"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&junk).unwrap(),
        vec![b'x'; 4096],
        "a foreign file is left untouched"
    );
}

#[tokio::test]
async fn dev_prints_working_credentials_and_submit_uses_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dev.db");
    let mut child = Command::new(relay_bin())
        .arg("--db")
        .arg(&db)
        .args(["dev", "--listen", "127.0.0.1:0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let dev: Value = serde_json::from_str(&line).unwrap();
    let url = dev["relay"].as_str().unwrap();
    assert!(dev["keyId"].as_str().unwrap().starts_with("lp_test_"));
    assert_eq!(dev["enrollmentCode"].as_str().unwrap().len(), 14);

    let submit = |extra: &[&str], secret_var: &str| {
        Command::new(AGENT)
            .env("LP_TEST_SECRET", dev["secret"].as_str().unwrap())
            .args([
                "submit",
                "--relay",
                url,
                "--key",
                dev["keyId"].as_str().unwrap(),
                "--secret-env",
                secret_var,
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = submit(
        &[
            "--url",
            "https://trk.example/x",
            "--idempotency-key",
            "cli-1",
        ],
        "LP_TEST_SECRET",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "queued");
    // Same again: an idempotent replay, still success.
    let again = submit(
        &[
            "--url",
            "https://trk.example/x",
            "--idempotency-key",
            "cli-1",
        ],
        "LP_TEST_SECRET",
    );
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("idempotent replay"));
    // Conflict: relay refuses, exit 1 with the relay's message.
    let conflict = submit(
        &[
            "--url",
            "https://trk.example/y",
            "--idempotency-key",
            "cli-1",
        ],
        "LP_TEST_SECRET",
    );
    assert_eq!(conflict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("idempotency_conflict"));
    // Missing secret variable, bad URL, bad flags.
    let out = submit(
        &[
            "--url",
            "https://trk.example/x",
            "--idempotency-key",
            "cli-2",
        ],
        "NOT_SET_ANYWHERE",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT_SET_ANYWHERE"));
    let out = submit(
        &["--url", "ftp://x", "--idempotency-key", "cli-3"],
        "LP_TEST_SECRET",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("trackingUrl"));
    let out = submit(
        &[
            "--url",
            "https://trk.example/x",
            "--idempotency-key",
            "cli-4",
            "--max-hops",
            "0",
        ],
        "LP_TEST_SECRET",
    );
    assert_eq!(out.status.code(), Some(2));

    sigterm(&child);
    assert!(wait_exit(&mut child).success());
}

#[tokio::test]
async fn debug_request_logs_redact_the_signature_and_never_show_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let key = json_line(&relay_cmd(
        &db,
        &["keys", "create", "--name", "logs", "--json"],
    ));
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(relay_bin())
        .arg("--db")
        .arg(&db)
        .args(["serve", "--listen", "127.0.0.1:0", "--json"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = serde_json::from_str::<Value>(&line).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let api = client(&url, &key);
    let body = r#"{"idempotencyKey":"log-1","trackingUrl":"https://trk.example/l"}"#;
    let headers = api.headers(body.as_bytes());
    let signature = headers
        .iter()
        .find(|(k, _)| *k == "x-link-peeler-signature")
        .unwrap()
        .1
        .clone();
    assert_eq!(
        api.post_with(paths::LINKS_FETCH, &headers, body.into())
            .await
            .status,
        202
    );
    sigterm(&child);
    assert!(wait_exit(&mut child).success());
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("x-link-peeler-key"),
        "request headers are logged at debug: {logs:.2000}"
    );
    assert!(
        logs.contains(r#""x-link-peeler-signature": Sensitive"#),
        "{logs:.2000}"
    );
    assert!(
        !logs.contains(&signature),
        "the signature leaked into the log"
    );
    assert!(
        !logs.contains(key["secret"].as_str().unwrap()),
        "the secret leaked into the log"
    );
}
