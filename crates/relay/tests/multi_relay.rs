//! Several relay processes on one PostgreSQL database behave as one relay
//! (docs/relay-postgres.md): each task has one holder, a job submitted
//! through one relay wakes a poll held by another, idempotency keys and
//! nonces hold across relays, a relay killed with `kill -9` loses nothing,
//! and a PostgreSQL restart is a stretch of 503s, then business as usual.
//!
//! PostgreSQL only: these run in the PostgreSQL pass of `scripts/test`
//! (`LINK_PEELER_TEST_STORE=postgres`) and return at once otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pg::{self, PgCluster};
use common::process::RelayProcess;
use common::{Client, answer};
use link_peeler_relay::Database;
use link_peeler_relay::admin::{self, CreatedKey, NewKey};
use link_peeler_wire::protocol::{EnrollResponse, paths};
use link_peeler_wire::signing::Signer;

/// A hang guard, not a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

fn skip() -> bool {
    if pg::selected() {
        return false;
    }
    eprintln!("PostgreSQL only: set LINK_PEELER_TEST_STORE=postgres (scripts/test does)");
    true
}

fn http() -> reqwest::Client {
    link_peeler_wire::tls::init();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .unwrap()
}

/// `n` relay processes on a fresh database of the shared cluster.
struct Fleet {
    db: String,
    relays: Vec<RelayProcess>,
    http: reqwest::Client,
    _logs: tempfile::TempDir,
}

impl Fleet {
    async fn start(cluster: &PgCluster, n: usize, extra: &[&str]) -> Fleet {
        let db = cluster.create_database();
        Fleet::on(db, n, extra).await
    }

    async fn on(db: String, n: usize, extra: &[&str]) -> Fleet {
        let logs = tempfile::tempdir().unwrap();
        let mut relays = Vec::new();
        for i in 0..n {
            let log = logs.path().join(format!("relay{i}.log"));
            relays.push(RelayProcess::start(&db, extra, log).await);
        }
        Fleet {
            db,
            relays,
            http: http(),
            _logs: logs,
        }
    }

    fn database(&self) -> Database {
        self.db.parse().unwrap()
    }

    fn key(&self) -> CreatedKey {
        admin::create_key(
            self.database(),
            &NewKey {
                daily_limit: 1_000_000,
                max_queued: 100_000,
                ..NewKey::named("fleet")
            },
        )
        .unwrap()
    }

    fn api(&self, key: &CreatedKey, relay: usize) -> Client {
        Client {
            http: self.http.clone(),
            base: self.relays[relay].url.clone(),
            signer: Signer::new(key.key_id.clone(), key.secret.clone().into_bytes()),
        }
    }

    /// Enrolls a device through relay `relay` and returns a client for it there.
    async fn device(&self, relay: usize) -> Client {
        let code = admin::create_enrollment_code(self.database(), "agent").unwrap();
        let r = self
            .http
            .post(format!("{}{}", self.relays[relay].url, paths::AGENT_ENROLL))
            .header("content-type", "application/json")
            .body(format!(r#"{{"code":"{}","name":"agent"}}"#, code.code))
            .send()
            .await
            .unwrap();
        let a = answer(r).await;
        assert_eq!(a.status, 200, "{a:?}");
        let creds: EnrollResponse = serde_json::from_value(a.json).unwrap();
        Client {
            http: self.http.clone(),
            base: self.relays[relay].url.clone(),
            signer: Signer::new(creds.device_id, creds.device_secret.into_bytes()),
        }
    }
}

fn tasks(a: &common::Answer) -> Vec<(String, String, u64)> {
    a.json["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("not a poll answer: {a:?}"))
        .iter()
        .map(|t| {
            (
                t["taskId"].as_str().unwrap().to_owned(),
                t["leaseId"].as_str().unwrap().to_owned(),
                t["attempt"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_through_three_relays_are_each_done_exactly_once() {
    const JOBS: usize = 1_000;
    const AGENTS: usize = 20;
    if skip() {
        return;
    }
    let fleet = Fleet::start(pg::shared(), 3, &[]).await;
    let key = fleet.key();
    // Every task id handed out, with how many times; and every result accepted.
    let handed: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let done: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let device = fleet.device(i % 3).await;
        let (handed, done) = (handed.clone(), done.clone());
        agents.push(tokio::spawn(async move {
            loop {
                if done.lock().unwrap().len() == JOBS {
                    return;
                }
                let a = device.poll(4, 2).await;
                assert_eq!(a.status, 200, "{a:?}");
                for (task, lease, attempt) in tasks(&a) {
                    assert_eq!(attempt, 1, "no lease expires in this test");
                    *handed.lock().unwrap().entry(task.clone()).or_default() += 1;
                    let r = device.post_result(&task, &lease, "https://a.test/").await;
                    assert_eq!(r.status, 200, "{r:?}");
                    assert!(done.lock().unwrap().insert(task), "a result accepted twice");
                }
            }
        }));
    }
    // Submissions go round-robin over the relays, 32 at a time, while the
    // agents are polling: a job submitted through one relay reaches polls
    // held on the others.
    let apis: Vec<Client> = (0..3).map(|r| fleet.api(&key, r)).collect();
    let mut submitted = HashSet::new();
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(32) {
        let sends = chunk.iter().map(|&i| {
            let api = apis[i % 3].clone();
            async move {
                api.submit(&format!("job-{i}"), &format!("https://a.test/{i}"))
                    .await
            }
        });
        for a in futures_util::future::join_all(sends).await {
            assert_eq!(a.status, 202, "{a:?}");
            submitted.insert(a.json["jobId"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(submitted.len(), JOBS);
    tokio::time::timeout(GUARD * 3, futures_util::future::try_join_all(agents))
        .await
        .expect("the fleet did not finish 1,000 jobs")
        .unwrap();
    {
        let handed = handed.lock().unwrap();
        assert_eq!(handed.len(), JOBS, "every job was handed out");
        let twice: Vec<_> = handed.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            twice.is_empty(),
            "tasks with more than one holder: {twice:?}"
        );
        assert_eq!(*done.lock().unwrap(), submitted);
    }
    // And every relay reads every job as done.
    for (r, api) in apis.iter().enumerate() {
        for id in submitted.iter().take(20) {
            let j = api.get(&paths::job(id)).await;
            assert_eq!(j.json["status"], "done", "relay {r}: {j:?}");
        }
    }
    let keys = admin::list_keys(fleet.database()).unwrap();
    assert_eq!(keys[0].queued, 0, "the unfinished-job count is exact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_through_three_relays_at_once_is_one_job() {
    if skip() {
        return;
    }
    let fleet = Fleet::start(pg::shared(), 3, &[]).await;
    let key = fleet.key();
    let sends = (0..24).map(|i| {
        let api = fleet.api(&key, i % 3);
        async move { api.submit("same", "https://a.test/same").await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let ids: HashSet<_> = answers
        .iter()
        .map(|a| {
            assert!(a.status == 202 || a.status == 200, "{a:?}");
            a.json["jobId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one job for one idempotency key");
    let created = answers.iter().filter(|a| a.status == 202).count();
    assert_eq!(created, 1, "exactly one submission created it");
    let other = fleet
        .api(&key, 1)
        .submit("same", "https://a.test/other")
        .await;
    assert_eq!((other.status, other.code()), (422, "idempotency_conflict"));
    assert_eq!(admin::list_keys(fleet.database()).unwrap()[0].queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_replayed_through_another_relay_is_refused() {
    if skip() {
        return;
    }
    let fleet = Fleet::start(pg::shared(), 2, &[]).await;
    let key = fleet.key();
    let (a, b) = (fleet.api(&key, 0), fleet.api(&key, 1));
    let body = r#"{"idempotencyKey":"n1","trackingUrl":"https://a.test/"}"#;
    let captured = a.capture(body);
    let first = a.send_post(paths::LINKS_FETCH, &captured).await;
    assert_eq!(first.status, 202, "{first:?}");
    let replay = b.send_post(paths::LINKS_FETCH, &captured).await;
    assert_eq!((replay.status, replay.code()), (401, "replayed_nonce"));

    // The same signed request through both relays at the same moment: one wins.
    for round in 0..10 {
        let body =
            format!(r#"{{"idempotencyKey":"race-{round}","trackingUrl":"https://a.test/"}}"#);
        let captured = a.capture(&body);
        let (x, y) = tokio::join!(
            a.send_post(paths::LINKS_FETCH, &captured),
            b.send_post(paths::LINKS_FETCH, &captured)
        );
        let mut statuses = [x.status, y.status];
        statuses.sort();
        assert_eq!(statuses, [202, 401], "round {round}: {x:?} {y:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_quotas_across_relays_under_concurrency() {
    if skip() {
        return;
    }
    let fleet = Fleet::start(pg::shared(), 3, &[]).await;
    let key = admin::create_key(
        fleet.database(),
        &NewKey {
            daily_limit: 1_000,
            max_queued: 25,
            ..NewKey::named("limited")
        },
    )
    .unwrap();
    let sends = (0..60).map(|i| {
        let api = fleet.api(&key, i % 3);
        async move { api.submit(&format!("q{i}"), "https://a.test/").await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    let full = answers
        .iter()
        .filter(|a| (a.status, a.code()) == (429, "queue_full"))
        .count();
    assert_eq!((accepted, full), (25, 35), "maxQueued 25, exactly");
    assert_eq!(admin::list_keys(fleet.database()).unwrap()[0].queued, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_while_holding_polls_and_leases_loses_nothing() {
    const JOBS: usize = 12;
    if skip() {
        return;
    }
    let mut fleet = Fleet::start(pg::shared(), 2, &["--lease-seconds", "2"]).await;
    let key = fleet.key();
    let doomed = fleet.api(&key, 0);
    let mut ids = HashSet::new();
    for i in 0..JOBS {
        let a = doomed.submit(&format!("k{i}"), "https://a.test/").await;
        assert_eq!(a.status, 202);
        ids.insert(a.json["jobId"].as_str().unwrap().to_owned());
    }
    // On relay 0: an agent holds leases on every job and never answers;
    // another holds a long-poll (the queue is empty, so it parks).
    let holder = fleet.device(0).await;
    let mut leased = HashSet::new();
    for _ in 0..JOBS / 4 {
        for (task, _, _) in tasks(&holder.poll(4, 0).await) {
            leased.insert(task);
        }
    }
    assert_eq!(leased, ids);
    let waiter = fleet.device(0).await;
    let held = tokio::spawn(async move { waiter.poll(1, 30).await });
    fleet.wait_for_polls_to_park().await;
    fleet.relays.remove(0).kill().await;
    let held = tokio::time::timeout(GUARD, held).await.unwrap();
    assert!(held.is_err(), "the held poll died with its relay: {held:?}");

    // Relay 1 (now the only one) finishes everything once the leases expired.
    let survivor = fleet.device(0).await;
    let mut finished = HashSet::new();
    let mut second_attempts = 0;
    tokio::time::timeout(GUARD, async {
        while finished.len() < JOBS {
            let a = survivor.poll(4, 5).await;
            assert_eq!(a.status, 200, "{a:?}");
            for (task, lease, attempt) in tasks(&a) {
                assert_eq!(attempt, 2, "every task was leased once before");
                second_attempts += 1;
                let r = survivor.post_result(&task, &lease, "https://a.test/").await;
                assert_eq!(r.status, 200, "{r:?}");
                finished.insert(task);
            }
        }
    })
    .await
    .expect("the surviving relay did not finish every job");
    assert_eq!(finished, ids, "nothing accepted was lost");
    assert_eq!(
        second_attempts, JOBS,
        "the held tasks came back after expiry"
    );
}

impl Fleet {
    /// Gives a poll just sent time to reach its relay and park (a relay
    /// process exposes no count to wait on; this is not a timing assertion).
    async fn wait_for_polls_to_park(&self) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_is_503s_then_recovery_with_nothing_lost() {
    if skip() {
        return;
    }
    // A cluster of its own: this test stops it.
    let cluster = PgCluster::start();
    let fleet = Fleet::start(&cluster, 2, &[]).await;
    let key = fleet.key();
    let api = fleet.api(&key, 0);
    let other = fleet.api(&key, 1);
    let mut ids = Vec::new();
    for i in 0..5 {
        let a = api.submit(&format!("before-{i}"), "https://a.test/").await;
        assert_eq!(a.status, 202, "{a:?}");
        ids.push(a.json["jobId"].as_str().unwrap().to_owned());
    }

    cluster.stop();
    for client in [&api, &other] {
        let down = client.submit("during", "https://a.test/").await;
        assert_eq!((down.status, down.code()), (503, "overloaded"), "{down:?}");
        assert_eq!(down.headers["retry-after"], "1");
        let read = client.get(&paths::job(&ids[0])).await;
        assert_eq!(read.status, 503, "{read:?}");
    }
    let health = fleet
        .http
        .get(format!("{}/healthz", fleet.relays[0].url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503, "a load balancer sees the relay down");

    cluster.start_server();
    // Both relays reconnect by themselves.
    for client in [&api, &other] {
        let back = tokio::time::timeout(GUARD, async {
            loop {
                let a = client.get(&paths::job(&ids[0])).await;
                if a.status == 200 {
                    return a;
                }
                assert_eq!(a.status, 503, "{a:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the relay did not reconnect");
        assert_eq!(back.json["status"], "queued");
    }
    let after = other.submit("after", "https://a.test/").await;
    assert_eq!(after.status, 202, "{after:?}");
    ids.push(after.json["jobId"].as_str().unwrap().to_owned());
    // Nothing accepted before the restart was lost; agents get every job.
    let agent = fleet.device(1).await;
    let mut got = HashSet::new();
    tokio::time::timeout(GUARD, async {
        while got.len() < ids.len() {
            for (task, lease, _) in tasks(&agent.poll(4, 5).await) {
                let r = agent.post_result(&task, &lease, "https://a.test/").await;
                assert_eq!(r.status, 200, "{r:?}");
                got.insert(task);
            }
        }
    })
    .await
    .expect("not every job reached the agent");
    assert_eq!(got, ids.into_iter().collect::<HashSet<_>>());
}

/// The database password is never shown: not by `--help` with the variable
/// set, not in the relay's log, not in the error of a failed connection.
#[tokio::test]
async fn the_database_password_never_shows() {
    if skip() {
        return;
    }
    let secret = "Sup3r-S3cret-pw";
    let url = format!(
        "postgres://nobody:{secret}@localhost/nothere?host={}&connect_timeout=2",
        pg::shared().socket_dir().display()
    );
    let bin = common::process::relay_bin();
    let help = std::process::Command::new(&bin)
        .env("LINK_PEELER_RELAY_DB", &url)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("LINK_PEELER_RELAY_DB"), "{text}");
    assert!(!text.contains(secret), "{text}");
    for args in [
        &["keys", "list"][..],
        &["serve", "--listen", "127.0.0.1:0"][..],
    ] {
        let out = std::process::Command::new(&bin)
            .env("LINK_PEELER_RELAY_DB", &url)
            .env("RUST_LOG", "debug")
            .args(args)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{args:?} against a database that is not there"
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("postgres://nobody:***@localhost"), "{all}");
        assert!(!all.contains(secret), "{args:?}: {all}");
    }
}
