//! Helpers for the store's unit tests: real SQLite files in temp dirs, keys,
//! requests, nonces and a clock that moves only when told.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::{Clock, NewKey, NonceUse, Store, principals};
use link_peeler_wire::protocol::FetchRequest;

/// 2023-11-14T22:13:20Z: an arbitrary fixed "now" for tests.
pub const T0: i64 = 1_700_000_000_000;

/// A migrated database file in its own temp dir (removed on drop).
pub struct TestDb {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub fn new() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        drop(super::schema::open(&path).unwrap());
        TestDb { path, _dir: dir }
    }

    /// A separate read-write connection, for setting up and checking state.
    pub fn conn(&self) -> rusqlite::Connection {
        super::schema::open(&self.path).unwrap()
    }

    /// Creates an API key with these limits; returns its id.
    pub fn key(&self, daily_limit: u32, max_queued: u32) -> String {
        let new = NewKey {
            daily_limit,
            max_queued,
            ..NewKey::named("test")
        };
        principals::create_key(&self.conn(), &new, T0)
            .unwrap()
            .key_id
    }

    /// Enrolls an active device with this id (claims check that it is).
    pub fn device(&self, device_id: &str) {
        self.conn()
            .execute(
                "INSERT INTO devices (id, name, secret, created_at) VALUES (?1, 'test', 'secret', ?2)",
                rusqlite::params![device_id, T0],
            )
            .unwrap();
    }

    /// A store on this file whose time is `clock`.
    pub fn store(&self, clock: &Arc<FakeClock>) -> Store {
        Store::open_with_clock(&self.path, clock.clone()).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// A clock that stands still until a test moves it.
#[derive(Debug)]
pub struct FakeClock(AtomicI64);

impl FakeClock {
    pub fn at(ms: i64) -> Arc<FakeClock> {
        Arc::new(FakeClock(AtomicI64::new(ms)))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn fetch(idempotency_key: &str, tracking_url: &str) -> FetchRequest {
    FetchRequest {
        idempotency_key: idempotency_key.to_owned(),
        tracking_url: tracking_url.to_owned(),
        source: None,
        row_id: None,
        options: None,
    }
}

pub fn nonce(key_id: &str, nonce: &str) -> NonceUse {
    NonceUse {
        key_id: key_id.to_owned(),
        nonce: nonce.to_owned(),
        expires_at: T0 / 1000 + 360,
        agent_state: None,
    }
}
