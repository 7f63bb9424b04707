//! The durable webhook queue on PostgreSQL: the same rows and answers as
//! `store/webhooks.rs`. Claims lock due rows with `FOR UPDATE SKIP LOCKED`,
//! so the dispatchers of several relays never claim one delivery twice; each
//! relay's caps (in all, per target) count its own attempts.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::super::StoreError;
use super::super::webhooks::{Attempt, DueDelivery, Slots, target_of};
use super::db;
use crate::ids;
use link_peeler_wire::protocol::{EventName, WebhookState, WebhookStatus};

/// Queues the job's delivery if its key has a webhook URL.
pub(super) async fn enqueue(
    c: &impl GenericClient,
    job_id: &str,
    api_key_id: &str,
    event: EventName,
    now: i64,
) -> Result<(), StoreError> {
    let st = c
        .prepare_cached("SELECT webhook_url FROM api_keys WHERE id = $1")
        .await
        .map_err(db("webhook"))?;
    let url: Option<String> = c
        .query_opt(&st, &[&api_key_id])
        .await
        .map_err(db("webhook"))?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(db("webhook"))?
        .flatten();
    let Some(url) = url else {
        return Ok(());
    };
    let st = c
        .prepare_cached(
            "INSERT INTO webhook_deliveries (id, job_id, api_key_id, event, url, target, state, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)
             ON CONFLICT (job_id) DO NOTHING",
        )
        .await
        .map_err(db("webhook"))?;
    c.execute(
        &st,
        &[
            &ids::delivery_id(),
            &job_id,
            &api_key_id,
            &event.as_str(),
            &url,
            &target_of(&url),
            &now,
        ],
    )
    .await
    .map_err(db("webhook"))?;
    Ok(())
}

/// The delivery columns of `events::JOB_SELECT`, from column `base` on.
pub(super) fn status_from_row(
    r: &Row,
    base: usize,
) -> Result<Option<WebhookStatus>, tokio_postgres::Error> {
    let Some(delivery_id) = r.try_get::<_, Option<String>>(base)? else {
        return Ok(None);
    };
    let event: String = r.try_get(base + 1)?;
    let state: String = r.try_get(base + 2)?;
    let state = WebhookState::parse(&state).unwrap_or(WebhookState::Pending);
    let attempts: i32 = r.try_get(base + 3)?;
    let last_status: Option<i32> = r.try_get(base + 5)?;
    let next: i64 = r.try_get(base + 7)?;
    Ok(Some(WebhookStatus {
        delivery_id,
        event: EventName::parse(&event).unwrap_or(EventName::JobDone),
        state,
        attempts: attempts.max(0) as u32,
        last_attempt_at: r.try_get::<_, Option<i64>>(base + 4)?.map(ids::rfc3339),
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: r.try_get(base + 6)?,
        next_attempt_at: (state == WebhookState::Pending).then(|| ids::rfc3339(next)),
    }))
}

/// Claims the due deliveries that fit `slots`, oldest due first, leasing
/// each for `lease_ms`.
pub(super) async fn claim_due(
    c: &impl GenericClient,
    now: i64,
    lease_ms: i64,
    slots: &Slots,
) -> Result<Vec<DueDelivery>, StoreError> {
    if slots.total == 0 {
        return Ok(Vec::new());
    }
    let st = c
        .prepare_cached(
            "SELECT id, target FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_at <= $1
             ORDER BY next_attempt_at LIMIT 512 FOR UPDATE SKIP LOCKED",
        )
        .await
        .map_err(db("claim deliveries"))?;
    let rows = c
        .query(&st, &[&now])
        .await
        .map_err(db("claim deliveries"))?;
    let mut in_flight = slots.in_flight.clone();
    let mut picked: Vec<String> = Vec::new();
    for r in &rows {
        let id: String = r.try_get(0).map_err(db("claim deliveries"))?;
        let target: String = r.try_get(1).map_err(db("claim deliveries"))?;
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
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let st = c
        .prepare_cached(
            "UPDATE webhook_deliveries d
                SET attempts = d.attempts + 1, first_attempt_at = coalesce(d.first_attempt_at, $2),
                    last_attempt_at = $2, next_attempt_at = $3
               FROM api_keys k
              WHERE d.id = ANY($1) AND d.state = 'pending' AND k.id = d.api_key_id
              RETURNING d.id, d.job_id, d.api_key_id, d.event, d.url, d.target, d.attempts,
                        d.first_attempt_at, k.secret, d.next_attempt_at",
        )
        .await
        .map_err(db("claim deliveries"))?;
    let rows = c
        .query(&st, &[&picked, &now, &now.saturating_add(lease_ms)])
        .await
        .map_err(db("claim deliveries"))?;
    let mut due = Vec::with_capacity(rows.len());
    for r in &rows {
        let event: String = r.try_get(3).map_err(db("claim deliveries"))?;
        let attempt: i32 = r.try_get(6).map_err(db("claim deliveries"))?;
        due.push(DueDelivery {
            delivery_id: r.try_get(0).map_err(db("claim deliveries"))?,
            job_id: r.try_get(1).map_err(db("claim deliveries"))?,
            api_key_id: r.try_get(2).map_err(db("claim deliveries"))?,
            event: EventName::parse(&event).unwrap_or(EventName::JobDone),
            url: r.try_get(4).map_err(db("claim deliveries"))?,
            target: r.try_get(5).map_err(db("claim deliveries"))?,
            attempt: attempt.max(0) as u32,
            first_attempt_at: r
                .try_get::<_, Option<i64>>(7)
                .map_err(db("claim deliveries"))?
                .unwrap_or(now),
            secret: r.try_get(8).map_err(db("claim deliveries"))?,
        });
    }
    Ok(due)
}

/// Records an attempt's outcome.
pub(super) async fn record(c: &impl GenericClient, attempt: &Attempt) -> Result<(), StoreError> {
    let st = c
        .prepare_cached(
            "UPDATE webhook_deliveries
                SET state = $2, last_status = $3, last_error = $4,
                    next_attempt_at = coalesce($5, next_attempt_at)
              WHERE id = $1 AND state = 'pending'",
        )
        .await
        .map_err(db("record attempt"))?;
    let status = attempt.status.map(i32::from);
    c.execute(
        &st,
        &[
            &attempt.delivery_id,
            &attempt.state.as_str(),
            &status,
            &attempt.error,
            &attempt.next_attempt_at,
        ],
    )
    .await
    .map_err(db("record attempt"))?;
    Ok(())
}

/// When the earliest pending delivery is due, if any.
pub(super) async fn next_due(c: &impl GenericClient) -> Result<Option<i64>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'",
        )
        .await
        .map_err(db("next delivery"))?;
    c.query_one(&st, &[])
        .await
        .map_err(db("next delivery"))?
        .try_get(0)
        .map_err(db("next delivery"))
}

/// Deliveries by state, for `/metrics`.
pub(super) async fn count_by_state(
    c: &impl GenericClient,
) -> Result<Vec<(String, i64)>, StoreError> {
    let st = c
        .prepare_cached("SELECT state, count(*) FROM webhook_deliveries GROUP BY state")
        .await
        .map_err(db("count deliveries"))?;
    c.query(&st, &[])
        .await
        .map_err(db("count deliveries"))?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(db("count deliveries"))
}
