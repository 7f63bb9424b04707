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
//!
//! A signed request's nonce is recorded *before* its op's savepoint, in the
//! same transaction: once the signature verified, the nonce is spent whatever
//! the op answers (a 409, 422 or 429 rolls back the op, not the nonce), and
//! no extra commit or fsync is needed for it.
//!
//! After the commit the writer wakes as many held polls as the batch made
//! tasks available ([`Waiters::wake`]), not every poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::StoreError;
use super::jobs::{self, Claimed, Reaped, Submitted};
use super::principals;
use super::waiters::Waiters;
use super::webhooks::{self, Attempt, DueDelivery, Slots};
use link_peeler_wire::protocol::{EnrollRequest, EnrollResponse, FetchRequest};

/// Most ops committed together.
pub const MAX_BATCH: usize = 512;

/// A nonce to consume as part of an op (after its signature verified).
#[derive(Debug, Clone)]
pub struct NonceUse {
    pub key_id: String,
    pub nonce: String,
    pub expires_at: i64,
    /// A device's state report (the poll body's `state`, as JSON), stored
    /// with its last-seen time when the nonce is spent.
    pub agent_state: Option<String>,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One unit of work for the writer.
pub enum Op {
    /// Only consume the nonce (signed reads).
    Nonce(Reply<()>),
    Submit {
        key_id: String,
        request: FetchRequest,
        reply: Reply<Submitted>,
    },
    SubmitBatch {
        key_id: String,
        requests: Vec<FetchRequest>,
        reply: Reply<Vec<Result<Submitted, StoreError>>>,
    },
    ClaimDeliveries {
        lease_ms: i64,
        slots: Slots,
        reply: Reply<Vec<DueDelivery>>,
    },
    RecordAttempt {
        attempt: Attempt,
        reply: Reply<()>,
    },
    Claim {
        device_id: String,
        capacity: u32,
        lease_ms: i64,
        reply: Reply<Claimed>,
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
    /// The store clock's time (ms since the epoch) when the op was sent; every
    /// time check of the op (lease expiry, code expiry, the quota day) uses it.
    pub now: i64,
}

/// Sends an answer once the batch's fate is known.
type Answer = Box<dyn FnOnce(Option<&StoreError>) + Send>;

fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Answer {
    Box::new(move |commit_failed| {
        let _ = reply.send(match commit_failed {
            None => result,
            Some(e) => Err(e.clone()),
        });
    })
}

/// What running one op produced.
struct Outcome {
    answer: Answer,
    /// `false` rolls the op back to its savepoint.
    ok: bool,
    /// Tasks the op made available to agents (0 for a failed op): each
    /// wakes one waiting poll.
    available: usize,
    /// Jobs the op finished: they wake the results feed and the webhook
    /// dispatcher once committed.
    finished: usize,
}

impl Outcome {
    fn of<T: Send + 'static>(
        reply: Reply<T>,
        result: Result<T, StoreError>,
        available: usize,
    ) -> Outcome {
        let ok = result.is_ok();
        Outcome {
            answer: answer(reply, result),
            ok,
            available: if ok { available } else { 0 },
            finished: 0,
        }
    }

    fn finishing(mut self, finished: usize) -> Outcome {
        if self.ok {
            self.finished = finished;
        }
        self
    }

    fn failed(op: Op, e: StoreError) -> Outcome {
        Outcome {
            answer: fail(op, e),
            ok: false,
            available: 0,
            finished: 0,
        }
    }
}

/// Counters of the group commit, for `/metrics` and the benchmark.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub ops: AtomicU64,
    /// Claims (poll attempts) among the committed ops: with held polls woken
    /// one per new task, a job costs a constant number of them.
    pub claims: AtomicU64,
}

/// Runs until every sender is dropped, then returns. After each commit that
/// finished jobs, `finishes` moves to the last finish number.
pub fn run(
    mut conn: Connection,
    rx: mpsc::Receiver<Envelope>,
    waiters: Arc<Waiters>,
    stats: Arc<WriterStats>,
    finishes: tokio::sync::watch::Sender<i64>,
) {
    let mut sync = Sync::Full;
    while let Ok(first) = rx.recv() {
        let batch = take_batch(&rx, first);
        let claims = batch
            .iter()
            .filter(|e| matches!(e.op, Op::Claim { .. }))
            .count() as u64;
        let Ran {
            answers,
            available,
            finished,
            committed,
        } = run_batch(&mut conn, &mut sync, batch);
        let failure = match committed {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.ops.fetch_add(answers.len() as u64, Ordering::Relaxed);
                stats.claims.fetch_add(claims, Ordering::Relaxed);
                None
            }
            Err(e) => Some(StoreError::sqlite("commit failed", e)),
        };
        for ans in answers {
            ans(failure.as_ref());
        }
        if failure.is_none() {
            waiters.wake(available);
            if finished > 0
                && let Ok(last) = super::events::last_finish(&conn)
            {
                finishes.send_replace(last);
            }
        }
    }
}

/// `first` and whatever else is already waiting, up to [`MAX_BATCH`] ops.
fn take_batch(rx: &mpsc::Receiver<Envelope>, first: Envelope) -> Vec<Envelope> {
    let mut batch = Vec::with_capacity(64);
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(env) => batch.push(env),
            Err(_) => break,
        }
    }
    batch
}

/// A batch whose transaction has ended, with its answers not yet sent.
struct Ran {
    answers: Vec<Answer>,
    /// Tasks the kept ops made available.
    available: usize,
    /// Jobs the kept ops finished.
    finished: usize,
    committed: rusqlite::Result<()>,
}

/// Runs every op of `batch` in its own savepoint of one transaction, then
/// commits once. A failure before all ops ran leaves some unanswered: their
/// reply senders drop with the batch, which the waiting handler reports as
/// internal.
fn run_batch(conn: &mut Connection, sync: &mut Sync, mut batch: Vec<Envelope>) -> Ran {
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    let mut available = 0;
    let mut finished = 0;
    let committed = (|| {
        set_sync(conn, sync, Sync::for_batch(&batch))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for env in batch.drain(..) {
            let outcome = execute(&tx, env)?;
            available += outcome.available;
            finished += outcome.finished;
            answers.push(outcome.answer);
        }
        tx.commit()
    })();
    Ran {
        answers,
        available,
        finished,
        committed,
    }
}

/// Runs one op: its nonce first, outside the op's savepoint (a replayed
/// nonce fails the op unrun; a spent nonce stays spent whatever the op
/// answers), then the op inside its savepoint.
fn execute(conn: &Connection, env: Envelope) -> rusqlite::Result<Outcome> {
    let Envelope { op, nonce, now } = env;
    if let Some(n) = &nonce
        && let Err(e) = consume_nonce(conn, n, now)
    {
        return Ok(Outcome::failed(op, e));
    }
    in_savepoint(conn, op, now)
}

/// Runs one op inside `SAVEPOINT op`. An op that fails is rolled back to it,
/// which undoes its own changes and nobody else's.
fn in_savepoint(conn: &Connection, op: Op, now: i64) -> rusqlite::Result<Outcome> {
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    let outcome = run_op(conn, op, now);
    if !outcome.ok {
        conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
    }
    conn.prepare_cached("RELEASE op")?.execute([])?;
    Ok(outcome)
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
    /// Batches of only leases, nonces of reads, maintenance and webhook
    /// attempts can be redone after a power cut (a lost lease means the task
    /// is simply queued again; a lost attempt record means one more delivery,
    /// which at-least-once allows), so they skip the fsync — which halves the
    /// submit→pickup latency.
    fn for_batch(batch: &[Envelope]) -> Sync {
        let promises = batch.iter().any(|e| {
            matches!(
                e.op,
                Op::Submit { .. }
                    | Op::SubmitBatch { .. }
                    | Op::PostResult { .. }
                    | Op::Enroll { .. }
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

/// Consumes a signed request's nonce and records when a device was last seen.
fn consume_nonce(conn: &Connection, n: &NonceUse, now: i64) -> Result<(), StoreError> {
    if !jobs::consume_nonce(conn, &n.key_id, &n.nonce, n.expires_at)? {
        return Err(StoreError::ReplayedNonce);
    }
    if n.key_id.starts_with(crate::ids::DEVICE_PREFIX) {
        principals::touch_device(conn, &n.key_id, now, n.agent_state.as_deref())?;
    }
    Ok(())
}

fn run_op(conn: &Connection, op: Op, now: i64) -> Outcome {
    match op {
        Op::Nonce(reply) => Outcome::of(reply, Ok(()), 0),
        Op::Submit {
            key_id,
            request,
            reply,
        } => {
            let r = jobs::submit(conn, &key_id, &request, now);
            let created = matches!(&r, Ok(s) if s.created);
            Outcome::of(reply, r, usize::from(created))
        }
        Op::SubmitBatch {
            key_id,
            requests,
            reply,
        } => {
            let r = jobs::submit_batch(conn, &key_id, &requests, now);
            let created = r.as_ref().map_or(0, |items| {
                items
                    .iter()
                    .filter(|i| matches!(i, Ok(s) if s.created))
                    .count()
            });
            Outcome::of(reply, r, created)
        }
        Op::ClaimDeliveries {
            lease_ms,
            slots,
            reply,
        } => Outcome::of(
            reply,
            webhooks::claim_due(conn, now, lease_ms, &slots).map_err(StoreError::from),
            0,
        ),
        Op::RecordAttempt { attempt, reply } => Outcome::of(
            reply,
            webhooks::record(conn, &attempt).map_err(StoreError::from),
            0,
        ),
        Op::Claim {
            device_id,
            capacity,
            lease_ms,
            reply,
        } => match jobs::claim(conn, &device_id, capacity, lease_ms, now) {
            // Tasks left behind wake one more poll.
            Ok(c) => Outcome::of(reply, Ok(c.claimed), usize::from(c.more)),
            Err(e) => Outcome::of(reply, Err(StoreError::from(e)), 0),
        },
        Op::Release { lease_ids } => {
            let r = jobs::release(conn, &lease_ids, now);
            Outcome {
                answer: Box::new(|_| {}),
                ok: r.is_ok(),
                available: r.unwrap_or(0),
                finished: 0,
            }
        }
        Op::PostResult {
            device_id,
            task_id,
            lease_id,
            result_json,
            reply,
        } => {
            let r = jobs::post_result(conn, &device_id, &task_id, &lease_id, &result_json, now);
            let finished = usize::from(matches!(r, Ok(true)));
            Outcome::of(reply, r.map(|_| ()), 0).finishing(finished)
        }
        Op::Enroll { request, reply } => {
            Outcome::of(reply, principals::enroll(conn, &request, now), 0)
        }
        Op::Maintain {
            max_expiries,
            retention_ms,
            reply,
        } => {
            let r = jobs::maintain(conn, now, max_expiries, retention_ms);
            let requeued = r.as_ref().map_or(0, |reaped| reaped.requeued);
            let failed = r.as_ref().map_or(0, |reaped| reaped.failed);
            Outcome::of(reply, r.map_err(StoreError::from), requeued).finishing(failed)
        }
    }
}

/// Answers an op with an error without running it.
fn fail(op: Op, e: StoreError) -> Answer {
    match op {
        Op::Nonce(reply) => answer(reply, Err(e)),
        Op::Submit { reply, .. } => answer(reply, Err(e)),
        Op::SubmitBatch { reply, .. } => answer(reply, Err(e)),
        Op::ClaimDeliveries { reply, .. } => answer(reply, Err(e)),
        Op::RecordAttempt { reply, .. } => answer(reply, Err(e)),
        Op::Claim { reply, .. } => answer(reply, Err(e)),
        Op::Release { .. } => Box::new(|_| {}),
        Op::PostResult { reply, .. } => answer(reply, Err(e)),
        Op::Enroll { reply, .. } => answer(reply, Err(e)),
        Op::Maintain { reply, .. } => answer(reply, Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{T0, TestDb, fetch, nonce};

    type Rx<T> = oneshot::Receiver<Result<T, StoreError>>;

    fn envelope(op: Op, nonce: Option<NonceUse>) -> Envelope {
        Envelope { op, nonce, now: T0 }
    }

    fn submit(key: &str, idem: &str, url: &str, n: &str) -> (Envelope, Rx<Submitted>) {
        let (reply, rx) = oneshot::channel();
        let op = Op::Submit {
            key_id: key.to_owned(),
            request: fetch(idem, url),
            reply,
        };
        (envelope(op, Some(nonce(key, n))), rx)
    }

    fn nonce_only(key: &str, n: &str) -> (Envelope, Rx<()>) {
        let (reply, rx) = oneshot::channel();
        (envelope(Op::Nonce(reply), Some(nonce(key, n))), rx)
    }

    /// Queues every envelope before the writer starts, so it finds them all
    /// waiting, then runs the writer on this thread until the queue is done.
    /// Returns (commits, ops).
    fn run_writer(db: &TestDb, envelopes: Vec<Envelope>) -> (u64, u64) {
        let (tx, rx) = mpsc::channel();
        for env in envelopes {
            tx.send(env).unwrap();
        }
        drop(tx);
        let stats = Arc::new(WriterStats::default());
        let (finishes, _) = tokio::sync::watch::channel(0);
        run(
            db.conn(),
            rx,
            Arc::new(Waiters::default()),
            stats.clone(),
            finishes,
        );
        (
            stats.commits.load(Ordering::Relaxed),
            stats.ops.load(Ordering::Relaxed),
        )
    }

    fn answer_of<T>(mut rx: Rx<T>) -> Result<T, StoreError> {
        rx.try_recv().unwrap()
    }

    #[test]
    fn waiting_writes_are_one_commit_and_each_op_gets_its_own_answer() {
        let db = TestDb::new();
        let key = db.key(100, 100);
        db.device("dev_a");
        let mut envelopes = Vec::new();
        let mut submits = Vec::new();
        for i in 0..4 {
            let (env, rx) = submit(&key, &format!("k{i}"), "https://a.test/", &format!("n{i}"));
            envelopes.push(env);
            submits.push(rx);
        }
        let (env, read_nonce) = nonce_only(&key, "n4");
        envelopes.push(env);
        // A claim later in the batch sees the jobs inserted earlier in it.
        let (reply, claimed) = oneshot::channel();
        let claim = Op::Claim {
            device_id: "dev_a".into(),
            capacity: 2,
            lease_ms: 60_000,
            reply,
        };
        envelopes.push(envelope(claim, None));

        assert_eq!(run_writer(&db, envelopes), (1, 6), "(commits, ops)");

        let jobs: Vec<_> = submits
            .into_iter()
            .map(|rx| answer_of(rx).unwrap())
            .collect();
        for (i, s) in jobs.iter().enumerate() {
            assert!(s.created);
            assert_eq!(s.job.idempotency_key, format!("k{i}"));
        }
        let ids: Vec<_> = jobs.iter().map(|s| s.job.job_id.clone()).collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 4, "every submission got its own job");
        answer_of(read_nonce).unwrap();
        let Claimed::Tasks(tasks) = answer_of(claimed).unwrap() else {
            panic!("dev_a is active");
        };
        let leased: Vec<_> = tasks.iter().map(|t| t.task_id.clone()).collect();
        assert_eq!(leased, ids[..2], "oldest first");
        assert_eq!(db.count("SELECT count(*) FROM jobs"), 4);
        assert_eq!(db.count("SELECT count(*) FROM nonces"), 5);
    }

    /// One wake per task made available: three new jobs wake three polls, a
    /// claim that leaves tasks behind one more, and the claim is counted.
    #[test]
    fn a_commit_wakes_one_poll_per_task_it_made_available() {
        let db = TestDb::new();
        let key = db.key(100, 100);
        db.device("dev_a");
        let mut envelopes = Vec::new();
        for i in 0..3 {
            envelopes.push(submit(&key, &format!("k{i}"), "https://a.test/", &format!("n{i}")).0);
        }
        let (reply, _claimed) = oneshot::channel();
        let claim = Op::Claim {
            device_id: "dev_a".into(),
            capacity: 1,
            lease_ms: 60_000,
            reply,
        };
        envelopes.push(envelope(claim, None));
        let waiters = Arc::new(Waiters::default());
        let queue: Vec<_> = (0..6).map(|_| waiters.register()).collect();

        let (tx, rx) = mpsc::channel();
        for env in envelopes {
            tx.send(env).unwrap();
        }
        drop(tx);
        let stats = Arc::new(WriterStats::default());
        let (finishes, _) = tokio::sync::watch::channel(0);
        run(db.conn(), rx, waiters, stats.clone(), finishes);

        let woken = queue
            .iter()
            .filter(|w| futures_util::FutureExt::now_or_never(w.woken()).is_some())
            .count();
        assert_eq!(
            woken,
            3 + 1,
            "three new tasks, and two left behind by the claim"
        );
        assert_eq!(stats.claims.load(Ordering::Relaxed), 1);
        assert_eq!(stats.ops.load(Ordering::Relaxed), 4);
        for w in &queue {
            w.used();
        }
    }

    #[test]
    fn a_burst_beyond_max_batch_takes_a_second_commit() {
        let db = TestDb::new();
        let key = db.key(100, 100);
        let (envelopes, answers): (Vec<_>, Vec<_>) = (0..=MAX_BATCH)
            .map(|i| nonce_only(&key, &format!("n{i}")))
            .unzip();
        let ops = MAX_BATCH as u64 + 1;
        assert_eq!(run_writer(&db, envelopes), (2, ops));
        for rx in answers {
            answer_of(rx).unwrap();
        }
    }

    #[test]
    fn a_failing_op_rolls_back_only_its_own_changes() {
        let db = TestDb::new();
        let key = db.key(100, 100);
        // Makes one job's INSERT fail after its submission has already counted
        // it in daily_usage and api_keys.queued and consumed its nonce.
        db.conn()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON jobs WHEN NEW.tracking_url LIKE '%refuse%'
                 BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END;",
            )
            .unwrap();
        let (a_env, a) = submit(&key, "a", "https://a.test/", "na");
        let (b_env, b) = submit(&key, "b", "https://refuse.test/", "nb");
        let (c_env, c) = submit(&key, "c", "https://c.test/", "nc");
        // Same key as `a`, other payload: a conflict with a job of this very batch.
        let (d_env, d) = submit(&key, "a", "https://other.test/", "nd");
        // `a`'s nonce again: refused before the op runs.
        let (e_env, e) = nonce_only(&key, "na");

        let ops = vec![a_env, b_env, c_env, d_env, e_env];
        assert_eq!(run_writer(&db, ops), (1, 5), "(commits, ops)");

        assert!(answer_of(a).unwrap().created);
        assert!(matches!(answer_of(b), Err(StoreError::Sqlite { .. })));
        assert!(answer_of(c).unwrap().created);
        assert!(matches!(answer_of(d), Err(StoreError::IdempotencyConflict)));
        assert!(matches!(answer_of(e), Err(StoreError::ReplayedNonce)));

        let urls: Vec<String> = db
            .conn()
            .prepare("SELECT tracking_url FROM jobs ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(urls, ["https://a.test/", "https://c.test/"]);
        assert_eq!(db.count("SELECT queued FROM api_keys"), 2);
        assert_eq!(db.count("SELECT sum(count) FROM daily_usage"), 2);
        let nonces: Vec<String> = db
            .conn()
            .prepare("SELECT nonce FROM nonces ORDER BY nonce")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            nonces,
            ["na", "nb", "nc", "nd"],
            "a verified nonce is spent whatever its op answered"
        );
    }

    #[test]
    fn only_batches_holding_promises_pay_for_a_full_fsync() {
        let key = "lp_test_x";
        let (claim_reply, _claimed) = oneshot::channel();
        let claim = envelope(
            Op::Claim {
                device_id: "dev_a".into(),
                capacity: 1,
                lease_ms: 1,
                reply: claim_reply,
            },
            None,
        );
        let (read, _r) = nonce_only(key, "n1");
        let (job, _j) = submit(key, "k", "https://a.test/", "n2");
        let mut batch = vec![claim, read];
        assert_eq!(Sync::for_batch(&batch), Sync::Normal);
        batch.push(job);
        assert_eq!(Sync::for_batch(&batch), Sync::Full);
    }
}
