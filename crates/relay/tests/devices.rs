//! Agents report their state with their polls (protocol.md §4.2) and
//! `devices list` shows it with the last-seen time — on SQLite and, with
//! `LINK_PEELER_TEST_STORE=postgres`, on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use common::TestRelay;
use link_peeler_relay::admin;
use link_peeler_wire::protocol::paths;

fn devices_list(relay: &TestRelay, json: bool) -> String {
    let mut args = vec!["devices", "list"];
    if json {
        args.insert(0, "--json");
    }
    let out = std::process::Command::new(common::process::relay_bin())
        .env("LINK_PEELER_RELAY_DB", &relay.db_arg)
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_polls_state_report_is_kept_per_device_and_listed() {
    let relay = TestRelay::start().await;
    let (creds, device) = relay.device().await;
    // An agent that sends no report (older agents) is accepted as before.
    let a = device.poll(1, 0).await;
    assert_eq!(a.status, 200, "{a:?}");
    let d = &admin::list_devices(&relay.db).unwrap()[0];
    assert!(d.last_seen_at.is_some());
    assert_eq!(d.agent_state, None);

    let active = r#"{"capacity":2,"waitSeconds":0,"state":{"state":"active","reasons":[],"quotaLeft":{"linksThisHour":240,"linksToday":2000,"bytesToday":209715200,"bytesThisMonth":2147483648},"version":"0.1.0"}}"#;
    let a = device.post(paths::AGENT_POLL, active).await;
    assert_eq!(a.status, 200, "{a:?}");
    let d = &admin::list_devices(&relay.db).unwrap()[0];
    assert_eq!(d.agent_state.as_ref().unwrap()["state"], "active");
    assert_eq!(
        d.agent_state.as_ref().unwrap()["quotaLeft"]["linksToday"],
        2000
    );
    assert!(d.agent_state_at.is_some());

    // A paused agent reports with capacity 0: no task is handed out.
    let api = relay.api(&relay.key());
    api.submit("d1", "https://trk.example/1").await;
    let paused = r#"{"capacity":0,"state":{"state":"paused","reasons":["user","quotaReached"],"version":"0.1.0"}}"#;
    let a = device.post(paths::AGENT_POLL, paused).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["tasks"].as_array().unwrap().len(), 0);
    let d = &admin::list_devices(&relay.db).unwrap()[0];
    assert_eq!(d.agent_state.as_ref().unwrap()["state"], "paused");
    assert_eq!(
        d.agent_state.as_ref().unwrap()["reasons"][1],
        "quotaReached"
    );
    // The queued job is still there for an active poll.
    assert_eq!(
        device.poll(1, 0).await.json["tasks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A poll without a report keeps the last report.
    let d = &admin::list_devices(&relay.db).unwrap()[0];
    assert_eq!(d.agent_state.as_ref().unwrap()["state"], "paused");

    let table = devices_list(&relay, false);
    assert!(table.contains("AGENT"), "{table}");
    assert!(
        table.contains("paused (user, quotaReached), 0.1.0"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(devices_list(&relay, true).trim()).unwrap();
    let listed = json.as_array().map_or(&json["devices"], |_| &json);
    let first = listed.as_array().map(|a| a[0].clone()).unwrap_or_default();
    assert_eq!(first["deviceId"], creds.device_id.as_str(), "{json}");
    assert_eq!(first["agentState"]["state"], "paused", "{json}");
    assert!(first["lastSeenAt"].is_string() && first["agentStateAt"].is_string());
}

#[tokio::test]
async fn malformed_state_reports_are_refused() {
    let relay = TestRelay::start().await;
    let (_, device) = relay.device().await;
    for bad in [
        r#"{"capacity":1,"state":{"state":"sleeping"}}"#,
        r#"{"capacity":1,"state":{"state":"paused","reasons":["two words"]}}"#,
        r#"{"capacity":1,"state":{"state":"active","unknown":1}}"#,
        r#"{"capacity":0}"#,
    ] {
        let a = device.post(paths::AGENT_POLL, bad).await;
        assert_eq!(
            (a.status, a.code()),
            (400, "invalid_request"),
            "{bad}: {a:?}"
        );
    }
    assert_eq!(admin::list_devices(&relay.db).unwrap()[0].agent_state, None);
}

/// Each task names who asked: the API key's name and the job's `source`.
#[tokio::test]
async fn tasks_carry_the_api_key_name_and_the_jobs_source() {
    let relay = TestRelay::start().await;
    let api = relay.api(&relay.key());
    let (_, device) = relay.device().await;
    let a = api
        .post(
            paths::LINKS_FETCH,
            r#"{"idempotencyKey":"s1","trackingUrl":"https://trk.example/s","source":"newsletter"}"#,
        )
        .await;
    assert_eq!(a.status, 202, "{a:?}");
    api.submit("s2", "https://trk.example/t").await;
    let tasks = device.poll(2, 0).await.json["tasks"].clone();
    assert_eq!(tasks[0]["apiKeyName"], "test");
    assert_eq!(tasks[0]["source"], "newsletter");
    assert_eq!(tasks[1]["apiKeyName"], "test");
    assert!(tasks[1].get("source").is_none(), "{tasks}");
}
