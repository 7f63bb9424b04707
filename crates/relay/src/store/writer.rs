//! The single writer thread and its group commit.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` each commit
//! costs an fsync. Instead of one transaction per request, every write is sent
//! here as an [`Op`]; the thread takes whatever is waiting (up to
//! [`MAX_BATCH`]), runs each op inside its own savepoint of one transaction,
//! commits once, and only then answers every op. So a 202 is never sent
//! before its job is on disk, while one fsync serves a whole burst of
//! requests. An op that fails rolls back to its savepoint without disturbing
//! the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::{Notify, oneshot};

use super::jobs::{self, ClaimedTask, Reaped, Submitted};
use super::principals;
use crate::Rejection;
use link_peeler_wire::protocol::{EnrollRequest, EnrollResponse, ErrorCode, FetchRequest};

/// Most ops committed together.
pub const MAX_BATCH: usize = 512;

/// A nonce to consume as part of an op (after its signature verified).
#[derive(Debug, Clone)]
pub struct NonceUse {
    pub key_id: String,
    pub nonce: String,
    pub expires_at: i64,
}

type Reply<T> = oneshot::Sender<Result<T, Rejection>>;

/// One unit of work for the writer.
pub enum Op {
    /// Only consume the nonce (signed reads).
    Nonce(Reply<()>),
    Submit {
        key_id: String,
        request: FetchRequest,
        reply: Reply<Submitted>,
    },
    Claim {
        device_id: String,
        capacity: u32,
        lease_ms: i64,
        reply: Reply<Vec<ClaimedTask>>,
    },
    Release {
        lease_ids: Vec<String>,
    },
    PostResult {
        device_id: String,
        task_id: String,
        lease_id: String,
        result_json: String,
        reply: Reply<()>,
    },
    Enroll {
        request: EnrollRequest,
        reply: Reply<EnrollResponse>,
    },
    Maintain {
        max_expiries: u32,
        retention_ms: i64,
        reply: Reply<Reaped>,
    },
}

/// An op with its timestamp and the nonce it consumes.
pub struct Envelope {
    pub op: Op,
    pub nonce: Option<NonceUse>,
    pub now: i64,
}

/// Sends an answer once the batch's fate is known.
type Answer = Box<dyn FnOnce(Option<&Rejection>) + Send>;

fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, Rejection>) -> Answer {
    Box::new(move |commit_failed| {
        let _ = reply.send(match commit_failed {
            None => result,
            Some(e) => Err(e.clone()),
        });
    })
}

/// Counters of the group commit, for `/metrics` and the benchmark.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub ops: AtomicU64,
}

/// Runs until every sender is dropped, then returns.
pub fn run(
    mut conn: Connection,
    rx: mpsc::Receiver<Envelope>,
    work_available: Arc<Notify>,
    stats: Arc<WriterStats>,
) {
    let mut sync = Sync::Full;
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(env) => batch.push(env),
                Err(_) => break,
            }
        }
        let mut wake = false;
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let committed = (|| -> rusqlite::Result<()> {
            set_sync(&conn, &mut sync, Sync::for_batch(&batch))?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for env in batch.drain(..) {
                tx.prepare_cached("SAVEPOINT op")?.execute([])?;
                let (ans, ok, wakes) = execute(&tx, env);
                if ok {
                    wake |= wakes;
                } else {
                    tx.prepare_cached("ROLLBACK TO op")?.execute([])?;
                }
                tx.prepare_cached("RELEASE op")?.execute([])?;
                answers.push(ans);
            }
            tx.commit()
        })();
        let failure = committed
            .err()
            .map(|e| Rejection::internal("commit failed", e));
        if failure.is_some() {
            wake = false;
        } else {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.ops.fetch_add(answers.len() as u64, Ordering::Relaxed);
        }
        // A failure before all ops ran leaves some unanswered: their senders
        // drop with `batch`, which the waiting handler reports as internal.
        drop(batch);
        for ans in answers {
            ans(failure.as_ref());
        }
        if wake {
            work_available.notify_waiters();
        }
    }
}

/// How hard a commit presses the data to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// fsync on every commit: for anything the relay answers as accepted.
    Full,
    /// WAL without fsync per commit: survives a crash of the relay, not a power cut.
    Normal,
}

impl Sync {
    /// Jobs, results and enrollments are promises to a client and get `FULL`.
    /// Batches of only leases, nonces of reads and maintenance can be redone
    /// after a power cut (a lost lease means the task is simply queued again),
    /// so they skip the fsync — which halves the submit→pickup latency.
    fn for_batch(batch: &[Envelope]) -> Sync {
        let promises = batch.iter().any(|e| {
            matches!(
                e.op,
                Op::Submit { .. } | Op::PostResult { .. } | Op::Enroll { .. }
            )
        });
        if promises { Sync::Full } else { Sync::Normal }
    }
}

fn set_sync(conn: &Connection, current: &mut Sync, wanted: Sync) -> rusqlite::Result<()> {
    if *current != wanted {
        let value = match wanted {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", value)?;
        *current = wanted;
    }
    Ok(())
}

/// Runs one op; returns its answer, whether it succeeded, and whether it made work available.
fn execute(conn: &Connection, env: Envelope) -> (Answer, bool, bool) {
    let Envelope { op, nonce, now } = env;
    if let Some(n) = &nonce {
        match jobs::consume_nonce(conn, &n.key_id, &n.nonce, n.expires_at) {
            Ok(true) => {}
            Ok(false) => {
                let e = Rejection::new(
                    ErrorCode::ReplayedNonce,
                    "this nonce was already used; sign every request with a fresh nonce",
                );
                return (fail(op, e), false, false);
            }
            Err(e) => return (fail(op, e.into()), false, false),
        }
        if n.key_id.starts_with(crate::ids::DEVICE_PREFIX)
            && let Err(e) = principals::touch_device(conn, &n.key_id, now)
        {
            return (fail(op, e.into()), false, false);
        }
    }
    match op {
        Op::Nonce(reply) => (answer(reply, Ok(())), true, false),
        Op::Submit {
            key_id,
            request,
            reply,
        } => {
            let r = jobs::submit(conn, &key_id, &request, now);
            let (ok, created) = match &r {
                Ok(s) => (true, s.created),
                Err(_) => (false, false),
            };
            (answer(reply, r), ok, created)
        }
        Op::Claim {
            device_id,
            capacity,
            lease_ms,
            reply,
        } => {
            let r = jobs::claim(conn, &device_id, capacity, lease_ms, now).map_err(Rejection::from);
            let ok = r.is_ok();
            (answer(reply, r), ok, false)
        }
        Op::Release { lease_ids } => {
            let r = jobs::release(conn, &lease_ids, now);
            let ok = r.is_ok();
            let released = matches!(r, Ok(n) if n > 0);
            (Box::new(|_| {}), ok, released)
        }
        Op::PostResult {
            device_id,
            task_id,
            lease_id,
            result_json,
            reply,
        } => {
            let r = jobs::post_result(conn, &device_id, &task_id, &lease_id, &result_json, now);
            let ok = r.is_ok();
            (answer(reply, r), ok, false)
        }
        Op::Enroll { request, reply } => {
            let r = principals::enroll(conn, &request, now);
            let ok = r.is_ok();
            (answer(reply, r), ok, false)
        }
        Op::Maintain {
            max_expiries,
            retention_ms,
            reply,
        } => {
            let r = (|| -> rusqlite::Result<Reaped> {
                let reaped = jobs::reap_expired_leases(conn, now, max_expiries)?;
                jobs::prune_nonces(conn, now / 1000)?;
                jobs::prune_finished(conn, now.saturating_sub(retention_ms))?;
                Ok(reaped)
            })()
            .map_err(Rejection::from);
            let ok = r.is_ok();
            let wakes = matches!(&r, Ok(reaped) if reaped.requeued > 0);
            (answer(reply, r), ok, wakes)
        }
    }
}

/// Answers an op with an error without running it.
fn fail(op: Op, e: Rejection) -> Answer {
    match op {
        Op::Nonce(reply) => answer(reply, Err(e)),
        Op::Submit { reply, .. } => answer(reply, Err(e)),
        Op::Claim { reply, .. } => answer(reply, Err(e)),
        Op::Release { .. } => Box::new(|_| {}),
        Op::PostResult { reply, .. } => answer(reply, Err(e)),
        Op::Enroll { reply, .. } => answer(reply, Err(e)),
        Op::Maintain { reply, .. } => answer(reply, Err(e)),
    }
}
