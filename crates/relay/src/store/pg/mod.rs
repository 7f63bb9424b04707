//! The PostgreSQL backend: any number of relays on one database behave as
//! one relay.
//!
//! - **One short transaction per operation** on a bounded pool
//!   ([`POOL_SIZE`] connections, prepared statements cached per connection,
//!   timeouts on waiting, connecting and every statement). A 202 is sent
//!   after `COMMIT` returned, so with PostgreSQL's default
//!   `synchronous_commit = on` the job is on disk first, as with SQLite.
//! - **A task has one holder**: claims lock the oldest queued rows with
//!   `FOR UPDATE SKIP LOCKED`, so relays claiming at once take different
//!   rows and never wait for each other ([`jobs::claim`]).
//! - **Uniqueness by constraints**: one job per `(key, idempotencyKey)` and
//!   one use per `(key, nonce)` are primary/unique keys, inserted with
//!   `ON CONFLICT DO NOTHING`; a concurrent duplicate waits for the first
//!   transaction and then sees it.
//! - **Exact quotas**: `maxQueued` and the daily limit are conditional
//!   `UPDATE … WHERE queued < max_queued RETURNING` / upserts on the key's
//!   rows, which serialise one key's submissions across relays.
//! - **Wake-ups across relays**: a transaction that makes tasks available
//!   sends `NOTIFY` (delivered at commit); every relay `LISTEN`s and wakes
//!   that many of its held polls, and a sweep every second wakes polls when
//!   tasks wait and a notification was missed ([`notify`]).
//! - **Maintenance** (expired leases, nonces, retention) runs under a
//!   transaction-level advisory lock: one relay at a time does it, the others
//!   skip the pass.
//! - **PostgreSQL unreachable**: operations answer [`StoreError::Unavailable`]
//!   (503); the pool drops broken connections and reconnects by itself.

pub mod admin;
mod events;
mod jobs;
mod notify;
mod principals;
mod schema;
mod webhooks;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use super::StoreError;
use super::database::PgUrl;
use super::events::ListFilter;
use super::jobs::{Claimed, Reaped, Submitted};
use super::principals::Lookup;
use super::waiters::Waiters;
use super::webhooks::{Attempt, DueDelivery, Slots};
use super::writer::{NonceUse, WriterStats};
use link_peeler_wire::protocol::{EnrollRequest, EnrollResponse, Event, FetchRequest, Job};
use tokio::sync::watch;

pub use schema::SCHEMA_VERSION;

/// Connections per relay. Each request holds one only for its transaction.
pub const POOL_SIZE: usize = 16;
/// How long an operation waits for a free connection, or for a new one.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// No statement runs longer than this (server side).
const STATEMENT_TIMEOUT_MS: u64 = 30_000;

/// One relay's handle on the shared database.
pub(super) struct Pg {
    pool: Pool,
    /// Tells this relay's own notifications from other relays'.
    relay_id: String,
    waiters: Arc<Waiters>,
    stats: Arc<WriterStats>,
    /// Moved after this relay's commits that finished jobs (and by the
    /// listener for other relays' finishes).
    finishes: watch::Sender<i64>,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The driver configuration a relay connects with: the URL's, plus a
/// connect timeout, an application name and a statement timeout.
pub(super) fn driver_config(url: &PgUrl) -> tokio_postgres::Config {
    let mut config = url.config().clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(POOL_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("link-peeler-relay");
    }
    let options = config.get_options().unwrap_or_default();
    let options = format!("{options} -c statement_timeout={STATEMENT_TIMEOUT_MS}");
    config.options(options.trim());
    config
}

impl Pg {
    /// Builds the pool, migrates (one relay at a time, under an advisory
    /// lock) and starts listening for other relays' wake-ups; the receiver
    /// moves when jobs finish (on any relay).
    pub(super) async fn connect(
        url: &PgUrl,
        waiters: Arc<Waiters>,
        stats: Arc<WriterStats>,
    ) -> anyhow::Result<(Pg, watch::Receiver<i64>)> {
        let config = driver_config(url);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the PostgreSQL pool for {url}: {e}"))?;
        let last = {
            let mut client = pool
                .get()
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {url}: {e}"))?;
            schema::migrate(&mut client)
                .await
                .map_err(|e| anyhow::anyhow!("migrating PostgreSQL at {url}: {e:#}"))?;
            events::last_finish(&client)
                .await
                .map_err(|e| anyhow::anyhow!("reading PostgreSQL at {url}: {e}"))?
        };
        let (finishes, finished) = watch::channel(last);
        let relay_id = crate::ids::lease_id();
        let shutdown = CancellationToken::new();
        let tasks = vec![
            notify::listen(
                config,
                relay_id.clone(),
                waiters.clone(),
                finishes.clone(),
                shutdown.clone(),
            ),
            notify::sweep(pool.clone(), waiters.clone(), shutdown.clone()),
        ];
        let pg = Pg {
            pool,
            relay_id,
            waiters,
            stats,
            finishes,
            shutdown,
            tasks: Mutex::new(tasks),
        };
        Ok((pg, finished))
    }

    pub(super) fn close(&self) {
        self.shutdown.cancel();
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
        self.pool.close();
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Counts one committed operation (and whether it was a claim).
    fn committed(&self, claim: bool) {
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats.ops.fetch_add(1, Ordering::Relaxed);
        if claim {
            self.stats.claims.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wakes `n` of this relay's held polls; other relays are told by the
    /// `NOTIFY` their transaction sent.
    fn wake(&self, n: usize) {
        self.waiters.wake(n);
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(db("ping"))?;
        Ok(())
    }

    pub(super) async fn lookup(&self, key_id: &str) -> Result<Lookup, StoreError> {
        if has_nul(&[key_id]) {
            return Ok(Lookup::Unknown);
        }
        let client = self.client().await?;
        principals::lookup(&client, key_id).await
    }

    pub(super) async fn consume_nonce(&self, nonce: &NonceUse, now: i64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        principals::consume_nonce(&tx, nonce, now).await?;
        tx.commit().await.map_err(db("commit"))?;
        self.committed(false);
        Ok(())
    }

    pub(super) async fn submit(
        &self,
        key_id: &str,
        request: &FetchRequest,
        nonce: &NonceUse,
        now: i64,
    ) -> Result<Submitted, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        principals::consume_nonce(&tx, nonce, now).await?;
        let outcome = jobs::submit(&tx, key_id, request, now, &self.relay_id).await;
        let submitted = settle(outcome)?;
        tx.commit().await.map_err(db("commit"))?;
        self.committed(false);
        let submitted = submitted?;
        if submitted.created {
            self.wake(1);
        }
        Ok(submitted)
    }

    pub(super) async fn get_job(
        &self,
        key_id: &str,
        job_id: &str,
    ) -> Result<Option<Job>, StoreError> {
        if has_nul(&[key_id, job_id]) {
            return Ok(None);
        }
        let client = self.client().await?;
        jobs::get(&client, key_id, job_id).await
    }

    pub(super) async fn find_job(
        &self,
        key_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<Job>, StoreError> {
        if has_nul(&[key_id, idempotency_key]) {
            return Ok(None);
        }
        let client = self.client().await?;
        jobs::find_by_idempotency_key(&client, key_id, idempotency_key).await
    }

    pub(super) async fn claim(
        &self,
        device_id: &str,
        capacity: u32,
        lease_ms: i64,
        nonce: Option<&NonceUse>,
        now: i64,
    ) -> Result<Claimed, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        if let Some(n) = nonce {
            principals::consume_nonce(&tx, n, now).await?;
        }
        let claim = jobs::claim(&tx, device_id, capacity, lease_ms, now).await?;
        tx.commit().await.map_err(db("commit"))?;
        self.committed(true);
        if claim.more {
            // Tasks left behind wake one more poll.
            self.wake(1);
        }
        Ok(claim.claimed)
    }

    /// Returns leases in the background (their poll was abandoned).
    pub(super) fn release(&self, lease_ids: Vec<String>, now: i64) {
        let pool = self.pool.clone();
        let (waiters, stats, relay_id) = (
            self.waiters.clone(),
            self.stats.clone(),
            self.relay_id.clone(),
        );
        tokio::spawn(async move {
            let released = async {
                let mut client = pool.get().await.map_err(pool_error)?;
                let tx = client.transaction().await.map_err(db("begin"))?;
                let n = jobs::release(&tx, &lease_ids, now, &relay_id).await?;
                tx.commit().await.map_err(db("commit"))?;
                Ok::<_, StoreError>(n)
            }
            .await;
            match released {
                Ok(n) => {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    stats.ops.fetch_add(1, Ordering::Relaxed);
                    waiters.wake(n);
                }
                // The leases expire and are requeued by maintenance instead.
                Err(e) => tracing::warn!(error = %e, "releasing abandoned leases failed"),
            }
        });
    }

    pub(super) async fn post_result(
        &self,
        device_id: &str,
        task_id: &str,
        lease_id: &str,
        result_json: &str,
        nonce: &NonceUse,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        principals::consume_nonce(&tx, nonce, now).await?;
        let outcome = jobs::post_result(&tx, device_id, task_id, lease_id, result_json, now).await;
        let posted = settle(outcome)?;
        tx.commit().await.map_err(db("commit"))?;
        self.committed(false);
        if posted? {
            self.finishes.send_modify(|_| {});
        }
        Ok(())
    }

    pub(super) async fn enroll(
        &self,
        request: &EnrollRequest,
        now: i64,
    ) -> Result<EnrollResponse, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        let enrolled = principals::enroll(&tx, request, now).await?;
        tx.commit().await.map_err(db("commit"))?;
        self.committed(false);
        Ok(enrolled)
    }

    pub(super) async fn maintain(
        &self,
        max_expiries: u32,
        retention_ms: i64,
        now: i64,
    ) -> Result<Reaped, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        let reaped = jobs::maintain(&tx, now, max_expiries, retention_ms, &self.relay_id).await?;
        tx.commit().await.map_err(db("commit"))?;
        self.committed(false);
        self.wake(reaped.requeued);
        if reaped.failed > 0 {
            self.finishes.send_modify(|_| {});
        }
        Ok(reaped)
    }

    pub(super) async fn submit_batch(
        &self,
        key_id: &str,
        requests: &[FetchRequest],
        nonce: &NonceUse,
        now: i64,
    ) -> Result<Vec<Result<Submitted, StoreError>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        principals::consume_nonce(&tx, nonce, now).await?;
        let items = jobs::submit_batch(&tx, key_id, requests, now, &self.relay_id).await?;
        tx.commit().await.map_err(db("commit"))?;
        self.committed(false);
        let created = items
            .iter()
            .filter(|i| matches!(i, Ok(s) if s.created))
            .count();
        self.wake(created);
        Ok(items)
    }

    pub(super) async fn events(
        &self,
        key_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let client = self.client().await?;
        events::page(&client, key_id, after, limit).await
    }

    pub(super) async fn list_jobs(
        &self,
        key_id: &str,
        filter: &ListFilter,
    ) -> Result<(Vec<Job>, Option<i64>), StoreError> {
        if has_nul(&[
            key_id,
            filter.source.as_deref().unwrap_or_default(),
            filter.row_id.as_deref().unwrap_or_default(),
        ]) {
            return Ok((Vec::new(), None));
        }
        let client = self.client().await?;
        events::list(&client, key_id, filter).await
    }

    pub(super) async fn claim_deliveries(
        &self,
        lease_ms: i64,
        slots: &Slots,
        now: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        let due = webhooks::claim_due(&tx, now, lease_ms, slots).await?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(due)
    }

    pub(super) async fn record_attempt(&self, attempt: &Attempt) -> Result<(), StoreError> {
        let client = self.client().await?;
        webhooks::record(&client, attempt).await
    }

    pub(super) async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        webhooks::next_due(&client).await
    }

    pub(super) async fn count_deliveries_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.client().await?;
        webhooks::count_by_state(&client).await
    }

    pub(super) async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.client().await?;
        jobs::count_by_status(&client).await
    }
}

/// PostgreSQL's text cannot hold a NUL character, so no stored id, key or
/// name contains one: a lookup by such a value finds nothing, as it would in
/// SQLite, instead of failing the query.
fn has_nul(values: &[&str]) -> bool {
    values.iter().any(|v| v.contains('\0'))
}

/// An operation's outcome once its transaction is to be committed: a domain
/// refusal (`queue_full`, `lease_lost`, …) is answered *after* the commit
/// (which keeps the spent nonce; the op itself wrote nothing, or undid what
/// it wrote), a database failure aborts the transaction.
fn settle<T>(outcome: Result<T, StoreError>) -> Result<Result<T, StoreError>, StoreError> {
    match outcome {
        Err(
            e @ (StoreError::Postgres { .. }
            | StoreError::Unavailable { .. }
            | StoreError::Internal { .. }
            | StoreError::Sqlite { .. }
            | StoreError::ShuttingDown),
        ) => Err(e),
        other => Ok(other),
    }
}

/// Maps a driver error of `context`: a lost or refused connection is
/// [`StoreError::Unavailable`] (503, retried by clients), anything else an
/// internal error for the log.
pub(super) fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| {
        if unreachable(&e) {
            StoreError::Unavailable {
                detail: format!("{context}: {e}"),
            }
        } else {
            StoreError::Postgres {
                context,
                error: Arc::new(e),
            }
        }
    }
}

/// Whether `e` means the server cannot be reached or is going away, rather
/// than that a statement failed.
fn unreachable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        // 08: connection exception; 57P01-3: admin/crash shutdown, cannot
        // connect now; 53300: too many connections.
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    let text = e.to_string();
    text.starts_with("error connecting") || text.contains("timeout")
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db("connecting")(e),
        PoolError::Closed => StoreError::ShuttingDown,
        other => StoreError::Unavailable {
            detail: format!("connection pool: {other}"),
        },
    }
}
