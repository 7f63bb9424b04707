//! Finished jobs as a stream on PostgreSQL: the same finish numbering, feed
//! pages and listing as `store/events.rs`.
//!
//! Finish numbers come from one `counters` row updated in the transaction
//! that finishes the job. The row lock is held until commit, so a second
//! finishing transaction (on any relay) waits for the first to commit before
//! it draws the next number: numbers are handed out in commit order, and a
//! reader of `finished_seq > cursor` never sees a later number before an
//! earlier one. The cost is that finishes serialise on that row for the few
//! milliseconds of their transaction.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::super::StoreError;
use super::super::events::ListFilter;
use super::db;
use crate::ids;
use link_peeler_wire::protocol::{
    ErrorCode, Event, EventName, Job, JobError, JobStatus, ResolutionResult,
};

/// Every read of a job: the job, its webhook delivery if any (columns
/// 13–20), its finish number (21) and its queue position (22).
pub(super) const JOB_SELECT: &str = "SELECT j.id, j.idempotency_key, j.tracking_url, j.source, j.row_id, j.status, j.attempts, j.created_at, j.updated_at, j.resolved_by, j.result, j.error_code, j.error_message,
        d.id, d.event, d.state, d.attempts, d.last_attempt_at, d.last_status, d.last_error, d.next_attempt_at,
        j.finished_seq, j.seq
 FROM jobs j LEFT JOIN webhook_deliveries d ON d.job_id = j.id";

pub(super) fn job_from_row(r: &Row) -> Result<Job, tokio_postgres::Error> {
    let status: String = r.try_get(5)?;
    let attempts: i32 = r.try_get(6)?;
    let result: Option<String> = r.try_get(10)?;
    let error_code: Option<String> = r.try_get(11)?;
    Ok(Job {
        job_id: r.try_get(0)?,
        idempotency_key: r.try_get(1)?,
        tracking_url: r.try_get(2)?,
        source: r.try_get(3)?,
        row_id: r.try_get(4)?,
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Queued),
        attempts: attempts.max(0) as u32,
        created_at: ids::rfc3339(r.try_get(7)?),
        updated_at: ids::rfc3339(r.try_get(8)?),
        resolved_by: r.try_get(9)?,
        // Stored results were validated on the way in; an unreadable one reads as absent.
        result: result.and_then(|s| serde_json::from_str::<ResolutionResult>(&s).ok()),
        error: match error_code.as_deref() {
            Some("agent_unavailable") => Some(JobError {
                code: ErrorCode::AgentUnavailable,
                message: r.try_get::<_, Option<String>>(12)?.unwrap_or_default(),
            }),
            _ => None,
        },
        webhook: super::webhooks::status_from_row(r, 13)?,
    })
}

/// Numbers a job's finish, queues its webhook delivery and tells every
/// relay (at commit), inside the transaction that finishes it.
pub(super) async fn finished(
    c: &impl GenericClient,
    job_id: &str,
    api_key_id: &str,
    event: EventName,
    now: i64,
) -> Result<i64, StoreError> {
    let st = c
        .prepare_cached(
            "UPDATE counters SET value = value + 1 WHERE name = 'finish' RETURNING value",
        )
        .await
        .map_err(db("finish"))?;
    let seq: i64 = c
        .query_one(&st, &[])
        .await
        .map_err(db("finish"))?
        .try_get(0)
        .map_err(db("finish"))?;
    let st = c
        .prepare_cached("UPDATE jobs SET finished_seq = $2 WHERE id = $1")
        .await
        .map_err(db("finish"))?;
    c.execute(&st, &[&job_id, &seq])
        .await
        .map_err(db("finish"))?;
    super::webhooks::enqueue(c, job_id, api_key_id, event, now).await?;
    super::notify::jobs_finished(c, seq).await?;
    Ok(seq)
}

/// The last finish number handed out (0 before the first).
pub(super) async fn last_finish(c: &impl GenericClient) -> Result<i64, StoreError> {
    let st = c
        .prepare_cached("SELECT value FROM counters WHERE name = 'finish'")
        .await
        .map_err(db("finish"))?;
    Ok(c.query_opt(&st, &[])
        .await
        .map_err(db("finish"))?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(db("finish"))?
        .unwrap_or(0))
}

/// Up to `limit` of the key's finishes after `after`, in finish order.
pub(super) async fn page(
    c: &impl GenericClient,
    key_id: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<Event>, StoreError> {
    let st = c
        .prepare_cached(&format!(
            "{JOB_SELECT} WHERE j.api_key_id = $1 AND j.finished_seq > $2 ORDER BY j.finished_seq LIMIT $3"
        ))
        .await
        .map_err(db("events"))?;
    let rows = c
        .query(&st, &[&key_id, &after, &i64::from(limit)])
        .await
        .map_err(db("events"))?;
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let job = job_from_row(r).map_err(db("events"))?;
        let seq: i64 = r.try_get(21).map_err(db("events"))?;
        let event = match job.status {
            JobStatus::Failed => EventName::JobFailed,
            _ => EventName::JobDone,
        };
        events.push(Event {
            cursor: seq.to_string(),
            event,
            job,
        });
    }
    Ok(events)
}

/// One page of the key's jobs in creation order, and the next page's cursor.
pub(super) async fn list(
    c: &impl GenericClient,
    key_id: &str,
    filter: &ListFilter,
) -> Result<(Vec<Job>, Option<i64>), StoreError> {
    let st = c
        .prepare_cached(&format!(
            "{JOB_SELECT} WHERE j.api_key_id = $1 AND j.seq > $2
                AND ($3::text IS NULL OR j.source = $3) AND ($4::text IS NULL OR j.row_id = $4)
                AND ($5::text IS NULL OR j.status = $5)
                AND ($6::bigint IS NULL OR j.created_at >= $6) AND ($7::bigint IS NULL OR j.created_at < $7)
             ORDER BY j.seq LIMIT $8"
        ))
        .await
        .map_err(db("list jobs"))?;
    let rows = c
        .query(
            &st,
            &[
                &key_id,
                &filter.cursor.unwrap_or(0),
                &filter.source,
                &filter.row_id,
                &filter.status.map(JobStatus::as_str),
                &filter.created_after,
                &filter.created_before,
                &(i64::from(filter.limit) + 1),
            ],
        )
        .await
        .map_err(db("list jobs"))?;
    let mut jobs = Vec::new();
    let mut last_seq = None;
    for r in &rows {
        if jobs.len() == filter.limit as usize {
            // One more than the page holds: there is a next page.
            return Ok((jobs, last_seq));
        }
        jobs.push(job_from_row(r).map_err(db("list jobs"))?);
        last_seq = Some(r.try_get::<_, i64>(22).map_err(db("list jobs"))?);
    }
    Ok((jobs, None))
}
