//! Shared helpers for relay tests: a real relay on 127.0.0.1:0 with a real
//! SQLite file in a temp dir — or, with `LINK_PEELER_TEST_STORE=postgres`,
//! a fresh database in a throwaway PostgreSQL cluster ([`pg`]) — and a
//! signing HTTP client.
#![allow(dead_code)]

pub mod pg;
pub mod process;
pub mod receiver;

use std::time::Duration;

use link_peeler_relay::admin::{self, CreatedKey, NewKey};
use link_peeler_relay::{Database, RelayConfig, RunningRelay};
use link_peeler_wire::protocol::{EnrollResponse, paths};
use link_peeler_wire::signing::{Signer, unix_now};
use reqwest::header::HeaderMap;
use serde_json::Value;

pub struct TestRelay {
    pub relay: RunningRelay,
    /// The relay's database: a SQLite file, or a PostgreSQL database.
    pub db: Database,
    /// `--db` as given to the relay (the PostgreSQL URL unredacted).
    pub db_arg: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// One HTTP answer, body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Answer {
    /// The protocol.md §6 error code, or "" for a success.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestRelay {
    pub async fn start() -> TestRelay {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut RelayConfig)) -> TestRelay {
        link_peeler_wire::tls::init();
        let dir = tempfile::tempdir().unwrap();
        let db_arg = if pg::selected() {
            pg::shared().create_database()
        } else {
            dir.path().join("relay.db").display().to_string()
        };
        let db: Database = db_arg.parse().unwrap();
        let mut config = RelayConfig {
            db: db.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..RelayConfig::default()
        };
        tweak(&mut config);
        let relay = link_peeler_relay::serve(config).await.unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .unwrap();
        TestRelay {
            relay,
            db,
            db_arg,
            http,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.relay.url(), path)
    }

    pub fn key(&self) -> CreatedKey {
        admin::create_key(&self.db, &NewKey::named("test")).unwrap()
    }

    pub fn key_with(&self, daily_limit: u32, max_queued: u32) -> CreatedKey {
        admin::create_key(
            &self.db,
            &NewKey {
                daily_limit,
                max_queued,
                ..NewKey::named("limited")
            },
        )
        .unwrap()
    }

    pub fn api(&self, key: &CreatedKey) -> Client {
        Client {
            http: self.http.clone(),
            base: self.relay.url(),
            signer: Signer::new(key.key_id.clone(), key.secret.clone().into_bytes()),
        }
    }

    /// Enrolls a device through the real endpoint and returns a client for it.
    pub async fn device(&self) -> (EnrollResponse, Client) {
        let code = admin::create_enrollment_code(&self.db, "laptop").unwrap();
        let a = self
            .raw_post(
                paths::AGENT_ENROLL,
                &[],
                format!(
                    r#"{{"code":"{}","name":"laptop-7","platform":"linux","version":"0.1.0"}}"#,
                    code.code
                )
                .into_bytes(),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        let creds: EnrollResponse = serde_json::from_value(a.json).unwrap();
        let client = Client {
            http: self.http.clone(),
            base: self.relay.url(),
            signer: Signer::new(
                creds.device_id.clone(),
                creds.device_secret.clone().into_bytes(),
            ),
        };
        (creds, client)
    }

    /// A POST with exactly the given headers and body.
    pub async fn raw_post(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
        let mut req = self.http.post(self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (u16, HeaderMap, String) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }
}

pub async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        json,
    }
}

/// Signs requests for one key or device.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub signer: Signer,
}

impl Client {
    pub fn headers(&self, body: &[u8]) -> Vec<(&'static str, String)> {
        self.signer.headers(body).to_vec()
    }

    pub fn headers_at(&self, ts: i64, nonce: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        self.signer
            .headers_with(&ts.to_string(), nonce, body)
            .to_vec()
    }

    pub async fn post(&self, path: &str, body: &str) -> Answer {
        let h = self.headers(body.as_bytes());
        self.post_with(path, &h, body.as_bytes().to_vec()).await
    }

    pub async fn post_with(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
        let mut req = self
            .http
            .post(format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        let mut req = self.http.get(format!("{}{}", self.base, path));
        for (k, v) in self.headers(b"") {
            req = req.header(k, v);
        }
        answer(req.send().await.unwrap()).await
    }

    /// Submits a job for `url` under idempotency key `idem`.
    pub async fn submit(&self, idem: &str, url: &str) -> Answer {
        self.post(
            paths::LINKS_FETCH,
            &format!(r#"{{"idempotencyKey":"{idem}","trackingUrl":"{url}"}}"#),
        )
        .await
    }

    pub async fn poll(&self, capacity: u32, wait: u32) -> Answer {
        self.post(
            paths::AGENT_POLL,
            &format!(r#"{{"capacity":{capacity},"waitSeconds":{wait}}}"#),
        )
        .await
    }
}

/// A fresh nonce.
pub fn nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn now() -> i64 {
    unix_now()
}

/// A minimal valid resolution result for `url`.
pub fn result_json(url: &str) -> String {
    format!(
        r#"{{"inputUrl":"{url}","finalUrl":"{url}","conclusion":"resolved","finalStatus":200,"redirectCount":0,"elapsedMs":3,"error":null,"hops":[{{"url":"{url}","status":200,"redirectKind":null,"location":null,"elapsedMs":3,"remoteAddr":"127.0.0.1:80"}}]}}"#
    )
}

/// A signed request captured once, so that the identical bytes (headers and
/// body) can be sent again, to any route: the method, path and query are not
/// part of the signature (protocol.md §2.3).
#[derive(Clone)]
pub struct Captured {
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Client {
    /// Signs `body` once with a fresh nonce.
    pub fn capture(&self, body: &str) -> Captured {
        Captured {
            headers: self.headers(body.as_bytes()),
            body: body.as_bytes().to_vec(),
        }
    }

    /// Sends a captured request as a POST to `path`.
    pub async fn send_post(&self, path: &str, c: &Captured) -> Answer {
        self.post_with(path, &c.headers, c.body.clone()).await
    }

    /// Sends a captured request as a GET to `path` (a GET may carry a body).
    pub async fn send_get(&self, path: &str, c: &Captured) -> Answer {
        let mut req = self
            .http
            .get(format!("{}{}", self.base, path))
            .body(c.body.clone());
        for (k, v) in &c.headers {
            req = req.header(*k, v);
        }
        answer(req.send().await.unwrap()).await
    }

    /// Posts `result_json(url)` for a task with its lease.
    pub async fn post_result(&self, task_id: &str, lease_id: &str, url: &str) -> Answer {
        self.post(
            &paths::task_result(task_id),
            &format!(
                r#"{{"leaseId":"{lease_id}","result":{}}}"#,
                result_json(url)
            ),
        )
        .await
    }
}

impl TestRelay {
    /// Runs SQL on the relay's database from a connection of its own, as an
    /// operator (or the passing of time) would change it.
    pub fn sql(&self, sql: &str) {
        match &self.db {
            Database::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Database::Postgres(url) => {
                use link_peeler_relay::store::pg::admin;
                let sql = sql.to_owned();
                admin::run(url, |c| {
                    Box::pin(async move { admin::execute_batch(c, &sql).await })
                })
                .unwrap();
            }
        }
    }

    /// Waits until exactly this many long-polls are parked waiting for a task
    /// (their first claim done); panics after 20 s.
    pub async fn wait_for_held_polls(&self, n: usize) {
        for _ in 0..2000 {
            if self.relay.store().held_polls() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {n} held polls, have {}",
            self.relay.store().held_polls()
        );
    }

    /// Runs the `link-peeler-relay` binary on this relay's database, as an
    /// admin would from another process, and asserts it succeeded.
    pub fn admin_cli(&self, args: &[&str]) {
        let out = std::process::Command::new(process::relay_bin())
            .env("LINK_PEELER_RELAY_DB", &self.db_arg)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl TestRelay {
    /// A GET on the operations listener (`/metrics` lives only there).
    pub async fn ops_get(&self, path: &str) -> (u16, HeaderMap, String) {
        let base = self
            .relay
            .ops_url()
            .expect("the test relay has an ops listener");
        let r = self.http.get(format!("{base}{path}")).send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }
}
