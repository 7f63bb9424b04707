//! Durable state of the relay: one SQLite file in WAL mode (the default), or
//! a PostgreSQL database that several relays share.
//!
//! [`Store`] is the one handle the HTTP layer sees; each operation dispatches
//! to the backend it was opened on ([`Backend`]), so adding an operation
//! means one method here and one function per backend, each in the file of
//! its concept (`jobs.rs` / `pg/jobs.rs`, `principals.rs` / `pg/principals.rs`).
//!
//! SQLite: writes go through one thread with group commit ([`writer`]); reads
//! use a small pool of read-only connections, which WAL lets run beside the
//! writer ([`sqlite`]). Admin commands (`keys create`, `devices revoke`, …)
//! open the same file from another process with [`open_admin`]; SQLite's
//! locking and `busy_timeout` make that safe while a relay is serving.
//!
//! PostgreSQL ([`pg`]): a bounded pool, one short transaction per operation,
//! claims with `FOR UPDATE SKIP LOCKED`, uniqueness by constraints, and
//! `LISTEN/NOTIFY` to wake long-polls held by other relays.
//!
//! Held long-polls wait in `waiters.rs`, woken one per task made available,
//! and a device may have [`MAX_POLLS_PER_DEVICE`] polls in flight (per relay).
//!
//! Operations answer [`StoreError`], never an HTTP type; time comes from a
//! [`Clock`], so tests can move it instead of waiting.

mod database;
mod error;
mod events;
mod jobs;
pub mod pg;
mod principals;
mod schema;
mod sqlite;
#[cfg(test)]
mod testing;
mod waiters;
mod webhooks;
mod writer;

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

pub use database::{Database, PgUrl};
pub use error::{CodeRefusal, StoreError};
pub use events::ListFilter;
pub use jobs::{Claimed, ClaimedTask, Reaped, Submitted};
pub use principals::{
    CreatedKey, DEFAULT_CODE_TTL_MS, DEFAULT_DAILY_LIMIT, DEFAULT_MAX_QUEUED, DeviceInfo,
    EnrollmentCode, KeyInfo, Lookup, NewKey, PrincipalKind,
};
pub use schema::SCHEMA_VERSION;
#[cfg(test)]
use sqlite::READERS;
use waiters::Waiters;
pub use waiters::{MAX_POLLS_PER_DEVICE, PollPermit, Waiter};
pub use webhooks::{Attempt, DueDelivery, Slots, target_of};
use writer::Op;
pub use writer::{NonceUse, WriterStats};

use link_peeler_wire::protocol::{EnrollRequest, EnrollResponse, Event, FetchRequest, Job};

/// Where the store's "now" comes from: every lease, code expiry and quota day
/// is decided by the time the store stamps on an op when it is sent.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::ids::now_ms()
    }
}

/// A handle to the relay's database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// Held long-polls, woken one per task made available.
    waiters: Arc<Waiters>,
    stats: Arc<WriterStats>,
    clock: Arc<dyn Clock>,
    /// The last finish number committed: the results feed and the webhook
    /// dispatcher wait on it.
    finishes: tokio::sync::watch::Receiver<i64>,
}

/// The database behind a [`Store`].
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(pg::Pg),
}

impl Store {
    /// Opens (creating and migrating) the SQLite file and starts the writer thread.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        Store::open_with_clock(path, Arc::new(SystemClock))
    }

    /// [`Store::open`] with another clock (tests move time instead of waiting it out).
    pub fn open_with_clock(path: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Store> {
        let waiters = Arc::new(Waiters::default());
        let stats = Arc::new(WriterStats::default());
        let (backend, finishes) = sqlite::Sqlite::open(path, waiters.clone(), stats.clone())?;
        Ok(Store::with(
            Backend::Sqlite(backend),
            waiters,
            stats,
            clock,
            finishes,
        ))
    }

    /// Opens either backend: SQLite on a blocking thread, PostgreSQL by
    /// connecting its pool and migrating (safe with other relays starting).
    pub async fn connect(db: &Database, clock: Arc<dyn Clock>) -> anyhow::Result<Store> {
        match db {
            Database::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Store::open_with_clock(&path, clock)).await?
            }
            Database::Postgres(url) => {
                let waiters = Arc::new(Waiters::default());
                let stats = Arc::new(WriterStats::default());
                let (backend, finishes) =
                    pg::Pg::connect(url, waiters.clone(), stats.clone()).await?;
                Ok(Store::with(
                    Backend::Postgres(backend),
                    waiters,
                    stats,
                    clock,
                    finishes,
                ))
            }
        }
    }

    fn with(
        backend: Backend,
        waiters: Arc<Waiters>,
        stats: Arc<WriterStats>,
        clock: Arc<dyn Clock>,
        finishes: tokio::sync::watch::Receiver<i64>,
    ) -> Store {
        Store {
            inner: Arc::new(Inner {
                backend,
                waiters,
                stats,
                clock,
                finishes,
            }),
        }
    }

    /// Moves when jobs finish (to the last finish number committed; on
    /// PostgreSQL also when another relay finished one).
    pub fn finishes(&self) -> tokio::sync::watch::Receiver<i64> {
        self.inner.finishes.clone()
    }

    /// The store clock's "now" (ms since the epoch).
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn kind(&self) -> &'static str {
        match &self.inner.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Commits and ops so far (SQLite: of the group commit; PostgreSQL: one
    /// commit per op).
    pub fn writer_stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Lets one more poll of `device_id` in, or `None` when the device
    /// already has [`MAX_POLLS_PER_DEVICE`] in flight. Each attempt of an
    /// admitted poll that may wait registers with [`PollPermit::register`]
    /// *before* it claims, then waits on [`Waiter::woken`].
    pub fn admit_poll(&self, device_id: &str) -> Option<PollPermit> {
        self.inner.waiters.admit(device_id)
    }

    /// Long-polls parked right now, waiting for a task.
    pub fn held_polls(&self) -> usize {
        self.inner.waiters.parked()
    }

    /// Stops accepting writes, lets the writer finish what it has, and waits
    /// for it (SQLite); closes the pool and the listener (PostgreSQL).
    pub fn close(&self) {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.close(),
            Backend::Postgres(p) => p.close(),
        }
    }

    /// Runs `f` on a pooled read-only SQLite connection, on tokio's blocking
    /// pool. SQLite only (tests and SQLite-specific checks).
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.read(f).await,
            Backend::Postgres(_) => Err(StoreError::internal(
                "read",
                "a SQLite read on a PostgreSQL store",
            )),
        }
    }

    /// Whether the database answers (`/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await,
            Backend::Postgres(p) => p.ping().await,
        }
    }

    pub async fn lookup_key(&self, key_id: &str) -> Result<Lookup, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                let key_id = key_id.to_owned();
                s.read(move |c| principals::lookup(c, &key_id)).await
            }
            Backend::Postgres(p) => p.lookup(key_id).await,
        }
    }

    pub async fn consume_nonce(&self, nonce: NonceUse) -> Result<(), StoreError> {
        let now = self.now();
        match &self.inner.backend {
            Backend::Sqlite(s) => s.call(Op::Nonce, Some(nonce), now).await,
            Backend::Postgres(p) => p.consume_nonce(&nonce, now).await,
        }
    }

    pub async fn submit(
        &self,
        key_id: &str,
        request: FetchRequest,
        nonce: NonceUse,
    ) -> Result<Submitted, StoreError> {
        let now = self.now();
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                let key_id = key_id.to_owned();
                s.call(
                    |reply| Op::Submit {
                        key_id,
                        request,
                        reply,
                    },
                    Some(nonce),
                    now,
                )
                .await
            }
            Backend::Postgres(p) => p.submit(key_id, &request, &nonce, now).await,
        }
    }

    /// Submits each request in order, in one transaction (`POST /api/links/batch`).
    pub async fn submit_batch(
        &self,
        key_id: &str,
        requests: Vec<FetchRequest>,
        nonce: NonceUse,
    ) -> Result<Vec<Result<Submitted, StoreError>>, StoreError> {
        let now = self.now();
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                let key_id = key_id.to_owned();
                s.call(
                    |reply| Op::SubmitBatch {
                        key_id,
                        requests,
                        reply,
                    },
                    Some(nonce),
                    now,
                )
                .await
            }
            Backend::Postgres(p) => p.submit_batch(key_id, &requests, &nonce, now).await,
        }
    }

    /// Up to `limit` of the key's finished jobs after the finish number `after`.
    pub async fn events(
        &self,
        key_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                let key_id = key_id.to_owned();
                s.read(move |c| events::page(c, &key_id, after, limit))
                    .await
            }
            Backend::Postgres(p) => p.events(key_id, after, limit).await,
        }
    }

    /// One page of the key's jobs, and the next page's cursor.
    pub async fn list_jobs(
        &self,
        key_id: &str,
        filter: ListFilter,
    ) -> Result<(Vec<Job>, Option<i64>), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                let key_id = key_id.to_owned();
                s.read(move |c| events::list(c, &key_id, &filter)).await
            }
            Backend::Postgres(p) => p.list_jobs(key_id, &filter).await,
        }
    }

    /// Claims due webhook deliveries that fit `slots` for one attempt each.
    pub async fn claim_deliveries(
        &self,
        lease_ms: i64,
        slots: Slots,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let now = self.now();
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                s.call(
                    |reply| Op::ClaimDeliveries {
                        lease_ms,
                        slots,
                        reply,
                    },
                    None,
                    now,
                )
                .await
            }
            Backend::Postgres(p) => p.claim_deliveries(lease_ms, &slots, now).await,
        }
    }

    /// Records how a webhook attempt ended.
    pub async fn record_attempt(&self, attempt: Attempt) -> Result<(), StoreError> {
        let now = self.now();
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                s.call(|reply| Op::RecordAttempt { attempt, reply }, None, now)
                    .await
            }
            Backend::Postgres(p) => p.record_attempt(&attempt).await,
        }
    }

    /// When the earliest pending webhook delivery is due.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.read(webhooks::next_due).await,
            Backend::Postgres(p) => p.next_delivery_due().await,
        }
    }

    /// Webhook deliveries by state, for `/metrics`.
    pub async fn count_deliveries_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.read(webhooks::count_by_state).await,
            Backend::Postgres(p) => p.count_deliveries_by_state().await,
        }
    }

    /// A job as its owner sees it; `None` for unknown ids and other keys' jobs.
    pub async fn get_job(&self, key_id: &str, job_id: &str) -> Result<Option<Job>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                let (key_id, job_id) = (key_id.to_owned(), job_id.to_owned());
                s.read(move |c| jobs::get(c, &key_id, &job_id)).await
            }
            Backend::Postgres(p) => p.get_job(key_id, job_id).await,
        }
    }

    pub async fn find_job(
        &self,
        key_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<Job>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                let (key_id, idempotency_key) = (key_id.to_owned(), idempotency_key.to_owned());
                s.read(move |c| jobs::find_by_idempotency_key(c, &key_id, &idempotency_key))
                    .await
            }
            Backend::Postgres(p) => p.find_job(key_id, idempotency_key).await,
        }
    }

    /// Leases up to `capacity` tasks to the device, unless it was revoked.
    pub async fn claim(
        &self,
        device_id: &str,
        capacity: u32,
        lease_ms: i64,
        nonce: Option<NonceUse>,
    ) -> Result<Claimed, StoreError> {
        let now = self.now();
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                let device_id = device_id.to_owned();
                s.call(
                    |reply| Op::Claim {
                        device_id,
                        capacity,
                        lease_ms,
                        reply,
                    },
                    nonce,
                    now,
                )
                .await
            }
            Backend::Postgres(p) => {
                p.claim(device_id, capacity, lease_ms, nonce.as_ref(), now)
                    .await
            }
        }
    }

    /// Returns leases to the queue without waiting for the outcome.
    pub fn release(&self, lease_ids: Vec<String>) {
        if lease_ids.is_empty() {
            return;
        }
        let now = self.now();
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                let _ = s.send(Op::Release { lease_ids }, None, now);
            }
            Backend::Postgres(p) => p.release(lease_ids, now),
        }
    }

    pub async fn post_result(
        &self,
        device_id: &str,
        task_id: &str,
        lease_id: &str,
        result_json: String,
        nonce: NonceUse,
    ) -> Result<(), StoreError> {
        let now = self.now();
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                let (device_id, task_id, lease_id) = (
                    device_id.to_owned(),
                    task_id.to_owned(),
                    lease_id.to_owned(),
                );
                s.call(
                    |reply| Op::PostResult {
                        device_id,
                        task_id,
                        lease_id,
                        result_json,
                        reply,
                    },
                    Some(nonce),
                    now,
                )
                .await
            }
            Backend::Postgres(p) => {
                p.post_result(device_id, task_id, lease_id, &result_json, &nonce, now)
                    .await
            }
        }
    }

    pub async fn enroll(&self, request: EnrollRequest) -> Result<EnrollResponse, StoreError> {
        let now = self.now();
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                s.call(|reply| Op::Enroll { request, reply }, None, now)
                    .await
            }
            Backend::Postgres(p) => p.enroll(&request, now).await,
        }
    }

    /// Requeues expired leases and prunes nonces and old jobs.
    pub async fn maintain(
        &self,
        max_expiries: u32,
        retention_ms: i64,
    ) -> Result<Reaped, StoreError> {
        let now = self.now();
        match &self.inner.backend {
            Backend::Sqlite(s) => {
                s.call(
                    |reply| Op::Maintain {
                        max_expiries,
                        retention_ms,
                        reply,
                    },
                    None,
                    now,
                )
                .await
            }
            Backend::Postgres(p) => p.maintain(max_expiries, retention_ms, now).await,
        }
    }

    /// Number of jobs in each state, for `/metrics`.
    pub async fn count_jobs_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.read(jobs::count_by_status).await,
            Backend::Postgres(p) => p.count_by_status().await,
        }
    }
}

/// Opens the SQLite database for an admin command (separate process or test).
pub fn open_admin(path: &Path) -> anyhow::Result<Connection> {
    schema::open(path)
}

/// Admin operations on an open SQLite connection; each is one short
/// transaction. PostgreSQL's are in [`pg::admin`].
pub mod admin {
    pub use super::principals::{
        check_webhook_url, create_enrollment_code, create_enrollment_codes, create_key,
        list_devices, list_keys, revoke_device, revoke_key, set_webhook_url,
    };
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::testing::{FakeClock, T0, TestDb, fetch, nonce};
    use super::*;
    use link_peeler_wire::protocol::{ErrorCode, JobStatus};

    const LEASE_MS: i64 = 120_000;
    const MAX_EXPIRIES: u32 = 3;
    const RETENTION_MS: i64 = 30 * 24 * 3_600_000;

    async fn claim_one(store: &Store, device: &str) -> Vec<ClaimedTask> {
        match store.claim(device, 1, LEASE_MS, None).await.unwrap() {
            Claimed::Tasks(tasks) => tasks,
            Claimed::DeviceRevoked => panic!("{device} is not an active device"),
        }
    }

    async fn maintain(store: &Store) -> Reaped {
        store.maintain(MAX_EXPIRIES, RETENTION_MS).await.unwrap()
    }

    async fn post(
        store: &Store,
        device: &str,
        task: &ClaimedTask,
        n: &str,
    ) -> Result<(), StoreError> {
        let result = r#"{"conclusion":"final"}"#.to_owned();
        store
            .post_result(
                device,
                &task.task_id,
                &task.lease_id,
                result,
                nonce(device, n),
            )
            .await
    }

    #[tokio::test]
    async fn an_expired_lease_requeues_the_task_and_its_late_result_is_lease_lost() {
        let db = TestDb::new();
        let key = db.key(100, 100);
        db.device("dev_one");
        db.device("dev_two");
        let clock = FakeClock::at(T0);
        let store = db.store(&clock);
        let job = store
            .submit(&key, fetch("k", "https://a.test/"), nonce(&key, "n1"))
            .await
            .unwrap()
            .job;

        let first = claim_one(&store, "dev_one").await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].lease_expires_at, T0 + LEASE_MS);
        clock.advance(LEASE_MS - 1);
        assert_eq!(maintain(&store).await, Reaped::default(), "not yet expired");
        assert!(
            claim_one(&store, "dev_two").await.is_empty(),
            "one holder per task"
        );

        clock.advance(1);
        let reaped = maintain(&store).await;
        assert_eq!((reaped.requeued, reaped.failed), (1, 0));
        let second = claim_one(&store, "dev_two").await;
        assert_eq!(second[0].task_id, job.job_id);
        assert_eq!(second[0].attempt, 2);
        assert_ne!(second[0].lease_id, first[0].lease_id);

        let late = post(&store, "dev_one", &first[0], "n2").await;
        assert!(matches!(late, Err(StoreError::LeaseLost)), "{late:?}");
        post(&store, "dev_two", &second[0], "n3").await.unwrap();
        let done = store.get_job(&key, &job.job_id).await.unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Done);
        assert_eq!(done.resolved_by.as_deref(), Some("dev_two"));
        store.close();
    }

    #[tokio::test]
    async fn a_job_whose_lease_expires_max_times_fails_as_agent_unavailable() {
        let db = TestDb::new();
        let key = db.key(100, 100);
        db.device("dev_one");
        let clock = FakeClock::at(T0);
        let store = db.store(&clock);
        let job = store
            .submit(&key, fetch("k", "https://a.test/"), nonce(&key, "n1"))
            .await
            .unwrap()
            .job;
        for attempt in 1..=MAX_EXPIRIES {
            let tasks = claim_one(&store, "dev_one").await;
            assert_eq!(tasks[0].attempt, attempt);
            clock.advance(LEASE_MS);
            let reaped = maintain(&store).await;
            let expected = if attempt < MAX_EXPIRIES {
                (1, 0)
            } else {
                (0, 1)
            };
            assert_eq!(
                (reaped.requeued, reaped.failed),
                expected,
                "expiry {attempt}"
            );
        }
        assert!(claim_one(&store, "dev_one").await.is_empty());
        let failed = store.get_job(&key, &job.job_id).await.unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        let error = failed.error.unwrap();
        assert_eq!(error.code, ErrorCode::AgentUnavailable);
        assert_eq!(error.message, "the lease expired 3 times without a result");
        let queued = store
            .read(|c| c.query_row("SELECT queued FROM api_keys", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(queued, 0, "a failed job frees its queue slot");
        store.close();
    }

    /// The claim reads the device in the writer's transaction: a revocation
    /// committed by another connection (an admin command) is seen at once.
    #[tokio::test]
    async fn a_revoked_device_claims_nothing_and_its_leases_are_requeued() {
        let db = TestDb::new();
        let key = db.key(100, 100);
        db.device("dev_one");
        db.device("dev_two");
        let clock = FakeClock::at(T0);
        let store = db.store(&clock);
        for (idem, n) in [("a", "n1"), ("b", "n2")] {
            let url = format!("https://{idem}.test/");
            store
                .submit(&key, fetch(idem, &url), nonce(&key, n))
                .await
                .unwrap();
        }
        let held = claim_one(&store, "dev_one").await;
        assert_eq!(held.len(), 1);
        assert!(principals::revoke_device(&db.conn(), "dev_one", T0).unwrap());

        let refused = store.claim("dev_one", 4, LEASE_MS, None).await.unwrap();
        assert_eq!(refused, Claimed::DeviceRevoked);
        let unknown = store.claim("dev_nobody", 4, LEASE_MS, None).await.unwrap();
        assert_eq!(unknown, Claimed::DeviceRevoked);
        let reaped = maintain(&store).await;
        assert_eq!(
            (reaped.requeued, reaped.failed),
            (1, 0),
            "long before expiry"
        );
        let tasks = claim_one(&store, "dev_two").await;
        assert_eq!(tasks[0].task_id, held[0].task_id, "oldest first, attempt 2");
        assert_eq!(tasks[0].attempt, 2);
        let late = post(&store, "dev_one", &held[0], "n3").await;
        assert!(matches!(late, Err(StoreError::LeaseLost)), "{late:?}");
        store.close();
    }

    #[tokio::test]
    async fn enrollment_codes_expire_by_the_store_clock() {
        let db = TestDb::new();
        let ttl = 3_600_000;
        let code = |name: &str| {
            principals::create_enrollment_code(&db.conn(), name, ttl, T0)
                .unwrap()
                .code
        };
        let (expiring, fresh) = (code("a"), code("b"));
        let clock = FakeClock::at(T0 + ttl - 1);
        let store = db.store(&clock);
        let enroll = |code: &str| {
            store.enroll(EnrollRequest {
                code: code.to_owned(),
                name: None,
                platform: None,
                version: None,
            })
        };
        let creds = enroll(&fresh).await.unwrap();
        assert!(creds.device_id.starts_with("dev_"));
        clock.advance(1);
        let refusal = |r: Result<EnrollResponse, StoreError>| match r {
            Err(StoreError::InvalidCode(why)) => why,
            other => panic!("expected a refused code, got {other:?}"),
        };
        assert_eq!(refusal(enroll(&expiring).await), CodeRefusal::Expired);
        assert_eq!(refusal(enroll(&fresh).await), CodeRefusal::AlreadyUsed);
        assert_eq!(
            refusal(enroll("0000-0000-0000").await),
            CodeRefusal::Unknown
        );
        store.close();
    }

    #[tokio::test]
    async fn the_daily_limit_resets_at_utc_midnight_by_the_store_clock() {
        let db = TestDb::new();
        let key = db.key(1, 100);
        let midnight = 19_700 * 86_400_000;
        let clock = FakeClock::at(midnight - 1_500);
        let store = db.store(&clock);
        let submit = |idem: &str, n: &str| {
            store.submit(&key, fetch(idem, "https://a.test/"), nonce(&key, n))
        };
        submit("k1", "n1").await.unwrap();
        match submit("k2", "n2").await {
            Err(StoreError::QuotaExceeded {
                daily_limit: 1,
                resets_in_secs: 2,
            }) => {}
            other => panic!("expected quota_exceeded, got {other:?}"),
        }
        clock.advance(1_500);
        assert!(submit("k2", "n3").await.unwrap().created);
        store.close();
    }

    #[tokio::test]
    async fn concurrent_writes_each_get_their_own_answer() {
        let db = TestDb::new();
        let key = db.key(1000, 1000);
        let store = db.store(&FakeClock::at(T0));
        let submits = (0..32).map(|i| {
            let (store, key) = (store.clone(), key.clone());
            async move {
                let idem = format!("k{i}");
                let s = store
                    .submit(&key, fetch(&idem, "https://a.test/"), nonce(&key, &idem))
                    .await
                    .unwrap();
                assert_eq!(s.job.idempotency_key, idem);
                s.job.job_id
            }
        });
        let ids = futures_util::future::join_all(submits).await;
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 32);
        let stats = store.writer_stats();
        assert_eq!(stats.ops.load(Ordering::Relaxed), 32);
        assert!(stats.commits.load(Ordering::Relaxed) <= 32);
        store.close();
    }

    /// On a current-thread runtime a read that ran on the async thread would
    /// block the only thread that can send it what it waits for.
    #[tokio::test]
    async fn reads_run_off_the_async_thread() {
        let db = TestDb::new();
        let store = db.store(&FakeClock::at(T0));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let read = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .read(move |_| Ok(rx.recv_timeout(Duration::from_secs(10)).is_ok()))
                    .await
            }
        });
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        assert!(
            read.await.unwrap().unwrap(),
            "the read was released by the async side"
        );
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_reads_uses_at_most_the_pooled_connections() {
        let db = TestDb::new();
        let store = db.store(&FakeClock::at(T0));
        let busy = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let reads = (0..24).map(|_| {
            let (store, busy, most) = (store.clone(), busy.clone(), most.clone());
            async move {
                store
                    .read(move |c| {
                        let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        busy.fetch_sub(1, Ordering::SeqCst);
                        c.query_row("SELECT count(*) FROM jobs", [], |r| r.get::<_, i64>(0))
                    })
                    .await
            }
        });
        for r in futures_util::future::join_all(reads).await {
            assert_eq!(r.unwrap(), 0);
        }
        let most = most.load(Ordering::SeqCst);
        assert!((1..=READERS).contains(&most), "{most} reads at once");
        store.close();
    }
}
