//! The job queue on PostgreSQL: the same states and answers as
//! `store/jobs.rs`, made safe for several relays by row locks and
//! constraints instead of a single writer.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;

use super::super::StoreError;
use super::super::jobs::{Claim, Claimed, ClaimedTask, Reaped, Submitted};
use super::db;
use super::events::{JOB_SELECT, finished, job_from_row};
use super::notify;
use super::principals::is_active_device;
use crate::ids;
use link_peeler_wire::protocol::{EventName, FetchRequest, Job, JobStatus};

/// Advisory lock key of the maintenance pass ("LPmainta" as ASCII).
const MAINTENANCE_LOCK: i64 = 0x4c50_6d61_696e_7461;
/// Most expired leases one pass ends (the next pass, a second later, goes on).
const REAP_BATCH: i64 = 1_000;

/// Creates a job, or finds the identical earlier one (idempotency), within
/// the key's queue and daily limits.
///
/// The insert comes first: a concurrent submission with the same key waits
/// on the unique index for this transaction and then finds the job. The
/// limits are conditional updates of the key's rows (locked until commit, so
/// exact across relays); over a limit, the job just inserted is deleted
/// again in the same transaction.
pub(super) async fn submit(
    c: &impl GenericClient,
    key_id: &str,
    req: &FetchRequest,
    now: i64,
    relay_id: &str,
) -> Result<Submitted, StoreError> {
    let canonical = req.canonical_json();
    let job_id = ids::job_id();
    let options = req
        .options
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::internal("encoding options", e))?;
    let st = c
        .prepare_cached(
            "INSERT INTO jobs (id, api_key_id, idempotency_key, canonical, tracking_url, source, row_id, options, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $9)
             ON CONFLICT (api_key_id, idempotency_key) DO NOTHING
             RETURNING seq",
        )
        .await
        .map_err(db("submit"))?;
    let inserted = c
        .query_opt(
            &st,
            &[
                &job_id,
                &key_id,
                &req.idempotency_key,
                &canonical,
                &req.tracking_url,
                &req.source,
                &req.row_id,
                &options,
                &now,
            ],
        )
        .await
        .map_err(db("submit"))?;
    let Some(inserted) = inserted else {
        return replay(c, key_id, req, &canonical).await;
    };
    let seq: i64 = inserted.try_get(0).map_err(db("submit"))?;
    if let Err(refusal) = count_submission(c, key_id, now).await {
        let st = c
            .prepare_cached("DELETE FROM jobs WHERE seq = $1")
            .await
            .map_err(db("submit"))?;
        c.execute(&st, &[&seq]).await.map_err(db("submit"))?;
        return Err(refusal);
    }
    notify::tasks_available(c, relay_id, 1).await?;
    let stamp = ids::rfc3339(now);
    Ok(Submitted {
        job: Job {
            job_id,
            idempotency_key: req.idempotency_key.clone(),
            tracking_url: req.tracking_url.clone(),
            source: req.source.clone(),
            row_id: req.row_id.clone(),
            status: JobStatus::Queued,
            attempts: 0,
            created_at: stamp.clone(),
            updated_at: stamp,
            resolved_by: None,
            result: None,
            error: None,
            webhook: None,
        },
        created: true,
    })
}

/// Submits each request as [`submit`] would, one after the other in this
/// transaction. An item refused by idempotency or quota gets its error in
/// its place (having undone its own writes); any other failure fails the
/// whole batch.
pub(super) async fn submit_batch(
    c: &impl GenericClient,
    key_id: &str,
    requests: &[FetchRequest],
    now: i64,
    relay_id: &str,
) -> Result<Vec<Result<Submitted, StoreError>>, StoreError> {
    let mut out = Vec::with_capacity(requests.len());
    for req in requests {
        match submit(c, key_id, req, now, relay_id).await {
            Ok(s) => out.push(Ok(s)),
            Err(
                e @ (StoreError::IdempotencyConflict
                | StoreError::QueueFull { .. }
                | StoreError::QuotaExceeded { .. }),
            ) => out.push(Err(e)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The job an earlier submission with this idempotency key created, if its
/// payload was the same; `IdempotencyConflict` if it was different.
async fn replay(
    c: &impl GenericClient,
    key_id: &str,
    req: &FetchRequest,
    canonical: &str,
) -> Result<Submitted, StoreError> {
    let st = c
        .prepare_cached("SELECT canonical FROM jobs WHERE api_key_id = $1 AND idempotency_key = $2")
        .await
        .map_err(db("replay"))?;
    let stored: Option<String> = c
        .query_opt(&st, &[&key_id, &req.idempotency_key])
        .await
        .map_err(db("replay"))?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(db("replay"))?;
    match stored {
        Some(s) if s != canonical => Err(StoreError::IdempotencyConflict),
        Some(_) => find_by_idempotency_key(c, key_id, &req.idempotency_key)
            .await?
            .map(|job| Submitted {
                job,
                created: false,
            })
            .ok_or_else(|| StoreError::internal("idempotent replay", "job vanished")),
        None => Err(StoreError::internal("idempotent replay", "job vanished")),
    }
}

/// Counts a new job against `maxQueued` and the daily limit, exactly: each
/// is one conditional statement on a row that stays locked until commit.
/// On a refusal the caller undoes the job; an increment that did happen is
/// undone here.
async fn count_submission(
    c: &impl GenericClient,
    key_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let st = c
        .prepare_cached(
            "UPDATE api_keys SET queued = queued + 1 WHERE id = $1 AND queued < max_queued
             RETURNING daily_limit",
        )
        .await
        .map_err(db("quota"))?;
    let Some(row) = c.query_opt(&st, &[&key_id]).await.map_err(db("quota"))? else {
        let st = c
            .prepare_cached("SELECT queued, max_queued FROM api_keys WHERE id = $1")
            .await
            .map_err(db("quota"))?;
        let row = c.query_one(&st, &[&key_id]).await.map_err(db("quota"))?;
        return Err(StoreError::QueueFull {
            queued: row.try_get(0).map_err(db("quota"))?,
            max_queued: row.try_get(1).map_err(db("quota"))?,
        });
    };
    let daily_limit: i64 = row.try_get(0).map_err(db("quota"))?;
    let exceeded = StoreError::QuotaExceeded {
        daily_limit,
        resets_in_secs: ids::secs_until_next_utc_day(now),
    };
    if daily_limit <= 0 {
        decrement_queued(c, key_id, 1).await?;
        return Err(exceeded);
    }
    let day = ids::utc_day(now);
    let st = c
        .prepare_cached(
            "INSERT INTO daily_usage (api_key_id, day, count) VALUES ($1, $2, 1)
             ON CONFLICT (api_key_id, day) DO UPDATE SET count = daily_usage.count + 1
                 WHERE daily_usage.count < $3
             RETURNING count",
        )
        .await
        .map_err(db("quota"))?;
    let counted = c
        .query_opt(&st, &[&key_id, &day, &daily_limit])
        .await
        .map_err(db("quota"))?;
    if counted.is_none() {
        decrement_queued(c, key_id, 1).await?;
        return Err(exceeded);
    }
    Ok(())
}

async fn decrement_queued(c: &impl GenericClient, key_id: &str, n: i64) -> Result<(), StoreError> {
    let st = c
        .prepare_cached("UPDATE api_keys SET queued = queued - $2 WHERE id = $1")
        .await
        .map_err(db("quota"))?;
    c.execute(&st, &[&key_id, &n]).await.map_err(db("quota"))?;
    Ok(())
}

/// A job as its owner sees it; `None` for other keys' jobs.
pub(super) async fn get(
    c: &impl GenericClient,
    key_id: &str,
    job_id: &str,
) -> Result<Option<Job>, StoreError> {
    let st = c
        .prepare_cached(&format!(
            "{JOB_SELECT} WHERE j.id = $1 AND j.api_key_id = $2"
        ))
        .await
        .map_err(db("get job"))?;
    let row = c
        .query_opt(&st, &[&job_id, &key_id])
        .await
        .map_err(db("get job"))?;
    row.as_ref()
        .map(job_from_row)
        .transpose()
        .map_err(db("get job"))
}

pub(super) async fn find_by_idempotency_key(
    c: &impl GenericClient,
    key_id: &str,
    idempotency_key: &str,
) -> Result<Option<Job>, StoreError> {
    let st = c
        .prepare_cached(&format!(
            "{JOB_SELECT} WHERE j.api_key_id = $1 AND j.idempotency_key = $2"
        ))
        .await
        .map_err(db("find job"))?;
    let row = c
        .query_opt(&st, &[&key_id, &idempotency_key])
        .await
        .map_err(db("find job"))?;
    row.as_ref()
        .map(job_from_row)
        .transpose()
        .map_err(db("find job"))
}

/// Leases up to `capacity` queued jobs, oldest first, to `device_id`, if the
/// device is still active. `SKIP LOCKED`: rows another relay is claiming
/// right now are passed over, not waited for, and never handed out twice.
pub(super) async fn claim(
    c: &impl GenericClient,
    device_id: &str,
    capacity: u32,
    lease_ms: i64,
    now: i64,
) -> Result<Claim, StoreError> {
    if !is_active_device(c, device_id).await? {
        return Ok(Claim {
            claimed: Claimed::DeviceRevoked,
            more: false,
        });
    }
    let st = c
        .prepare_cached(
            "SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .await
        .map_err(db("claim"))?;
    let mut seqs: Vec<i64> = c
        .query(&st, &[&(i64::from(capacity) + 1)])
        .await
        .map_err(db("claim"))?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(db("claim"))?;
    let more = seqs.len() > capacity as usize;
    seqs.truncate(capacity as usize);
    if seqs.is_empty() {
        return Ok(Claim {
            claimed: Claimed::Tasks(Vec::new()),
            more,
        });
    }
    let leases: Vec<String> = seqs.iter().map(|_| ids::lease_id()).collect();
    let expires = now.saturating_add(lease_ms);
    let st = c
        .prepare_cached(
            "UPDATE jobs SET status = 'leased', lease_id = u.lease, lease_device = $3,
                    lease_expires_at = $4, attempts = attempts + 1, updated_at = $5
             FROM unnest($1::bigint[], $2::text[]) AS u(seq, lease)
             WHERE jobs.seq = u.seq AND jobs.status = 'queued'
             RETURNING jobs.seq, jobs.id, jobs.tracking_url, jobs.options, jobs.attempts, jobs.lease_id,
                       jobs.source, (SELECT name FROM api_keys k WHERE k.id = jobs.api_key_id)",
        )
        .await
        .map_err(db("claim"))?;
    let rows = c
        .query(&st, &[&seqs, &leases, &device_id, &expires, &now])
        .await
        .map_err(db("claim"))?;
    let mut tasks = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq: i64 = r.try_get(0).map_err(db("claim"))?;
        let options: Option<String> = r.try_get(3).map_err(db("claim"))?;
        let attempt: i32 = r.try_get(4).map_err(db("claim"))?;
        tasks.push((
            seq,
            ClaimedTask {
                task_id: r.try_get(1).map_err(db("claim"))?,
                lease_id: r
                    .try_get::<_, Option<String>>(5)
                    .map_err(db("claim"))?
                    .unwrap_or_default(),
                tracking_url: r.try_get(2).map_err(db("claim"))?,
                options: options
                    .and_then(|o| serde_json::from_str(&o).ok())
                    .unwrap_or_default(),
                attempt: attempt.max(0) as u32,
                lease_expires_at: expires,
                source: r.try_get(6).map_err(db("claim"))?,
                api_key_name: r.try_get(7).map_err(db("claim"))?,
            },
        ));
    }
    tasks.sort_by_key(|(seq, _)| *seq);
    Ok(Claim {
        claimed: Claimed::Tasks(tasks.into_iter().map(|(_, t)| t).collect()),
        more,
    })
}

/// Puts leased tasks back, as if never handed out (their poll was abandoned).
pub(super) async fn release(
    c: &impl GenericClient,
    lease_ids: &[String],
    now: i64,
    relay_id: &str,
) -> Result<usize, StoreError> {
    let st = c
        .prepare_cached(
            "UPDATE jobs SET status = 'queued', lease_id = NULL, lease_device = NULL, lease_expires_at = NULL,
                    attempts = attempts - 1, updated_at = $2
             WHERE lease_id = ANY($1) AND status = 'leased'",
        )
        .await
        .map_err(db("release"))?;
    let n = c
        .execute(&st, &[&lease_ids, &now])
        .await
        .map_err(db("release"))? as usize;
    notify::tasks_available(c, relay_id, n).await?;
    Ok(n)
}

/// Stores an agent's result if it still holds the lease. Re-posting with the
/// same lease after success is answered 200 again (idempotent). The job's
/// row is locked first, so a result and a lease expiry never both win.
/// `true` when this call finished the job.
pub(super) async fn post_result(
    c: &impl GenericClient,
    device_id: &str,
    task_id: &str,
    lease_id: &str,
    result_json: &str,
    now: i64,
) -> Result<bool, StoreError> {
    // No stored id holds a NUL (PostgreSQL text cannot).
    if task_id.contains('\0') {
        return Err(StoreError::TaskNotFound {
            task_id: task_id.to_owned(),
        });
    }
    let st = c
        .prepare_cached(
            "SELECT status, lease_id, lease_device, api_key_id FROM jobs WHERE id = $1 FOR UPDATE",
        )
        .await
        .map_err(db("result"))?;
    let Some(row) = c.query_opt(&st, &[&task_id]).await.map_err(db("result"))? else {
        return Err(StoreError::TaskNotFound {
            task_id: task_id.to_owned(),
        });
    };
    let status: String = row.try_get(0).map_err(db("result"))?;
    let held_lease: Option<String> = row.try_get(1).map_err(db("result"))?;
    let held_by: Option<String> = row.try_get(2).map_err(db("result"))?;
    let api_key_id: String = row.try_get(3).map_err(db("result"))?;
    let ours = held_lease.as_deref() == Some(lease_id) && held_by.as_deref() == Some(device_id);
    match (status.as_str(), ours) {
        ("done", true) => Ok(false),
        ("leased", true) => {
            let st = c
                .prepare_cached(
                    "UPDATE jobs SET status = 'done', result = $2, resolved_by = $3, updated_at = $4,
                            lease_expires_at = NULL
                     WHERE id = $1",
                )
                .await
                .map_err(db("result"))?;
            c.execute(&st, &[&task_id, &result_json, &device_id, &now])
                .await
                .map_err(db("result"))?;
            decrement_queued(c, &api_key_id, 1).await?;
            finished(c, task_id, &api_key_id, EventName::JobDone, now).await?;
            Ok(true)
        }
        _ => Err(StoreError::LeaseLost),
    }
}

/// Ends leases as if they had expired: requeued, or failed on the
/// `max_expiries`-th time. `{which}` selects the leases.
const END_LEASES: &str = "UPDATE jobs SET expiries = expiries + 1, lease_id = NULL, lease_device = NULL, lease_expires_at = NULL,
        updated_at = $1::bigint,
        status = CASE WHEN expiries + 1 >= $2::int THEN 'failed' ELSE 'queued' END,
        error_code = CASE WHEN expiries + 1 >= $2::int THEN 'agent_unavailable' ELSE NULL END,
        error_message = CASE WHEN expiries + 1 >= $2::int
            THEN 'the lease expired ' || (expiries + 1) || ' times without a result' ELSE NULL END
 WHERE seq IN (SELECT seq FROM jobs WHERE status = 'leased' AND {which} LIMIT $3::bigint FOR UPDATE SKIP LOCKED)
   AND status = 'leased'
 RETURNING status, api_key_id, id";

/// One maintenance pass, by one relay at a time (the others find the
/// advisory lock taken and skip): requeues or fails expired leases and the
/// leases of revoked devices, forgets nonces that can no longer pass the
/// window and deletes finished jobs older than the retention.
pub(super) async fn maintain(
    c: &impl GenericClient,
    now: i64,
    max_expiries: u32,
    retention_ms: i64,
    relay_id: &str,
) -> Result<Reaped, StoreError> {
    let st = c
        .prepare_cached("SELECT pg_try_advisory_xact_lock($1)")
        .await
        .map_err(db("maintenance"))?;
    let ours: bool = c
        .query_one(&st, &[&MAINTENANCE_LOCK])
        .await
        .map_err(db("maintenance"))?
        .try_get(0)
        .map_err(db("maintenance"))?;
    if !ours {
        return Ok(Reaped::default());
    }
    let max_expiries = i32::try_from(max_expiries).unwrap_or(i32::MAX);
    let mut reaped = Reaped::default();
    let mut failed_per_key: HashMap<String, i64> = HashMap::new();
    for which in [
        "lease_expires_at <= $1",
        "lease_device IN (SELECT id FROM devices WHERE revoked_at IS NOT NULL)",
    ] {
        let st = c
            .prepare_cached(&END_LEASES.replace("{which}", which))
            .await
            .map_err(db("maintenance"))?;
        let rows = c
            .query(&st, &[&now, &max_expiries, &REAP_BATCH])
            .await
            .map_err(db("maintenance"))?;
        for r in rows {
            let status: String = r.try_get(0).map_err(db("maintenance"))?;
            if status == "failed" {
                reaped.failed += 1;
                let api_key_id: String = r.try_get(1).map_err(db("maintenance"))?;
                let job_id: String = r.try_get(2).map_err(db("maintenance"))?;
                finished(c, &job_id, &api_key_id, EventName::JobFailed, now).await?;
                *failed_per_key.entry(api_key_id).or_default() += 1;
            } else {
                reaped.requeued += 1;
            }
        }
    }
    for (key_id, n) in failed_per_key {
        decrement_queued(c, &key_id, n).await?;
    }
    notify::tasks_available(c, relay_id, reaped.requeued).await?;
    let st = c
        .prepare_cached("DELETE FROM nonces WHERE expires_at < $1")
        .await
        .map_err(db("maintenance"))?;
    c.execute(&st, &[&(now / 1000)])
        .await
        .map_err(db("maintenance"))?;
    // Webhook deliveries go with their jobs (a delivery is never younger
    // than its job's last update).
    let st = c
        .prepare_cached("DELETE FROM webhook_deliveries WHERE created_at < $1")
        .await
        .map_err(db("maintenance"))?;
    c.execute(&st, &[&now.saturating_sub(retention_ms)])
        .await
        .map_err(db("maintenance"))?;
    let st = c
        .prepare_cached("DELETE FROM jobs WHERE status IN ('done', 'failed') AND updated_at < $1")
        .await
        .map_err(db("maintenance"))?;
    c.execute(&st, &[&now.saturating_sub(retention_ms)])
        .await
        .map_err(db("maintenance"))?;
    Ok(reaped)
}

/// Number of jobs in each state, for `/metrics`.
pub(super) async fn count_by_status(
    c: &impl GenericClient,
) -> Result<Vec<(String, i64)>, StoreError> {
    let st = c
        .prepare_cached("SELECT status, count(*) FROM jobs GROUP BY status")
        .await
        .map_err(db("count jobs"))?;
    c.query(&st, &[])
        .await
        .map_err(db("count jobs"))?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(db("count jobs"))
}
