//! The real OS keychain (a Secret Service; scripts/test runs a private,
//! throwaway gnome-keyring): enrollment stores credentials there, the agent
//! runs from them, `status`/`doctor` report them, `sign-out` removes them —
//! and every bad input fails in one line without writing to the keychain.
//!
//! Without a reachable Secret Service these tests fail in CI (or with
//! `LINK_PEELER_REQUIRE_KEYCHAIN=1`) and are skipped with a notice otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod agent_support;

use std::time::Duration;

use agent_support::*;
use link_peeler::demo::lab::Lab;
use link_peeler_agent::credentials::Keychain;
use link_peeler_wire::protocol::{Conclusion, JobStatus};

fn stored(home: &AgentHome) -> Option<link_peeler_agent::credentials::DeviceCredentials> {
    Keychain::open(Some(&home.profile))
        .expect("keychain")
        .load()
        .expect("keychain read")
}

fn assert_one_line_error(code: i32, stderr: &str, needle: &str) {
    assert_ne!(code, 0, "must fail: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_run_status_doctor_sign_out_with_the_real_keychain() {
    if !keychain_or_skip("enroll_run_status_doctor_sign_out_with_the_real_keychain") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let home = AgentHome::new(tmp.path(), "kc");

    let code = enrollment_code(&relay);
    let (rc, out, err) = home
        .run(
            &[
                "enroll",
                "--relay",
                &relay.url(),
                "--code",
                &code,
                "--name",
                "kc-test",
            ],
            &[],
        )
        .await;
    assert_eq!(rc, 0, "{out}{err}");
    let creds = stored(&home).expect("credentials in the keychain");
    assert!(creds.device_id.starts_with("dev_"));
    assert!(out.contains(&creds.device_id), "{out}");
    assert!(!out.contains(&creds.device_secret) && !err.contains(&creds.device_secret));
    assert_eq!(
        creds.relay.as_deref(),
        Some(format!("{}/", relay.url()).as_str())
    );
    // Nothing secret was written anywhere in the agent's files.
    assert!(!home.config_path().exists(), "enroll writes no config file");

    // The agent runs from the keychain alone: the relay URL was saved with the credentials.
    let mut agent = home.spawn_agent(&[], &[]);
    let job = api.submit("kc-1", &lab.url("/s/kc"), None).await.unwrap();
    let job = api
        .wait_finished(&job.job_id, Duration::from_millis(50), PATIENCE)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(job.resolved_by.as_deref(), Some(creds.device_id.as_str()));
    assert_eq!(job.result.unwrap().conclusion, Conclusion::Resolved);

    let (rc, out, _) = home.run(&["status"], &[]).await;
    assert_eq!(rc, 0);
    assert!(
        out.contains(&format!("yes, device {} (OS keychain)", creds.device_id)),
        "{out}"
    );
    assert!(out.contains("Reachable:    yes"), "{out}");
    assert!(out.contains("Agent:        running"), "{out}");
    assert!(out.contains("0 results waiting"), "{out}");

    let (rc, out, _) = home.run(&["doctor"], &[]).await;
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.lines().filter(|l| l.starts_with("PASS")).count() >= 9,
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains("the relay accepts device"), "{out}");

    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));
    for text in [home.logs(), home.stderr()] {
        assert!(!text.is_empty());
        assert!(
            !text.contains(&creds.device_secret),
            "secret leaked into logs"
        );
    }

    let (rc, out, _) = home.run(&["sign-out"], &[]).await;
    assert_eq!(rc, 0, "{out}");
    assert!(stored(&home).is_none(), "sign-out removed the credentials");
    let (rc, out, _) = home.run(&["status"], &[]).await;
    assert_eq!(rc, 0);
    assert!(out.contains("Enrolled:     no"), "{out}");
    let (rc, _, err) = home.run(&["run", "--headless"], &[]).await;
    assert_one_line_error(rc, &err, "not enrolled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_with_hints_when_the_relay_is_down_or_the_device_revoked() {
    if !keychain_or_skip("doctor_fails_with_hints_when_the_relay_is_down_or_the_device_revoked") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(tmp.path(), None).await;
    let home = AgentHome::new(tmp.path(), "doc");
    let code = enrollment_code(&relay);
    let (rc, _, err) = home
        .run(&["enroll", "--relay", &relay.url(), "--code", &code], &[])
        .await;
    assert_eq!(rc, 0, "{err}");
    let device = stored(&home).unwrap().device_id;

    relay_admin(&relay.db, &["devices", "revoke", &device]);
    let (rc, out, _) = home.run(&["doctor"], &[]).await;
    assert_eq!(rc, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("FAIL  sign-in"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("revoked_key") && line.contains("→ sign-in required"),
        "{line}"
    );

    relay.proc.kill9().await;
    let (rc, out, _) = home.run(&["doctor"], &[]).await;
    assert_eq!(rc, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("FAIL  relay "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("cannot reach the relay") && line.contains("→ "),
        "{line}"
    );
    assert!(out.contains("PASS  keychain"), "{out}");
    home.run(&["sign-out"], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_in_one_line_and_writes_nothing_to_the_keychain() {
    if !keychain_or_skip("bad_input_fails_in_one_line_and_writes_nothing_to_the_keychain") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;

    // Wrong code against a real relay.
    let home = AgentHome::new(tmp.path(), "wrong-code");
    let (rc, _, err) = home
        .run(
            &[
                "enroll",
                "--relay",
                &relay.url(),
                "--code",
                "not-a-real-code",
            ],
            &[],
        )
        .await;
    assert_one_line_error(rc, &err, "refused the enrollment code");
    assert!(stored(&home).is_none());

    // Unreachable relay.
    let home = AgentHome::new(tmp.path(), "unreachable");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let (rc, _, err) = home
        .run(&["enroll", "--relay", &url, "--code", "whatever"], &[])
        .await;
    assert_one_line_error(rc, &err, "cannot reach the relay");
    assert!(stored(&home).is_none());

    // Plain http:// to a non-loopback relay: refused before any connection. Every proxy
    // variable points at a counting listener, so even a proxied attempt would be seen.
    let home = AgentHome::new(tmp.path(), "plain-http");
    let proxy = CountingProxy::start(relay.addr).await;
    let purl = proxy.url();
    let proxies = [
        ("HTTP_PROXY", purl.as_str()),
        ("HTTPS_PROXY", purl.as_str()),
        ("ALL_PROXY", purl.as_str()),
        ("http_proxy", purl.as_str()),
    ];
    let (rc, _, err) = home
        .run(
            &[
                "enroll",
                "--relay",
                "http://relay.example.com",
                "--code",
                "whatever",
            ],
            &proxies,
        )
        .await;
    assert_one_line_error(rc, &err, "use https://");
    assert!(stored(&home).is_none());
    home.write_config("relay = \"http://relay.example.com\"\n");
    let mut env = proxies.to_vec();
    env.push(("LINK_PEELER_DEVICE_ID", "dev_x"));
    env.push(("LINK_PEELER_DEVICE_SECRET", "s"));
    let (rc, _, err) = home.run(&["run", "--headless"], &env).await;
    assert_one_line_error(rc, &err, "use https://");
    assert_eq!(proxy.count(), 0, "relay.example.com was never contacted");

    // Malformed config: enroll (which reads the relay URL from it) and run.
    let home = AgentHome::new(tmp.path(), "bad-config");
    home.write_config("relay = \"http://127.0.0.1:1\"\ncapacity = [\n");
    let (rc, _, err) = home.run(&["enroll", "--code", "whatever"], &[]).await;
    assert_one_line_error(rc, &err, "config file");
    assert!(stored(&home).is_none());
    let (rc, _, err) = home.run(&["run", "--headless"], &[]).await;
    assert_one_line_error(rc, &err, "config file");
    assert!(err.contains("line 2"), "{err}");
    home.write_config("device_secret = \"oops\"\n");
    let (rc, _, err) = home.run(&["run", "--headless"], &[]).await;
    assert_one_line_error(rc, &err, "unknown field");
    assert!(stored(&home).is_none());
}
