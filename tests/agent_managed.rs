//! Managed configuration end to end, with real relay and agent processes: an
//! admin's relay URL + one-time code in the managed config (here a file named
//! by LINK_PEELER_MANAGED_CONFIG, the test/admin override of
//! /etc/link-peeler/config.toml, the registry or managed preferences) make the
//! agent enroll itself with no user action — and a refused or spent code is
//! never sent again, however often the agent is restarted.
//!
//! Enrollment requests are counted on the relay's own /metrics
//! (`relay_http_requests_total{route="/api/agent/enroll"}`). Loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod agent_support;

use std::time::Duration;

use agent_support::*;
use link_peeler::demo::lab::Lab;
use link_peeler_agent::credentials::Keychain;
use link_peeler_wire::protocol::JobStatus;

fn managed_path(home: &AgentHome) -> std::path::PathBuf {
    home.dir.join("managed.toml")
}

fn write_managed(home: &AgentHome, text: &str) {
    std::fs::write(managed_path(home), text).expect("write managed config");
}

fn stored(home: &AgentHome) -> Option<link_peeler_agent::credentials::DeviceCredentials> {
    Keychain::open(Some(&home.profile))
        .expect("keychain")
        .load()
        .expect("keychain read")
}

/// Enrollment requests the relay has answered, by its /metrics.
async fn enroll_requests(relay_url: &str) -> u64 {
    relay_requests(relay_url, "/api/agent/enroll").await
}

/// Waits until the agent logged its start `n` times (its signal handlers are in place then).
async fn wait_started(home: &AgentHome, n: usize) {
    wait_for("the agent loop to start", || async {
        (home.logs().matches("agent started").count() >= n).then_some(())
    })
    .await;
}

fn devices(relay: &Relay) -> Vec<serde_json::Value> {
    let v = relay_admin(&relay.db, &["devices", "list"]);
    v.as_array()
        .cloned()
        .or_else(|| v["devices"].as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_enrolls_itself_from_the_managed_config_once() {
    if !keychain_or_skip("the_agent_enrolls_itself_from_the_managed_config_once") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let home = AgentHome::new(tmp.path(), "managed");
    let code = enrollment_code(&relay);
    write_managed(
        &home,
        &format!(
            "relay = \"{}\"\nenrollment_code = \"{code}\"\n",
            relay.url()
        ),
    );
    assert!(stored(&home).is_none());

    // No `link-peeler enroll`: just start the agent, as autostart would.
    let mut agent = home.spawn_agent(&[], &[]);
    let creds = wait_for("credentials in the keychain", || async { stored(&home) }).await;
    assert!(creds.device_id.starts_with("dev_"));
    assert_eq!(
        creds.relay.as_deref(),
        Some(format!("{}/", relay.url()).as_str())
    );
    let listed = devices(&relay);
    assert!(
        listed
            .iter()
            .any(|d| d.to_string().contains(&creds.device_id)),
        "{listed:?}"
    );

    // And it works: a job comes back resolved by this device.
    let job = api.submit("m-1", &lab.url("/s/m"), None).await.unwrap();
    let job = api
        .wait_finished(&job.job_id, Duration::from_millis(50), PATIENCE)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(job.resolved_by.as_deref(), Some(creds.device_id.as_str()));
    assert_eq!(enroll_requests(&relay.url()).await, 1);

    // `status` shows what is managed (the tray reads the same fields).
    let (rc, out, err) = home.run(&["status", "--json"], &[]).await;
    assert_eq!(rc, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        st["managedSettings"],
        serde_json::json!(["relay", "enrollment_code"])
    );
    assert_eq!(
        st["managedSource"].as_str(),
        Some(managed_path(&home).display().to_string().as_str())
    );
    let (_, text, _) = home.run(&["status"], &[]).await;
    assert!(
        text.contains("Managed:      relay, enrollment_code"),
        "{text}"
    );

    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));
    let record = std::fs::read_to_string(home.data_dir().join("managed-enrollment.json")).unwrap();
    assert!(!record.contains(&code), "the code itself is never stored");
    assert!(!home.logs().contains(&creds.device_secret));

    // A restart while enrolled sends nothing.
    let mut agent = home.spawn_agent(&[], &[]);
    wait_for("the restarted agent to poll", || async {
        home.logs()
            .matches("agent started")
            .count()
            .ge(&2)
            .then_some(())
    })
    .await;
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));
    assert_eq!(enroll_requests(&relay.url()).await, 1);

    // After a sign-out the spent code is not replayed: the agent says why and stops.
    let (rc, _, _) = home.run(&["sign-out"], &[]).await;
    assert_eq!(rc, 0);
    for _ in 0..3 {
        let (rc, _, err) = home
            .run(
                &["run", "--headless", "--allow-network", "127.0.0.0/8"],
                &[],
            )
            .await;
        assert_eq!(rc, 1, "{err}");
        assert!(err.contains("already used on this computer"), "{err}");
        assert!(err.contains(&creds.device_id), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(enroll_requests(&relay.url()).await, 1);
    assert!(stored(&home).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_spent_code_is_sent_once_and_never_again() {
    if !keychain_or_skip("a_refused_or_spent_code_is_sent_once_and_never_again") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;

    // A code someone already used by hand, and a code the relay never issued.
    let spent = enrollment_code(&relay);
    let client = link_peeler_agent::client::RelayClient::new(
        link_peeler_agent::config::relay_url(&relay.url()).unwrap(),
        None,
    )
    .unwrap();
    client
        .enroll(&link_peeler_wire::protocol::EnrollRequest {
            code: spent.clone(),
            name: Some("by-hand".into()),
            platform: None,
            version: None,
        })
        .await
        .unwrap();
    let before = enroll_requests(&relay.url()).await;

    for (name, code) in [("spent", spent.as_str()), ("bogus", "NOT-A-REAL-CODE")] {
        let home = AgentHome::new(tmp.path(), name);
        write_managed(
            &home,
            &format!(
                "relay = \"{}\"\nenrollment_code = \"{code}\"\n",
                relay.url()
            ),
        );
        let start = enroll_requests(&relay.url()).await;
        for attempt in 0..4 {
            let (rc, _, err) = home
                .run(
                    &["run", "--headless", "--allow-network", "127.0.0.0/8"],
                    &[],
                )
                .await;
            assert_eq!(rc, 1, "{name} #{attempt}: {err}");
            // Headless mode also logs to stderr; the reason is the last line.
            let last = err.trim().lines().last().unwrap_or_default();
            assert!(last.starts_with("link-peeler: "), "{err}");
            assert!(
                last.contains("refused the managed enrollment code"),
                "{err}"
            );
            assert!(last.contains("will not be tried again"), "{err}");
            if attempt > 0 {
                assert!(last.contains("refused earlier"), "{err}");
                assert!(
                    !err.contains("enrolling from the managed configuration"),
                    "{err}"
                );
            }
        }
        assert_eq!(
            enroll_requests(&relay.url()).await,
            start + 1,
            "{name}: one request for four starts"
        );
        assert!(stored(&home).is_none());

        // A new code from the admin is a new pair: it is tried (and here it works).
        let fresh = enrollment_code(&relay);
        write_managed(
            &home,
            &format!(
                "relay = \"{}\"\nenrollment_code = \"{fresh}\"\n",
                relay.url()
            ),
        );
        let mut agent = home.spawn_agent(&[], &[]);
        wait_for("enrollment with the new code", || async { stored(&home) }).await;
        wait_started(&home, 1).await;
        agent.signal("TERM");
        assert_eq!(agent.wait_exit().await, Some(0));
    }
    assert_eq!(enroll_requests(&relay.url()).await, before + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_relay_is_retried_with_backoff_until_it_answers() {
    if !keychain_or_skip("an_unreachable_relay_is_retried_with_backoff_until_it_answers") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let code = enrollment_code(&relay);
    // The agent reaches the relay through a proxy that is down at first.
    let proxy = CountingProxy::start(format!("127.0.0.1:{}", closed_port()).parse().unwrap()).await;
    let home = AgentHome::new(tmp.path(), "retry");
    write_managed(
        &home,
        &format!(
            "relay = \"{}\"\nenrollment_code = \"{code}\"\n",
            proxy.url()
        ),
    );
    let mut agent = home.spawn_agent(&[], &[]);
    wait_for("two failed enrollment tries", || async {
        (proxy.count() >= 2).then_some(())
    })
    .await;
    assert!(stored(&home).is_none());
    assert_eq!(enroll_requests(&relay.url()).await, 0);
    proxy.set_upstream(relay.addr);
    let creds = wait_for("enrollment once the relay answers", || async {
        stored(&home)
    })
    .await;
    assert!(creds.device_id.starts_with("dev_"));
    assert_eq!(enroll_requests(&relay.url()).await, 1);
    wait_started(&home, 1).await;
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));
    assert!(
        home.logs()
            .contains("managed enrollment failed; will retry")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_managed_config_is_a_clear_error_not_a_loop() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let home = AgentHome::new(tmp.path(), "bad");
    let path = managed_path(&home).display().to_string();
    for (text, needle) in [
        ("relay = [", "line 1"),
        ("relay = \"http://relay.example.com\"\n", "https://"),
        ("enrolment_code = \"typo\"\n", "unknown field"),
        ("capacity = 500\n", "capacity must be between 1 and 64"),
    ] {
        write_managed(&home, text);
        for _ in 0..2 {
            let (rc, out, err) = home
                .run(
                    &["run", "--headless", "--allow-network", "127.0.0.0/8"],
                    &[],
                )
                .await;
            assert_eq!(rc, 1, "{text:?}: {out}{err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(err.contains("managed configuration"), "{err}");
            assert!(err.contains(&path), "{err}");
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let (rc, _, err) = home.run(&["status"], &[]).await;
        assert_eq!(rc, 1);
        assert!(err.contains(&path), "{err}");
        let (rc, out, _) = home.run(&["doctor"], &[]).await;
        assert_eq!(rc, 1);
        assert!(
            out.lines()
                .any(|l| l.starts_with("FAIL  config") && l.contains(&path)),
            "{out}"
        );
    }
    // Nothing was sent, nothing was remembered.
    assert_eq!(enroll_requests(&relay.url()).await, 0);
    assert!(!home.data_dir().join("managed-enrollment.json").exists());
}
