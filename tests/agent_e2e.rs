//! End to end with real processes: a relay process, agent processes and the
//! loopback lab; the agent gets its credentials from the environment here
//! (the keychain path has its own file). Faults: kill -9 mid-task, a relay
//! outage, a revoked device, a clock ten minutes off, a second instance,
//! SIGTERM with work in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod agent_support;

use std::time::Duration;

use agent_support::*;
use link_peeler::demo::lab::Lab;
use link_peeler_wire::api::ApiClient;
use link_peeler_wire::protocol::{Conclusion, JobStatus, RedirectKind};

/// Config that keeps long-polls short so the tests notice revocation quickly.
const SHORT_POLLS: &str = "poll_wait_seconds = 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_submission_comes_back_done_with_chain_and_resolved_by() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!("relay = \"{}\"\n", relay.url()));
    let mut agent = home.spawn_agent(&[], &env_creds(&device, &secret));

    let job = api
        .submit("e2e-1", &lab.url("/ad/click?id=7"), None)
        .await
        .unwrap();
    let job = api
        .wait_finished(&job.job_id, Duration::from_millis(50), PATIENCE)
        .await
        .unwrap();

    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert_eq!(job.resolved_by.as_deref(), Some(device.as_str()));
    let r = job.result.expect("result");
    assert_eq!(r.conclusion, Conclusion::Resolved);
    assert_eq!(
        r.final_url,
        lab.url("/landing/spring-sale?utm_source=demo&c=7")
    );
    let urls: Vec<_> = r.hops.iter().map(|h| h.url.clone()).collect();
    assert_eq!(
        urls,
        [
            lab.url("/ad/click?id=7"),
            lab.url("/track/redirect?c=7"),
            lab.url("/landing/spring-sale?utm_source=demo&c=7")
        ]
    );
    assert_eq!(r.hops[0].status, Some(302));
    assert_eq!(r.hops[1].status, Some(301));
    assert_eq!(r.hops[1].redirect_kind, Some(RedirectKind::Location));
    assert_eq!(r.redirect_count, 2);
    assert_eq!(home.outbox_len(), 0, "delivered results leave the outbox");

    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));
    let logs = home.logs();
    assert!(logs.contains("agent started"), "log file written: {logs}");
    for text in [logs, home.stderr()] {
        assert!(
            !text.contains(&secret),
            "the device secret leaked into a log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_task_then_the_job_completes_after_lease_expiry_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), Some(2)).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!("relay = \"{}\"\n{SHORT_POLLS}", relay.url()));
    let creds = env_creds(&device, &secret);
    // Capacity 1: while stuck on the slow page the agent cannot lease the task again.
    let mut first = home.spawn_agent(&["--capacity", "1"], &creds);

    let path = "/slow-once/kill9/60000";
    let job = api.submit("kill9", &lab.url(path), None).await.unwrap();
    wait_for("the agent to start resolving", || async {
        (lab.hits(path) > 0).then_some(())
    })
    .await;
    first.kill9().await;
    assert_ne!(
        api.job(&job.job_id).await.unwrap().status,
        JobStatus::Done,
        "nobody has finished the task yet"
    );

    let mut second = home.spawn_agent(&[], &creds);
    let job = api
        .wait_finished(&job.job_id, Duration::from_millis(100), PATIENCE)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert!(job.attempts >= 2, "re-leased after expiry: {job:?}");
    assert_eq!(job.resolved_by.as_deref(), Some(device.as_str()));
    assert_eq!(job.result.unwrap().conclusion, Conclusion::Resolved);
    second.signal("TERM");
    assert_eq!(second.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_outage_agent_backs_off_keeps_the_result_and_delivers_it_later() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(tmp.path(), None).await;
    let proxy = CountingProxy::start(relay.addr).await;
    let lab = Lab::start().await.unwrap();
    let (key_id, key_secret) = api_key(&relay);
    let api = ApiClient::new(&relay.url(), &key_id, &key_secret).unwrap();
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!("relay = \"{}\"\n{SHORT_POLLS}", proxy.url()));
    let mut agent = home.spawn_agent(&[], &env_creds(&device, &secret));

    let path = "/slow/1500";
    let job = api.submit("outage", &lab.url(path), None).await.unwrap();
    wait_for("the agent to start resolving", || async {
        (lab.hits(path) > 0).then_some(())
    })
    .await;
    relay.proc.kill9().await;

    wait_for("the finished result to be parked in the outbox", || async {
        (home.outbox_len() == 1).then_some(())
    })
    .await;
    // The relay stays down for several seconds; count what the agent sends meanwhile.
    let before = proxy.count();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = proxy.count() - before;
    assert!(
        during <= 15,
        "{during} connection attempts in 8 s of outage: that is a tight loop, not backoff"
    );
    assert_eq!(
        home.outbox_len(),
        1,
        "the result stays parked while the relay is down"
    );

    let relay2 = Relay::start(tmp.path(), None).await;
    proxy.set_upstream(relay2.addr);
    // Same database, so the same API key; only the port changed.
    let api = ApiClient::new(&relay2.url(), &key_id, &key_secret).unwrap();
    let job = api
        .wait_finished(&job.job_id, Duration::from_millis(100), PATIENCE)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert_eq!(
        job.attempts, 1,
        "delivered from the outbox, not resolved again"
    );
    assert_eq!(job.resolved_by.as_deref(), Some(device.as_str()));
    wait_for("the outbox to empty", || async {
        (home.outbox_len() == 0).then_some(())
    })
    .await;
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_device_stops_polling_and_says_sign_in_required() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!("relay = \"{}\"\n{SHORT_POLLS}", relay.url()));
    let mut agent = home.spawn_agent(&[], &env_creds(&device, &secret));
    wait_for("the agent to start", || async {
        home.logs().contains("agent started").then_some(())
    })
    .await;

    relay_admin(&relay.db, &["devices", "revoke", &device]);
    let code = agent.wait_exit().await;
    assert_eq!(code, Some(3), "exit code 3 means sign-in required");
    let stderr = home.stderr();
    assert!(stderr.contains("sign-in required"), "{stderr}");
    assert!(stderr.contains("revoked_key"), "{stderr}");
    assert!(!stderr.contains(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_clock_is_ten_minutes_off_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!("relay = \"{}\"\n", relay.url()));
    let creds = env_creds(&device, &secret);
    let env = [
        creds[0],
        creds[1],
        ("LINK_PEELER_TEST_CLOCK_SKEW_SECS", "-600"),
    ];
    let mut agent = home.spawn_agent(&[], &env);

    let job = api
        .submit("skew", &lab.url("/js-bounce"), None)
        .await
        .unwrap();
    let job = api
        .wait_finished(&job.job_id, Duration::from_millis(50), PATIENCE)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(job.result.unwrap().conclusion, Conclusion::Resolved);
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));
    assert!(
        home.logs().contains("our clock is off"),
        "the agent noticed and corrected its clock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_says_so_and_exits_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!("relay = \"{}\"\n", relay.url()));
    let creds = env_creds(&device, &secret);
    let mut first = home.spawn_agent(&[], &creds);
    wait_for("the first agent to start", || async {
        home.logs().contains("agent started").then_some(())
    })
    .await;

    let (code, _, stderr) = home
        .run(
            &["run", "--headless", "--allow-network", "127.0.0.0/8"],
            &creds,
        )
        .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    first.signal("TERM");
    assert_eq!(first.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_work_finish_posts_it_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!("relay = \"{}\"\n", relay.url()));
    let mut agent = home.spawn_agent(&[], &env_creds(&device, &secret));

    let path = "/slow/1500";
    let job = api.submit("drain", &lab.url(path), None).await.unwrap();
    wait_for("the agent to start resolving", || async {
        (lab.hits(path) > 0).then_some(())
    })
    .await;
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));

    let job = api.job(&job.job_id).await.unwrap();
    assert_eq!(
        job.status,
        JobStatus::Done,
        "posted during the drain: {job:?}"
    );
    assert_eq!(home.outbox_len(), 0);
    assert!(home.logs().contains("waiting for in-flight resolutions"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_and_keeps_nothing_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), None).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let (device, secret) = enroll_http(&relay).await;
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!("relay = \"{}\"\n", relay.url()));
    let mut agent = home.spawn_agent(&[], &env_creds(&device, &secret));

    let path = "/slow/60000";
    api.submit("twice", &lab.url(path), None).await.unwrap();
    wait_for("the agent to start resolving", || async {
        (lab.hits(path) > 0).then_some(())
    })
    .await;
    agent.signal("TERM");
    wait_for("the agent to begin draining", || async {
        home.logs()
            .contains("waiting for in-flight resolutions")
            .then_some(())
    })
    .await;
    agent.signal("INT");
    assert_eq!(agent.wait_exit().await, Some(130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_results_survive_a_restart_and_are_posted_first() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(tmp.path(), None).await;
    let proxy = CountingProxy::start(relay.addr).await;
    let lab = Lab::start().await.unwrap();
    let (key_id, key_secret) = api_key(&relay);
    let (device, secret) = enroll_http(&relay).await;
    let creds = env_creds(&device, &secret);
    let home = AgentHome::new(tmp.path(), "a");
    home.write_config(&format!("relay = \"{}\"\n{SHORT_POLLS}", proxy.url()));
    let mut agent = home.spawn_agent(&[], &creds);

    let api = ApiClient::new(&relay.url(), &key_id, &key_secret).unwrap();
    let path = "/slow/1000";
    let job = api.submit("restart", &lab.url(path), None).await.unwrap();
    wait_for("the agent to start resolving", || async {
        (lab.hits(path) > 0).then_some(())
    })
    .await;
    relay.proc.kill9().await;
    wait_for("the result to be parked", || async {
        (home.outbox_len() == 1).then_some(())
    })
    .await;
    agent.signal("TERM");
    assert_eq!(
        agent.wait_exit().await,
        Some(0),
        "a stop with parked results is clean"
    );
    assert_eq!(home.outbox_len(), 1, "the parked result survives the stop");

    let relay2 = Relay::start(tmp.path(), None).await;
    proxy.set_upstream(relay2.addr);
    let mut agent = home.spawn_agent(&[], &creds);
    let api = ApiClient::new(&relay2.url(), &key_id, &key_secret).unwrap();
    let job = api
        .wait_finished(&job.job_id, Duration::from_millis(50), PATIENCE)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(
        job.attempts, 1,
        "posted from the outbox, not resolved again"
    );
    assert_eq!(lab.hits(path), 1);
    wait_for("the outbox to empty", || async {
        (home.outbox_len() == 0).then_some(())
    })
    .await;
    assert!(home.logs().contains("delivering parked results"));
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_lease_was_lost_is_dropped_with_a_log_line() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path(), Some(1)).await;
    let lab = Lab::start().await.unwrap();
    let api = api_client(&relay);
    let (slow_dev, slow_secret) = enroll_http(&relay).await;
    let (fast_dev, fast_secret) = enroll_http(&relay).await;
    let slow = AgentHome::new(tmp.path(), "slow");
    let fast = AgentHome::new(tmp.path(), "fast");
    for h in [&slow, &fast] {
        h.write_config(&format!("relay = \"{}\"\n{SHORT_POLLS}", relay.url()));
    }
    // The slow agent leases the task and spends 4 s on the first request; its 1 s lease expires.
    let mut a = slow.spawn_agent(&["--capacity", "1"], &env_creds(&slow_dev, &slow_secret));
    let path = "/slow-once/lost/4000";
    let job = api.submit("lost", &lab.url(path), None).await.unwrap();
    wait_for("the slow agent to start resolving", || async {
        (lab.hits(path) > 0).then_some(())
    })
    .await;
    // A second agent picks the re-queued task up and finishes it at once.
    let mut b = fast.spawn_agent(&[], &env_creds(&fast_dev, &fast_secret));
    let done = api
        .wait_finished(&job.job_id, Duration::from_millis(50), PATIENCE)
        .await
        .unwrap();
    assert_eq!(done.resolved_by.as_deref(), Some(fast_dev.as_str()));
    wait_for("the slow agent to drop its stale result", || async {
        slow.logs().contains("dropping result").then_some(())
    })
    .await;
    assert!(slow.logs().contains("lease_lost"), "{}", slow.logs());
    assert_eq!(slow.outbox_len(), 0, "a lost lease's result is not kept");
    let again = api.job(&job.job_id).await.unwrap();
    assert_eq!(
        again.resolved_by.as_deref(),
        Some(fast_dev.as_str()),
        "the stale post changed nothing"
    );
    for p in [&mut a, &mut b] {
        p.signal("TERM");
        assert_eq!(p.wait_exit().await, Some(0));
    }
}
