//! The end user's policy, end to end with real processes (issue 16): a
//! relay process, a `link-peeler run --headless` agent and the loopback lab.
//! A reached quota stops the agent taking tasks and the relay's device list
//! says why; a destination outside the user's allow list is refused without
//! a request and comes back as `refused_by_policy`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod agent_support;

use std::time::Duration;

use agent_support::*;
use link_peeler::demo::lab::Lab;
use link_peeler_wire::protocol::{Conclusion, JobStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reached_quota_stops_the_agent_and_the_relay_shows_why() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!(
        "relay = \"{}\"\npoll_wait_seconds = 2\nmax_links_per_day = 3\n",
        relay.url()
    ));
    let mut ids = vec![];
    for i in 0..5 {
        let job = api
            .submit(
                &format!("q-{i}"),
                &lab.url(&format!("/ad/click?id={i}")),
                None,
            )
            .await
            .unwrap();
        ids.push(job.job_id);
    }
    let mut agent = home.spawn_agent(&[], &env_creds(&device, &secret));

    // The agent reports itself paused for its quota (a report-only poll).
    let listed = wait_for("the device listed as paused by its quota", || async {
        let v = relay_admin(&relay.db, &["devices", "list"]);
        let d = v["devices"][0].clone();
        (d["agentState"]["state"] == "paused").then_some(d)
    })
    .await;
    let reasons = listed["agentState"]["reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r == "quotaReached"), "{listed}");
    assert_eq!(
        listed["agentState"]["quotaLeft"]["linksToday"], 0,
        "{listed}"
    );
    assert!(listed["lastSeenAt"].is_string());

    // Three links were taken and resolved; the other two are never leased.
    let statuses = wait_for("three jobs done", || async {
        let mut statuses = vec![];
        for id in &ids {
            statuses.push(api.job(id).await.unwrap().status);
        }
        let done = statuses.iter().filter(|s| **s == JobStatus::Done).count();
        (done == 3).then_some(statuses)
    })
    .await;
    let queued = statuses.iter().filter(|s| **s == JobStatus::Queued).count();
    assert_eq!(queued, 2, "{statuses:?}");
    agent.signal("TERM");
    agent.wait_exit().await;
    // The count survives in the agent's private control file.
    let saved = std::fs::read_to_string(home.data_dir().join("control.json")).unwrap();
    assert!(saved.contains("\"links\": 3"), "{saved}");

    // Recent activity: the three links (requester and domains) and the pause, as CSV.
    let out = home
        .command(&["activity", "--csv", "-"])
        .output()
        .await
        .expect("link-peeler activity");
    assert!(out.status.success(), "{out:?}");
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(
        rows[0].starts_with("time,kind,requester,source,input_domain"),
        "{csv}"
    );
    let tasks: Vec<&&str> = rows.iter().filter(|r| r.contains(",task,")).collect();
    assert_eq!(tasks.len(), 3, "{csv}");
    assert!(
        tasks
            .iter()
            .all(|r| r.contains(",127.0.0.1,127.0.0.1,") && r.contains(",resolved,")),
        "{csv}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains(",state,") && r.contains("paused,daily link quota reached until")),
        "{csv}"
    );
    // The table, and a bad flag is a usage error naming it.
    let table = home.command(&["activity"]).output().await.unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("paused: daily link quota reached"),
        "{table}"
    );
    let bad = home
        .command(&["activity", "--days", "0"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--days"));
    let both = home
        .command(&["activity", "--csv", "-", "--html", "-"])
        .output()
        .await
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    let nowhere = tmp.path().join("no-such-dir").join("activity.csv");
    let unwritable = home
        .command(&["activity", "--csv", nowhere.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(unwritable.status.code(), Some(1), "{unwritable:?}");
    let err = String::from_utf8_lossy(&unwritable.stderr);
    assert!(
        err.contains("cannot write") && err.contains("no-such-dir"),
        "{err}"
    );
    assert!(!nowhere.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_outside_the_allow_list_is_refused_without_a_request() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!(
        "relay = \"{}\"\npoll_wait_seconds = 2\nallow_domains = [\"example.com\"]\n",
        relay.url()
    ));
    let mut agent = home.spawn_agent(&[], &env_creds(&device, &secret));
    let job = api
        .submit("refused", &lab.url("/ad/click?id=1"), None)
        .await
        .unwrap();
    let job = api
        .wait_finished(&job.job_id, Duration::from_millis(50), PATIENCE)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    let r = job.result.unwrap();
    assert_eq!(r.conclusion, Conclusion::RefusedByPolicy);
    assert!(r.hops.is_empty(), "no request was made: {r:?}");
    assert!(r.error.unwrap().contains("allow list"));
    agent.signal("TERM");
    agent.wait_exit().await;
}

/// `status --json` shows the effective policy, where each value comes from,
/// and the decision; a malformed managed value stops it with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_effective_policy_and_its_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let home = AgentHome::new(tmp.path(), "s");
    home.write_config(
        "pause_on_battery = false\nmax_links_per_hour = 1\nallowed_hours = \"09:00-17:00\"\n",
    );
    let managed = home.config_path().with_file_name("managed.toml");
    std::fs::write(
        &managed,
        "max_links_per_hour = 50\ndefault_max_bytes_per_day = \"10MB\"\ndefault_allowed_hours = \"always\"\n",
    )
    .unwrap();
    let (rc, out, err) = home.run(&["status", "--json"], &[]).await;
    assert_eq!(rc, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    let p = &st["policy"];
    assert_eq!(p["pauseOnBattery"]["value"], false);
    assert_eq!(p["pauseOnBattery"]["source"], "user");
    assert_eq!(p["pauseOnMetered"]["source"], "built-in");
    assert_eq!(p["maxLinksPerHour"]["value"], 50);
    assert_eq!(p["maxLinksPerHour"]["source"], "managed-locked");
    assert_eq!(p["maxBytesPerDay"]["value"], 10_000_000);
    assert_eq!(p["maxBytesPerDay"]["source"], "managed-default");
    assert_eq!(p["allowedHours"]["value"], "09:00-17:00");
    assert_eq!(p["allowedHours"]["source"], "user");
    let c = &st["control"];
    assert_eq!(c["sensors"]["metered"], "unknown");
    assert!(
        c["decision"]["state"] == "active" || c["decision"]["state"] == "paused",
        "{c}"
    );
    assert_eq!(c["quotaLeft"]["linksThisHour"], 50);
    assert!(
        st["managedSettings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "max_links_per_hour")
    );

    std::fs::write(&managed, "max_links_per_hour = 0\n").unwrap();
    let (rc, _, err) = home.run(&["status", "--json"], &[]).await;
    assert_ne!(rc, 0);
    assert!(
        err.contains("managed.toml") && err.contains("max_links_per_hour"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
