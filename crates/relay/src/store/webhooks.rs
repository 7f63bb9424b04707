//! The durable webhook queue (protocol.md §3.12).
//!
//! A delivery row is written in the transaction that finishes its job
//! ([`enqueue`], called from `events::finished`), so no finish can commit
//! without its delivery, and a relay killed at any moment finds every
//! undelivered one on restart. The dispatcher (`crate::webhooks`) claims due
//! rows with [`claim_due`], which pushes `next_attempt_at` one lease ahead
//! before the attempt starts: if the relay dies mid-attempt, the row simply
//! becomes due again when that lease runs out, with the same delivery id.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::ids;
use link_peeler_wire::protocol::{EventName, WebhookState, WebhookStatus};

/// Queues the job's delivery if its key has a webhook URL.
pub fn enqueue(
    conn: &Connection,
    job_id: &str,
    api_key_id: &str,
    event: EventName,
    now: i64,
) -> rusqlite::Result<()> {
    let url: Option<String> = conn
        .prepare_cached("SELECT webhook_url FROM api_keys WHERE id = ?1")?
        .query_row([api_key_id], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(url) = url else {
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries (id, job_id, api_key_id, event, url, target, state, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)
         ON CONFLICT (job_id) DO NOTHING",
    )?
    .execute(params![
        ids::delivery_id(),
        job_id,
        api_key_id,
        event.as_str(),
        url,
        target_of(&url),
        now
    ])?;
    Ok(())
}

/// The host and port a URL connects to: the unit of the per-target cap.
pub fn target_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => url.to_owned(),
    }
}

/// The delivery columns of `jobs::JOB_SELECT`, from column `base` on
/// (`d.id, d.event, d.state, d.attempts, d.last_attempt_at, d.last_status,
/// d.last_error, d.next_attempt_at`).
pub fn status_from_row(r: &Row<'_>, base: usize) -> rusqlite::Result<Option<WebhookStatus>> {
    let Some(delivery_id) = r.get::<_, Option<String>>(base)? else {
        return Ok(None);
    };
    let event: String = r.get(base + 1)?;
    let state: String = r.get(base + 2)?;
    let state = WebhookState::parse(&state).unwrap_or(WebhookState::Pending);
    let next: i64 = r.get(base + 7)?;
    Ok(Some(WebhookStatus {
        delivery_id,
        event: EventName::parse(&event).unwrap_or(EventName::JobDone),
        state,
        attempts: r.get(base + 3)?,
        last_attempt_at: r.get::<_, Option<i64>>(base + 4)?.map(ids::rfc3339),
        last_status: r.get(base + 5)?,
        last_error: r.get(base + 6)?,
        next_attempt_at: (state == WebhookState::Pending).then(|| ids::rfc3339(next)),
    }))
}

/// A delivery claimed for one attempt.
#[derive(Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub delivery_id: String,
    pub job_id: String,
    pub api_key_id: String,
    /// The API key's secret: the webhook is signed with it.
    pub secret: String,
    pub event: EventName,
    pub url: String,
    pub target: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// When the first attempt started (this one's start, for the first).
    pub first_attempt_at: i64,
}

impl std::fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueDelivery")
            .field("delivery_id", &self.delivery_id)
            .field("job_id", &self.job_id)
            .field("target", &self.target)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// How many deliveries the dispatcher may start now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    /// Free slots in all.
    pub total: usize,
    /// Attempts in flight per target.
    pub in_flight: HashMap<String, usize>,
    /// Most attempts in flight to one target.
    pub per_target: usize,
}

/// Claims the due deliveries that fit `slots`, oldest due first, leasing
/// each for `lease_ms` (it becomes due again then, should the attempt never
/// be recorded).
pub fn claim_due(
    conn: &Connection,
    now: i64,
    lease_ms: i64,
    slots: &Slots,
) -> rusqlite::Result<Vec<DueDelivery>> {
    if slots.total == 0 {
        return Ok(Vec::new());
    }
    let mut in_flight = slots.in_flight.clone();
    let mut picked = Vec::new();
    let candidates: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT id, target FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_at <= ?1
             ORDER BY next_attempt_at LIMIT 512",
        )?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, target) in candidates {
        let n = in_flight.entry(target).or_default();
        if *n >= slots.per_target {
            continue;
        }
        *n += 1;
        picked.push(id);
        if picked.len() == slots.total {
            break;
        }
    }
    let mut claim = conn.prepare_cached(
        "UPDATE webhook_deliveries
            SET attempts = attempts + 1, first_attempt_at = coalesce(first_attempt_at, ?2),
                last_attempt_at = ?2, next_attempt_at = ?3
          WHERE id = ?1 AND state = 'pending'
          RETURNING job_id, api_key_id, event, url, target, attempts, first_attempt_at,
                    (SELECT secret FROM api_keys WHERE id = api_key_id)",
    )?;
    let mut due = Vec::with_capacity(picked.len());
    for id in picked {
        let row = claim
            .query_row(params![id, now, now.saturating_add(lease_ms)], |r| {
                let event: String = r.get(2)?;
                Ok(DueDelivery {
                    delivery_id: id.clone(),
                    job_id: r.get(0)?,
                    api_key_id: r.get(1)?,
                    event: EventName::parse(&event).unwrap_or(EventName::JobDone),
                    url: r.get(3)?,
                    target: r.get(4)?,
                    attempt: r.get(5)?,
                    first_attempt_at: r.get(6)?,
                    secret: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                })
            })
            .optional()?;
        due.extend(row);
    }
    Ok(due)
}

/// What one attempt came to, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivery_id: String,
    pub state: WebhookState,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// When the next attempt is due (`Pending` only).
    pub next_attempt_at: Option<i64>,
}

/// Records an attempt's outcome.
pub fn record(conn: &Connection, attempt: &Attempt) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE webhook_deliveries
            SET state = ?2, last_status = ?3, last_error = ?4,
                next_attempt_at = coalesce(?5, next_attempt_at)
          WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![
        attempt.delivery_id,
        attempt.state.as_str(),
        attempt.status,
        attempt.error,
        attempt.next_attempt_at
    ])?;
    Ok(())
}

/// When the earliest pending delivery is due, if any.
pub fn next_due(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'",
    )?
    .query_row([], |r| r.get(0))
}

/// Deliveries by state, for `/metrics`.
pub fn count_by_state(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare_cached("SELECT state, count(*) FROM webhook_deliveries GROUP BY state")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Sets or clears an API key's webhook URL; `false` if there is no such key.
pub fn set_url(conn: &Connection, key_id: &str, url: Option<&str>) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE api_keys SET webhook_url = ?2 WHERE id = ?1",
        params![key_id, url],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{T0, TestDb};

    /// Queues one pending delivery per URL for a fresh finished job each.
    fn queue(conn: &Connection, key: &str, urls: &[&str]) {
        for (i, url) in urls.iter().enumerate() {
            set_url(conn, key, Some(url)).unwrap();
            let job = format!("job_{i}");
            enqueue(conn, &job, key, EventName::JobDone, T0 + i as i64).unwrap();
        }
    }

    fn slots(total: usize, in_flight: &[(&str, usize)]) -> Slots {
        Slots {
            total,
            in_flight: in_flight
                .iter()
                .map(|(t, n)| ((*t).to_owned(), *n))
                .collect(),
            per_target: 2,
        }
    }

    #[test]
    fn claims_respect_the_total_and_the_per_target_caps_oldest_first() {
        let db = TestDb::new();
        let key = db.key(100, 100);
        let conn = db.conn();
        let a = "http://a.example/h";
        let b = "https://b.example/h";
        queue(&conn, &key, &[a, a, a, b, b]);
        assert_eq!(target_of(a), "a.example:80");
        assert_eq!(target_of(b), "b.example:443");

        // Two per target: a, a, then b, b; the third a waits.
        let got = claim_due(&conn, T0 + 10, 1_000, &slots(10, &[])).unwrap();
        let targets: Vec<&str> = got.iter().map(|d| d.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "a.example:80",
                "a.example:80",
                "b.example:443",
                "b.example:443"
            ]
        );
        assert!(
            got.iter()
                .all(|d| d.attempt == 1 && d.first_attempt_at == T0 + 10)
        );
        // Claimed rows are leased: not due again until the lease runs out.
        assert!(
            claim_due(&conn, T0 + 10, 1_000, &slots(10, &[]))
                .unwrap()
                .len()
                == 1
        );
        assert!(
            claim_due(&conn, T0 + 10, 1_000, &slots(10, &[]))
                .unwrap()
                .is_empty()
        );
        let again = claim_due(&conn, T0 + 1_010, 1_000, &slots(1, &[])).unwrap();
        assert_eq!(again.len(), 1, "the total cap");
        assert_eq!(again[0].attempt, 2);
        assert_eq!(
            again[0].first_attempt_at,
            T0 + 10,
            "the first attempt's time stays"
        );
        // Slots already busy with a target count against it.
        let busy = claim_due(&conn, T0 + 5_000, 1_000, &slots(10, &[("a.example:80", 2)])).unwrap();
        assert!(busy.iter().all(|d| d.target == "b.example:443"), "{busy:?}");
        assert!(
            claim_due(&conn, T0 + 9_000, 1_000, &slots(0, &[]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn only_pending_deliveries_are_claimed_and_a_record_ends_them() {
        let db = TestDb::new();
        let key = db.key(100, 100);
        let conn = db.conn();
        queue(&conn, &key, &["http://a.example/h"]);
        let d = claim_due(&conn, T0, 1_000, &slots(4, &[]))
            .unwrap()
            .remove(0);
        assert!(
            !format!("{d:?}").contains(&d.secret),
            "the secret is not in Debug"
        );
        record(
            &conn,
            &Attempt {
                delivery_id: d.delivery_id.clone(),
                state: WebhookState::Delivered,
                status: Some(204),
                error: None,
                next_attempt_at: None,
            },
        )
        .unwrap();
        assert!(
            claim_due(&conn, T0 + 60_000, 1_000, &slots(4, &[]))
                .unwrap()
                .is_empty()
        );
        assert_eq!(next_due(&conn).unwrap(), None);
        // A job finishes once: a second enqueue for it changes nothing.
        enqueue(&conn, "job_0", &key, EventName::JobDone, T0).unwrap();
        assert_eq!(db.count("SELECT count(*) FROM webhook_deliveries"), 1);
    }
}
