//! Waking long-polls held by other relays: `NOTIFY` when tasks become
//! available, `LISTEN` on a dedicated connection, and a sweep for what a
//! notification could not deliver.
//!
//! A transaction that makes `n` tasks available (a new job, released or
//! requeued leases) sends `NOTIFY link_peeler_tasks, '<relay id> <n>'`;
//! PostgreSQL delivers it to every listening relay at commit, never before.
//! Each other relay wakes `n` of its held polls, oldest first (its own were
//! woken directly). So with R relays a new job costs at most R claims, and
//! `SKIP LOCKED` lets exactly one of them take it.
//!
//! Notifications are not durable: one sent while a relay's listening
//! connection was down is lost. So every [`SWEEP_INTERVAL`] a relay with
//! parked polls counts the queued tasks (at most as many as it has parked)
//! and wakes that many; after reconnecting, the sweep runs at once.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use super::super::StoreError;
use super::super::waiters::Waiters;
use super::db;

/// The channel every relay listens on for tasks.
const CHANNEL: &str = "link_peeler_tasks";
/// The channel every relay listens on for finished jobs (the results feed's
/// long-polls and the webhook dispatcher wait on them).
const FINISHED: &str = "link_peeler_finished";
/// How often a relay with parked polls looks for tasks nobody told it about.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// First wait before reconnecting the listener; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Tells every relay, at commit, that `n` tasks became available.
pub(super) async fn tasks_available(
    c: &impl GenericClient,
    relay_id: &str,
    n: usize,
) -> Result<(), StoreError> {
    if n == 0 {
        return Ok(());
    }
    let st = c
        .prepare_cached("SELECT pg_notify($1, $2)")
        .await
        .map_err(db("notify"))?;
    c.execute(&st, &[&CHANNEL, &format!("{relay_id} {n}")])
        .await
        .map_err(db("notify"))?;
    Ok(())
}

/// Tells every relay, at commit, that jobs finished (up to finish number `seq`).
pub(super) async fn jobs_finished(c: &impl GenericClient, seq: i64) -> Result<(), StoreError> {
    let st = c
        .prepare_cached("SELECT pg_notify($1, $2)")
        .await
        .map_err(db("notify"))?;
    c.execute(&st, &[&FINISHED, &seq.to_string()])
        .await
        .map_err(db("notify"))?;
    Ok(())
}

/// Listens for other relays' notifications until `shutdown`, reconnecting
/// with backoff whenever the connection drops. Finishes move `finishes`.
pub(super) fn listen(
    config: tokio_postgres::Config,
    relay_id: String,
    waiters: Arc<Waiters>,
    finishes: watch::Sender<i64>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let session = listen_once(&config, &relay_id, &waiters, &finishes, &mut backoff);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                ended = session => {
                    if let Err(e) = ended {
                        tracing::warn!(error = %e, "listening for other relays' tasks: reconnecting");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

/// One listening connection, until it fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    relay_id: &str,
    waiters: &Waiters,
    finishes: &watch::Sender<i64>,
    backoff: &mut Duration,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx
                        .send((n.channel().to_owned(), n.payload().to_owned()))
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "listening connection ended");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {FINISHED}"))
        .await?;
    *backoff = FIRST_BACKOFF;
    // Anything made available while this relay was not listening is found
    // by the next sweep; wake the oldest poll now so it claims at once.
    waiters.wake(1);
    // Finishes missed meanwhile: everyone waiting on them looks again.
    finishes.send_modify(|_| {});
    while let Some((channel, payload)) = rx.recv().await {
        if channel == FINISHED {
            if let Ok(seq) = payload.parse::<i64>() {
                finishes.send_if_modified(|last| {
                    let newer = seq > *last;
                    *last = (*last).max(seq);
                    newer
                });
            }
        } else if let Some(n) = payload_for_others(&payload, relay_id) {
            waiters.wake(n);
        }
    }
    driver.abort();
    Ok(())
}

/// The task count of another relay's notification; `None` for this relay's
/// own (its polls were woken directly) and for anything unreadable.
fn payload_for_others(payload: &str, relay_id: &str) -> Option<usize> {
    let (from, n) = payload.split_once(' ')?;
    if from == relay_id {
        return None;
    }
    n.parse().ok()
}

/// Every [`SWEEP_INTERVAL`]: wakes as many parked polls as there are queued
/// tasks (up to the number parked), for notifications that never arrived.
pub(super) fn sweep(
    pool: Pool,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let parked = waiters.parked();
            if parked == 0 {
                continue;
            }
            match queued_up_to(&pool, parked).await {
                Ok(n) => waiters.wake(n),
                Err(e) => tracing::debug!(error = %e, "sweep for queued tasks failed"),
            }
        }
    })
}

async fn queued_up_to(pool: &Pool, limit: usize) -> Result<usize, StoreError> {
    let client = pool.get().await.map_err(super::pool_error)?;
    let st = client
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'queued' LIMIT $1) q",
        )
        .await
        .map_err(db("sweep"))?;
    let n: i64 = client
        .query_one(&st, &[&(limit as i64)])
        .await
        .map_err(db("sweep"))?
        .try_get(0)
        .map_err(db("sweep"))?;
    Ok(n.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_ignores_its_own_notifications_and_junk() {
        assert_eq!(payload_for_others("lease_b 3", "lease_a"), Some(3));
        assert_eq!(payload_for_others("lease_a 3", "lease_a"), None);
        assert_eq!(payload_for_others("lease_b x", "lease_a"), None);
        assert_eq!(payload_for_others("", "lease_a"), None);
    }
}
