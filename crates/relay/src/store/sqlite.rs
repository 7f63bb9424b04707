//! The SQLite backend's handle: the writer thread's queue and the pool of
//! read-only connections (see `writer.rs` for the group commit).
//!
//! Writes wait on a oneshot for the writer thread; reads run on tokio's
//! blocking pool ([`Sqlite::read`]), so no SQLite call runs on an async
//! worker thread.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::Connection;
use tokio::sync::{Semaphore, oneshot, watch};

use super::StoreError;
use super::schema;
use super::waiters::Waiters;
use super::writer::{self, Envelope, NonceUse, Op, WriterStats};

/// Read connections kept open for request handlers.
pub(super) const READERS: usize = 4;

pub(super) struct Sqlite {
    writer: Mutex<Option<mpsc::Sender<Envelope>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Readers>,
}

/// Read-only connections for blocking-pool threads. A read first takes one of
/// [`READERS`] permits without blocking a thread, so a connection is always
/// idle for it by the time it runs, and no more than [`READERS`] blocking
/// threads are ever busy with reads.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    fn open(path: &Path) -> anyhow::Result<Readers> {
        let idle = (0..READERS)
            .map(|_| schema::open_reader(path))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Readers {
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(READERS)),
        })
    }

    /// An idle connection, given back when the guard drops. Call only with a permit held.
    fn checkout(&self) -> Result<Checkout<'_>, StoreError> {
        let conn = self
            .idle
            .lock()
            .map_err(|_| StoreError::internal("reader", "lock poisoned"))?
            .pop()
            .ok_or_else(|| StoreError::internal("reader", "no idle connection"))?;
        Ok(Checkout {
            idle: &self.idle,
            conn: Some(conn),
        })
    }
}

/// A read connection out of the pool.
struct Checkout<'a> {
    idle: &'a Mutex<Vec<Connection>>,
    conn: Option<Connection>,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.idle.lock()) {
            idle.push(conn);
        }
    }
}

impl Sqlite {
    /// Opens (creating and migrating) the file and starts the writer thread;
    /// the receiver moves when the writer commits finished jobs.
    pub(super) fn open(
        path: &Path,
        waiters: Arc<Waiters>,
        stats: Arc<WriterStats>,
    ) -> anyhow::Result<(Sqlite, watch::Receiver<i64>)> {
        let conn = schema::open(path)?;
        let (finishes_tx, finishes) = watch::channel(super::events::last_finish(&conn)?);
        let readers = Arc::new(Readers::open(path)?);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || writer::run(conn, rx, waiters, stats, finishes_tx))?;
        let sqlite = Sqlite {
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(thread)),
            readers,
        };
        Ok((sqlite, finishes))
    }

    /// Stops accepting writes, lets the writer finish what it has, and waits for it.
    pub(super) fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        let handle = self.writer_thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub(super) fn send(&self, op: Op, nonce: Option<NonceUse>, now: i64) -> Result<(), StoreError> {
        let guard = self
            .writer
            .lock()
            .map_err(|_| StoreError::internal("writer", "lock poisoned"))?;
        let tx = guard.as_ref().ok_or(StoreError::ShuttingDown)?;
        tx.send(Envelope { op, nonce, now })
            .map_err(|_| StoreError::ShuttingDown)
    }

    pub(super) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
        nonce: Option<NonceUse>,
        now: i64,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx), nonce, now)?;
        rx.await
            .map_err(|_| StoreError::internal("writer", "dropped an op without answering"))?
    }

    /// Runs `f` on a pooled read-only connection, on tokio's blocking pool.
    ///
    /// Waiting for a free connection is async (a semaphore permit), so a burst
    /// of reads parks tasks, not threads. The permit moves into the blocking
    /// closure: a read whose caller went away still returns its connection.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = self
            .readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::ShuttingDown)?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let checkout = readers.checkout()?;
            let conn = checkout
                .conn
                .as_ref()
                .ok_or_else(|| StoreError::internal("reader", "connection missing"))?;
            f(conn).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::internal("reader", e))?
    }
}
