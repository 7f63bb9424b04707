//! Durable state of the relay: one SQLite file in WAL mode.
//!
//! Writes go through one thread with group commit ([`writer`]); reads use a
//! small pool of read-only connections, which WAL lets run beside the writer.
//! Admin commands (`keys create`, `devices revoke`, …) open the same file from
//! another process with [`open_admin`]; SQLite's locking and `busy_timeout`
//! make that safe while a relay is serving.

mod jobs;
mod principals;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::Connection;
use tokio::sync::{Notify, oneshot};

pub use jobs::{ClaimedTask, Reaped, Submitted};
pub use principals::{
    CreatedKey, DEFAULT_CODE_TTL_MS, DEFAULT_DAILY_LIMIT, DEFAULT_MAX_QUEUED, DeviceInfo,
    EnrollmentCode, KeyInfo, Lookup, NewKey, PrincipalKind,
};
pub use schema::SCHEMA_VERSION;
use writer::{Envelope, Op};
pub use writer::{NonceUse, WriterStats};

use crate::Rejection;
use crate::ids::now_ms;
use link_peeler_wire::protocol::{EnrollRequest, EnrollResponse, ErrorCode, FetchRequest, Job};

/// Read connections kept open for request handlers.
const READERS: usize = 4;

/// A handle to the relay's database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Option<mpsc::Sender<Envelope>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Vec<Mutex<Connection>>,
    /// Signalled after a commit that made a task available to agents.
    work_available: Arc<Notify>,
    stats: Arc<WriterStats>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating and migrating) the database and starts the writer thread.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        let conn = schema::open(path)?;
        let readers = (0..READERS)
            .map(|_| schema::open_reader(path).map(Mutex::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (tx, rx) = mpsc::channel();
        let work_available = Arc::new(Notify::new());
        let notify = work_available.clone();
        let stats = Arc::new(WriterStats::default());
        let writer_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || writer::run(conn, rx, notify, writer_stats))?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(thread)),
                readers,
                work_available,
                stats,
                path: path.to_owned(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Commits and ops of the group commit so far.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Woken whenever a task may have become available.
    pub fn work_available(&self) -> &Notify {
        &self.inner.work_available
    }

    /// Stops accepting writes, lets the writer finish what it has, and waits for it.
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        let handle = self
            .inner
            .writer_thread
            .lock()
            .ok()
            .and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn send(&self, op: Op, nonce: Option<NonceUse>) -> Result<(), Rejection> {
        let guard = self
            .inner
            .writer
            .lock()
            .map_err(|_| Rejection::internal("writer", "lock poisoned"))?;
        let tx = guard
            .as_ref()
            .ok_or_else(|| Rejection::new(ErrorCode::Internal, "the relay is shutting down"))?;
        tx.send(Envelope {
            op,
            nonce,
            now: now_ms(),
        })
        .map_err(|_| Rejection::new(ErrorCode::Internal, "the relay is shutting down"))
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Rejection>>) -> Op,
        nonce: Option<NonceUse>,
    ) -> Result<T, Rejection> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx), nonce)?;
        rx.await
            .map_err(|_| Rejection::internal("writer", "dropped an op without answering"))?
    }

    /// Runs `f` on a pooled read-only connection.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Rejection> {
        let readers = &self.inner.readers;
        for r in readers {
            if let Ok(conn) = r.try_lock() {
                return f(&conn).map_err(Rejection::from);
            }
        }
        let conn = readers[0]
            .lock()
            .map_err(|_| Rejection::internal("reader", "lock poisoned"))?;
        f(&conn).map_err(Rejection::from)
    }

    pub fn lookup_key(&self, key_id: &str) -> Result<Lookup, Rejection> {
        self.read(|c| principals::lookup(c, key_id))
    }

    pub async fn consume_nonce(&self, nonce: NonceUse) -> Result<(), Rejection> {
        self.call(Op::Nonce, Some(nonce)).await
    }

    pub async fn submit(
        &self,
        key_id: &str,
        request: FetchRequest,
        nonce: NonceUse,
    ) -> Result<Submitted, Rejection> {
        let key_id = key_id.to_owned();
        self.call(
            |reply| Op::Submit {
                key_id,
                request,
                reply,
            },
            Some(nonce),
        )
        .await
    }

    pub fn get_job(&self, key_id: &str, job_id: &str) -> Result<Option<Job>, Rejection> {
        self.read(|c| jobs::get(c, key_id, job_id))
    }

    pub fn find_job(&self, key_id: &str, idempotency_key: &str) -> Result<Option<Job>, Rejection> {
        self.read(|c| jobs::find_by_idempotency_key(c, key_id, idempotency_key))
    }

    pub async fn claim(
        &self,
        device_id: &str,
        capacity: u32,
        lease_ms: i64,
        nonce: Option<NonceUse>,
    ) -> Result<Vec<ClaimedTask>, Rejection> {
        let device_id = device_id.to_owned();
        self.call(
            |reply| Op::Claim {
                device_id,
                capacity,
                lease_ms,
                reply,
            },
            nonce,
        )
        .await
    }

    /// Returns leases to the queue without waiting for the outcome.
    pub fn release(&self, lease_ids: Vec<String>) {
        if !lease_ids.is_empty() {
            let _ = self.send(Op::Release { lease_ids }, None);
        }
    }

    pub async fn post_result(
        &self,
        device_id: &str,
        task_id: &str,
        lease_id: &str,
        result_json: String,
        nonce: NonceUse,
    ) -> Result<(), Rejection> {
        let (device_id, task_id, lease_id) = (
            device_id.to_owned(),
            task_id.to_owned(),
            lease_id.to_owned(),
        );
        self.call(
            |reply| Op::PostResult {
                device_id,
                task_id,
                lease_id,
                result_json,
                reply,
            },
            Some(nonce),
        )
        .await
    }

    pub async fn enroll(&self, request: EnrollRequest) -> Result<EnrollResponse, Rejection> {
        self.call(|reply| Op::Enroll { request, reply }, None).await
    }

    /// Requeues expired leases and prunes nonces and old jobs.
    pub async fn maintain(
        &self,
        max_expiries: u32,
        retention_ms: i64,
    ) -> Result<Reaped, Rejection> {
        self.call(
            |reply| Op::Maintain {
                max_expiries,
                retention_ms,
                reply,
            },
            None,
        )
        .await
    }

    pub fn count_jobs_by_status(&self) -> Result<Vec<(String, i64)>, Rejection> {
        self.read(jobs::count_by_status)
    }
}

/// Opens the database for an admin command (separate process or test).
pub fn open_admin(path: &Path) -> anyhow::Result<Connection> {
    schema::open(path)
}

/// Admin operations on an open connection; each is one short transaction.
pub mod admin {
    pub use super::principals::{
        create_enrollment_code, create_key, list_devices, list_keys, revoke_device, revoke_key,
    };
}
