//! Finished jobs as a stream: the finish counter, the results feed and job
//! listing (protocol.md §3.10–§3.11).
//!
//! The feed's promise is "never skip a job". A sequence number drawn when a
//! job is *created*, or a timestamp, would not keep it: two transactions can
//! draw numbers in one order and commit in the other, and a reader between
//! the two commits would move its cursor past the one not yet visible. So the
//! number is drawn from one counter row *in the transaction that finishes the
//! job* ([`finished`]). With SQLite's single writer, draw order is commit
//! order; a store with concurrent writers keeps the same promise because the
//! counter row is locked until commit. A reader therefore always sees a
//! prefix of the finish sequence, and `finished_seq > cursor` is exact.

use rusqlite::{Connection, OptionalExtension, params};

use super::jobs::{JOB_SELECT, job_from_row};
use link_peeler_wire::protocol::{Event, EventName, Job, JobStatus};

/// Numbers a job's finish and queues its webhook delivery, inside the
/// transaction that finishes it.
pub fn finished(
    conn: &Connection,
    job_id: &str,
    api_key_id: &str,
    event: EventName,
    now: i64,
) -> rusqlite::Result<()> {
    let seq: i64 = conn
        .prepare_cached(
            "UPDATE counters SET value = value + 1 WHERE name = 'finish' RETURNING value",
        )?
        .query_row([], |r| r.get(0))?;
    conn.prepare_cached("UPDATE jobs SET finished_seq = ?2 WHERE id = ?1")?
        .execute(params![job_id, seq])?;
    super::webhooks::enqueue(conn, job_id, api_key_id, event, now)
}

/// The last finish number handed out (0 before the first).
pub fn last_finish(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM counters WHERE name = 'finish'")?
        .query_row([], |r| r.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}

/// Up to `limit` of the key's finishes after `after`, in finish order.
pub fn page(
    conn: &Connection,
    key_id: &str,
    after: i64,
    limit: u32,
) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{JOB_SELECT} WHERE j.api_key_id = ?1 AND j.finished_seq > ?2 ORDER BY j.finished_seq LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![key_id, after, limit], |r| {
        let job = job_from_row(r)?;
        let seq: i64 = r.get(21)?;
        Ok((seq, job))
    })?;
    let mut events = Vec::new();
    for row in rows {
        let (seq, job) = row?;
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

/// Filters of a job listing; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub source: Option<String>,
    pub row_id: Option<String>,
    pub status: Option<JobStatus>,
    /// Milliseconds since the epoch, inclusive.
    pub created_after: Option<i64>,
    /// Milliseconds since the epoch, exclusive.
    pub created_before: Option<i64>,
    /// The queue position of the previous page's last job.
    pub cursor: Option<i64>,
    pub limit: u32,
}

/// One page of the key's jobs in creation order, and the cursor of the next
/// page when there is one.
pub fn list(
    conn: &Connection,
    key_id: &str,
    filter: &ListFilter,
) -> rusqlite::Result<(Vec<Job>, Option<i64>)> {
    let mut stmt = conn.prepare_cached(&format!(
        "{JOB_SELECT} WHERE j.api_key_id = ?1 AND j.seq > ?2
            AND (?3 IS NULL OR j.source = ?3) AND (?4 IS NULL OR j.row_id = ?4)
            AND (?5 IS NULL OR j.status = ?5)
            AND (?6 IS NULL OR j.created_at >= ?6) AND (?7 IS NULL OR j.created_at < ?7)
         ORDER BY j.seq LIMIT ?8"
    ))?;
    let rows = stmt.query_map(
        params![
            key_id,
            filter.cursor.unwrap_or(0),
            filter.source,
            filter.row_id,
            filter.status.map(JobStatus::as_str),
            filter.created_after,
            filter.created_before,
            i64::from(filter.limit) + 1,
        ],
        |r| Ok((job_from_row(r)?, r.get::<_, i64>(22)?)),
    )?;
    let mut jobs = Vec::new();
    let mut last_seq = None;
    for row in rows {
        let (job, seq) = row?;
        if jobs.len() == filter.limit as usize {
            // One more than the page holds: there is a next page.
            return Ok((jobs, last_seq));
        }
        jobs.push(job);
        last_seq = Some(seq);
    }
    Ok((jobs, None))
}
