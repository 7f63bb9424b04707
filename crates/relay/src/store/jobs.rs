//! The job queue: submission with idempotency and quota, leases, results.
//!
//! Every function that writes runs inside the writer's transaction (see
//! `writer.rs`), so each sees a consistent queue and concurrent requests for
//! one idempotency key can only ever create one job.
//!
//! A job moves `queued → leased → done`, or back to `queued` when its lease
//! expires, and to `failed` (`agent_unavailable`) after too many expiries.
//! `api_keys.queued` counts a key's unfinished jobs so that the `maxQueued`
//! check is a single-row read instead of a count.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::StoreError;
use crate::ids;
use link_peeler_wire::protocol::{
    ErrorCode, EventName, FetchOptions, FetchRequest, Job, JobError, JobStatus, ResolutionResult,
};

/// Outcome of a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job: Job,
    /// `false` when an identical earlier submission was found (idempotent replay).
    pub created: bool,
}

/// Creates a job, or finds the identical earlier one (idempotency), within
/// the key's queue and daily limits.
pub fn submit(
    conn: &Connection,
    key_id: &str,
    req: &FetchRequest,
    now: i64,
) -> Result<Submitted, StoreError> {
    let canonical = req.canonical_json();
    if let Some(job) = replay(conn, key_id, req, &canonical)? {
        return Ok(Submitted {
            job,
            created: false,
        });
    }
    let day = check_limits(conn, key_id, now)?;
    count_submission(conn, key_id, day)?;
    let job = insert_job(conn, key_id, req, &canonical, now)?;
    Ok(Submitted { job, created: true })
}

/// Submits each request as [`submit`] would, one after the other in this
/// transaction. An item refused by idempotency or quota gets its error in
/// its place; any other failure fails the whole batch.
pub fn submit_batch(
    conn: &Connection,
    key_id: &str,
    requests: &[FetchRequest],
    now: i64,
) -> Result<Vec<Result<Submitted, StoreError>>, StoreError> {
    let mut out = Vec::with_capacity(requests.len());
    for req in requests {
        match submit(conn, key_id, req, now) {
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
fn replay(
    conn: &Connection,
    key_id: &str,
    req: &FetchRequest,
    canonical: &str,
) -> Result<Option<Job>, StoreError> {
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT canonical FROM jobs WHERE api_key_id = ?1 AND idempotency_key = ?2",
        )?
        .query_row(params![key_id, req.idempotency_key], |r| r.get(0))
        .optional()?;
    let Some(stored) = existing else {
        return Ok(None);
    };
    if stored != canonical {
        return Err(StoreError::IdempotencyConflict);
    }
    find_by_idempotency_key(conn, key_id, &req.idempotency_key)?
        .map(Some)
        .ok_or_else(|| StoreError::internal("idempotent replay", "job vanished"))
}

/// Checks `maxQueued` and the daily limit; returns the UTC day of `now`.
fn check_limits(conn: &Connection, key_id: &str, now: i64) -> Result<i64, StoreError> {
    let (queued, max_queued, daily_limit): (i64, i64, i64) = conn
        .prepare_cached("SELECT queued, max_queued, daily_limit FROM api_keys WHERE id = ?1")?
        .query_row([key_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if queued >= max_queued {
        return Err(StoreError::QueueFull { queued, max_queued });
    }
    let day = ids::utc_day(now);
    let used: i64 = conn
        .prepare_cached("SELECT count FROM daily_usage WHERE api_key_id = ?1 AND day = ?2")?
        .query_row(params![key_id, day], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if used >= daily_limit {
        return Err(StoreError::QuotaExceeded {
            daily_limit,
            resets_in_secs: ids::secs_until_next_utc_day(now),
        });
    }
    Ok(day)
}

/// Counts a new job against the key's daily usage and its unfinished jobs.
fn count_submission(conn: &Connection, key_id: &str, day: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO daily_usage (api_key_id, day, count) VALUES (?1, ?2, 1)
         ON CONFLICT (api_key_id, day) DO UPDATE SET count = count + 1",
    )?
    .execute(params![key_id, day])?;
    conn.prepare_cached("UPDATE api_keys SET queued = queued + 1 WHERE id = ?1")?
        .execute([key_id])?;
    Ok(())
}

/// Inserts a queued job and returns it as its owner will read it.
fn insert_job(
    conn: &Connection,
    key_id: &str,
    req: &FetchRequest,
    canonical: &str,
    now: i64,
) -> Result<Job, StoreError> {
    let job_id = ids::job_id();
    let options = req
        .options
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::internal("encoding options", e))?;
    conn.prepare_cached(
        "INSERT INTO jobs (id, api_key_id, idempotency_key, canonical, tracking_url, source, row_id, options, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?9)",
    )?
    .execute(params![
        job_id,
        key_id,
        req.idempotency_key,
        canonical,
        req.tracking_url,
        req.source,
        req.row_id,
        options,
        now
    ])?;
    let stamp = ids::rfc3339(now);
    Ok(Job {
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
    })
}

/// Every read of a job: the job, its webhook delivery if any (columns
/// 13–20), its finish number (21) and its queue position (22). Callers
/// append `WHERE` on `j.` columns.
pub(super) const JOB_SELECT: &str = "SELECT j.id, j.idempotency_key, j.tracking_url, j.source, j.row_id, j.status, j.attempts, j.created_at, j.updated_at, j.resolved_by, j.result, j.error_code, j.error_message,
        d.id, d.event, d.state, d.attempts, d.last_attempt_at, d.last_status, d.last_error, d.next_attempt_at,
        j.finished_seq, j.seq
 FROM jobs j LEFT JOIN webhook_deliveries d ON d.job_id = j.id";

pub(super) fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = r.get(5)?;
    let result: Option<String> = r.get(10)?;
    let error_code: Option<String> = r.get(11)?;
    Ok(Job {
        job_id: r.get(0)?,
        idempotency_key: r.get(1)?,
        tracking_url: r.get(2)?,
        source: r.get(3)?,
        row_id: r.get(4)?,
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Queued),
        attempts: r.get(6)?,
        created_at: ids::rfc3339(r.get(7)?),
        updated_at: ids::rfc3339(r.get(8)?),
        resolved_by: r.get(9)?,
        // Stored results were validated on the way in; an unreadable one reads as absent.
        result: result.and_then(|s| serde_json::from_str::<ResolutionResult>(&s).ok()),
        error: match error_code.as_deref() {
            Some("agent_unavailable") => Some(JobError {
                code: ErrorCode::AgentUnavailable,
                message: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
            }),
            _ => None,
        },
        webhook: super::webhooks::status_from_row(r, 13)?,
    })
}

/// A job as its owner sees it; `None` for other keys' jobs.
pub fn get(conn: &Connection, key_id: &str, job_id: &str) -> rusqlite::Result<Option<Job>> {
    conn.prepare_cached(&format!(
        "{JOB_SELECT} WHERE j.id = ?1 AND j.api_key_id = ?2"
    ))?
    .query_row(params![job_id, key_id], job_from_row)
    .optional()
}

pub fn find_by_idempotency_key(
    conn: &Connection,
    key_id: &str,
    idempotency_key: &str,
) -> rusqlite::Result<Option<Job>> {
    conn.prepare_cached(&format!(
        "{JOB_SELECT} WHERE j.api_key_id = ?1 AND j.idempotency_key = ?2"
    ))?
    .query_row(params![key_id, idempotency_key], job_from_row)
    .optional()
}

/// A task handed to an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    pub task_id: String,
    pub lease_id: String,
    pub tracking_url: String,
    pub options: FetchOptions,
    pub attempt: u32,
    pub lease_expires_at: i64,
    /// The submitting API key's name and the job's `source` (shown to the agent's user).
    pub api_key_name: Option<String>,
    pub source: Option<String>,
}

/// What a device's claim got.
#[derive(Debug, Clone, PartialEq)]
pub enum Claimed {
    /// The tasks now leased to the device (possibly none).
    Tasks(Vec<ClaimedTask>),
    /// The device was revoked (or is unknown): nothing was leased.
    DeviceRevoked,
}

/// A claim as the writer sees it: the tasks, and whether queued tasks were
/// left behind (so one more waiting poll should be woken).
#[derive(Debug)]
pub struct Claim {
    pub claimed: Claimed,
    pub more: bool,
}

/// Leases up to `capacity` queued jobs, oldest first, to `device_id`, if the
/// device is still active. The check reads the device in the writer's own
/// transaction, so a revocation committed before it (by `devices revoke`,
/// from any process) is always seen: no task is leased after it.
pub fn claim(
    conn: &Connection,
    device_id: &str,
    capacity: u32,
    lease_ms: i64,
    now: i64,
) -> rusqlite::Result<Claim> {
    if !super::principals::is_active_device(conn, device_id)? {
        return Ok(Claim {
            claimed: Claimed::DeviceRevoked,
            more: false,
        });
    }
    let mut ids_to_claim: Vec<i64> = conn
        .prepare_cached("SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT ?1")?
        .query_map([i64::from(capacity) + 1], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let more = ids_to_claim.len() > capacity as usize;
    ids_to_claim.truncate(capacity as usize);
    let expires = now.saturating_add(lease_ms);
    let mut tasks = Vec::with_capacity(ids_to_claim.len());
    let mut stmt = conn.prepare_cached(
        "UPDATE jobs SET status = 'leased', lease_id = ?2, lease_device = ?3, lease_expires_at = ?4,
                attempts = attempts + 1, updated_at = ?5
         WHERE seq = ?1 AND status = 'queued'
         RETURNING id, tracking_url, options, attempts, source, api_key_id",
    )?;
    let mut key_name = conn.prepare_cached("SELECT name FROM api_keys WHERE id = ?1")?;
    for seq in ids_to_claim {
        let lease_id = ids::lease_id();
        type Row = (String, String, Option<String>, u32, Option<String>, String);
        let row: Option<Row> = stmt
            .query_row(params![seq, lease_id, device_id, expires, now], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()?;
        if let Some((task_id, tracking_url, options, attempt, source, key_id)) = row {
            let api_key_name = key_name.query_row([&key_id], |r| r.get(0)).optional()?;
            tasks.push(ClaimedTask {
                api_key_name,
                source,
                task_id,
                lease_id,
                tracking_url,
                options: options
                    .and_then(|o| serde_json::from_str(&o).ok())
                    .unwrap_or_default(),
                attempt,
                lease_expires_at: expires,
            });
        }
    }
    Ok(Claim {
        claimed: Claimed::Tasks(tasks),
        more,
    })
}

/// Puts leased tasks back, as if never handed out (their poll was abandoned).
pub fn release(conn: &Connection, lease_ids: &[String], now: i64) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(
        "UPDATE jobs SET status = 'queued', lease_id = NULL, lease_device = NULL, lease_expires_at = NULL,
                attempts = attempts - 1, updated_at = ?2
         WHERE lease_id = ?1 AND status = 'leased'",
    )?;
    let mut n = 0;
    for lease in lease_ids {
        n += stmt.execute(params![lease, now])?;
    }
    Ok(n)
}

/// Stores an agent's result if it still holds the lease. Re-posting with the
/// same lease after success is answered 200 again (idempotent). `true` when
/// this call finished the job (so its finish event and webhook exist now).
pub fn post_result(
    conn: &Connection,
    device_id: &str,
    task_id: &str,
    lease_id: &str,
    result_json: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let row: Option<(String, Option<String>, Option<String>, String)> = conn
        .prepare_cached(
            "SELECT status, lease_id, lease_device, api_key_id FROM jobs WHERE id = ?1",
        )?
        .query_row([task_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((status, held_lease, held_by, api_key_id)) = row else {
        return Err(StoreError::TaskNotFound {
            task_id: task_id.to_owned(),
        });
    };
    let ours = held_lease.as_deref() == Some(lease_id) && held_by.as_deref() == Some(device_id);
    match (status.as_str(), ours) {
        ("done", true) => Ok(false),
        ("leased", true) => {
            conn.prepare_cached(
                "UPDATE jobs SET status = 'done', result = ?2, resolved_by = ?3, updated_at = ?4,
                        lease_expires_at = NULL
                 WHERE id = ?1",
            )?
            .execute(params![task_id, result_json, device_id, now])?;
            conn.prepare_cached("UPDATE api_keys SET queued = queued - 1 WHERE id = ?1")?
                .execute([&api_key_id])?;
            super::events::finished(conn, task_id, &api_key_id, EventName::JobDone, now)?;
            Ok(true)
        }
        _ => Err(StoreError::LeaseLost),
    }
}

/// What a maintenance pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub requeued: usize,
    pub failed: usize,
}

/// Ends leases as if they had expired: requeued, or failed on the
/// `max_expiries`-th time. `{table}` names the index, `{which}` the leases.
const END_LEASES: &str = "UPDATE {table} SET expiries = expiries + 1, lease_id = NULL, lease_device = NULL, lease_expires_at = NULL,
        updated_at = ?1,
        status = CASE WHEN expiries + 1 >= ?2 THEN 'failed' ELSE 'queued' END,
        error_code = CASE WHEN expiries + 1 >= ?2 THEN 'agent_unavailable' ELSE NULL END,
        error_message = CASE WHEN expiries + 1 >= ?2
            THEN 'the lease expired ' || (expiries + 1) || ' times without a result' ELSE NULL END
 WHERE status = 'leased' AND {which}
 RETURNING status, api_key_id, id";

/// Requeues jobs whose lease expired, or whose device was revoked (its
/// results would be refused, so its tasks need not wait out the lease);
/// fails those that expired `max_expiries` times.
pub fn reap_expired_leases(
    conn: &Connection,
    now: i64,
    max_expiries: u32,
) -> rusqlite::Result<Reaped> {
    let mut reaped = Reaped::default();
    for (table, which) in [
        ("jobs", "lease_expires_at <= ?1"),
        // Both sides indexed (migration 2), so a pass costs the revoked
        // devices and their leases, not every lease.
        (
            "jobs INDEXED BY jobs_lease_device",
            "lease_device IN (SELECT id FROM devices WHERE revoked_at IS NOT NULL)",
        ),
    ] {
        let sql = END_LEASES
            .replace("{table}", table)
            .replace("{which}", which);
        end_leases(conn, &sql, now, max_expiries, &mut reaped)?;
    }
    Ok(reaped)
}

fn end_leases(
    conn: &Connection,
    sql: &str,
    now: i64,
    max_expiries: u32,
    reaped: &mut Reaped,
) -> rusqlite::Result<()> {
    let rows: Vec<(String, String, String)> = conn
        .prepare_cached(sql)?
        .query_map(params![now, max_expiries], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (status, api_key_id, job_id) in rows {
        if status == "failed" {
            reaped.failed += 1;
            conn.prepare_cached("UPDATE api_keys SET queued = queued - 1 WHERE id = ?1")?
                .execute([&api_key_id])?;
            super::events::finished(conn, &job_id, &api_key_id, EventName::JobFailed, now)?;
        } else {
            reaped.requeued += 1;
        }
    }
    Ok(())
}

/// One maintenance pass: requeues or fails expired leases, forgets nonces
/// that can no longer pass the window and deletes finished jobs older than
/// the retention.
pub fn maintain(
    conn: &Connection,
    now: i64,
    max_expiries: u32,
    retention_ms: i64,
) -> rusqlite::Result<Reaped> {
    let reaped = reap_expired_leases(conn, now, max_expiries)?;
    prune_nonces(conn, now / 1000)?;
    prune_finished(conn, now.saturating_sub(retention_ms))?;
    Ok(reaped)
}

/// Forgets nonces whose timestamps can no longer pass the window.
pub fn prune_nonces(conn: &Connection, now_secs: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM nonces WHERE expires_at < ?1")?
        .execute([now_secs])
}

/// Deletes finished jobs older than the retention (idempotency lives as long as the job).
/// Their webhook deliveries go with them (a delivery is created when its job
/// finishes, so it is never younger than the job's last update).
pub fn prune_finished(conn: &Connection, older_than: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM webhook_deliveries WHERE created_at < ?1")?
        .execute([older_than])?;
    conn.prepare_cached("DELETE FROM jobs WHERE status IN ('done', 'failed') AND updated_at < ?1")?
        .execute([older_than])
}

/// Consumes a nonce; `false` if it was seen before.
pub fn consume_nonce(
    conn: &Connection,
    key_id: &str,
    nonce: &str,
    expires_at: i64,
) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO nonces (key_id, nonce, expires_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![key_id, nonce, expires_at])?;
    Ok(n == 1)
}

/// Number of jobs in each state, for `/metrics`.
pub fn count_by_status(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare_cached("SELECT status, count(*) FROM jobs GROUP BY status")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}
