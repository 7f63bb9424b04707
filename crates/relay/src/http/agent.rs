//! `/api/agent/*`: enrollment, long-poll and results for desktop agents (protocol.md §4).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Request, State};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::AppState;
use super::auth::{authenticate, parse_json, read_body, revoked};
use crate::store::{Claimed, ClaimedTask, MAX_POLLS_PER_DEVICE, NonceUse, PrincipalKind, Waiter};
use crate::{Rejection, ids};
use link_peeler_wire::protocol::{
    EnrollRequest, EnrollResponse, ErrorCode, PollRequest, PollResponse, ResultPost, Task,
};

/// `POST /api/agent/enroll` (unsigned: the one-time code is the credential).
pub async fn enroll(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<EnrollResponse>, Rejection> {
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let request: EnrollRequest = parse_json(&body)?;
    request.validate()?;
    let creds = state.store.enroll(request).await?;
    tracing::info!(device = %creds.device_id, "device enrolled");
    Ok(Json(creds))
}

/// `POST /api/agent/poll`: answers as soon as a task can be leased, or with
/// an empty list after `waitSeconds`.
///
/// Waiting is an in-process wake-up, not a sleep-and-query loop, and it is
/// targeted: the writer wakes one held poll per task it made available,
/// oldest first (`store/waiters.rs`), so a job costs a constant number of
/// claims however many agents wait. Each attempt registers as a waiter
/// *before* it claims, so a task committed between the claim and the wait
/// still wakes it. A device may have [`MAX_POLLS_PER_DEVICE`] polls in flight;
/// one more is answered `429 too_many_polls` at once.
///
/// Every claim checks, in the writer's transaction, that the device is still
/// active: a poll held while its device was revoked ends with `401
/// revoked_key` at its next claim, never with a task.
pub async fn poll(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<PollResponse>, Rejection> {
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let auth = authenticate(&state, &parts.headers, &body, PrincipalKind::Device).await?;
    let poll = auth.check(&state, poll_request(&body)).await?;
    let mut spent = auth.nonce;
    // The state report is stored (with the last-seen time) when the nonce is spent.
    spent.agent_state = poll
        .state
        .as_ref()
        .and_then(|s| serde_json::to_string(s).ok());
    if poll.capacity == 0 {
        // A report-only poll (a paused agent): store the report, take no
        // task. It holds nothing, so it takes no poll slot and no waiter.
        state.store.consume_nonce(spent).await?;
        return Ok(answer(Vec::new()));
    }
    let Some(permit) = state.store.admit_poll(&auth.key_id) else {
        // The nonce comes before the operation (protocol.md §2.5): a replay is 401.
        state.store.consume_nonce(spent).await?;
        return Err(too_many_polls());
    };

    let deadline = Instant::now() + Duration::from_secs(poll.wait_seconds.into());
    let _waiting = state.metrics.waiter();
    let mut nonce = Some(spent);
    // A waiter that was woken; the next claim uses its wake.
    let mut woken: Option<Waiter> = None;
    loop {
        let waiter = (poll.wait_seconds > 0).then(|| permit.register());
        let tasks = match claim(&state, &auth.key_id, poll.capacity, nonce.take()).await? {
            Claimed::Tasks(tasks) => tasks,
            // `woken` drops unused and passes its wake on to the next poll.
            Claimed::DeviceRevoked => return Err(revoked()),
        };
        if let Some(w) = woken.take() {
            w.used();
        }
        let waiter = match waiter {
            Some(w)
                if tasks.is_empty()
                    && Instant::now() < deadline
                    && !state.shutdown.is_cancelled() =>
            {
                w
            }
            // A waiter woken during the claim passes its wake on as it drops.
            _ => return Ok(answer(tasks)),
        };
        tokio::select! {
            _ = waiter.woken() => woken = Some(waiter),
            _ = tokio::time::sleep_until(deadline) => return Ok(answer(Vec::new())),
            _ = state.shutdown.cancelled() => return Ok(answer(Vec::new())),
        }
    }
}

fn answer(tasks: Vec<ClaimedTask>) -> Json<PollResponse> {
    Json(PollResponse {
        tasks: tasks.into_iter().map(to_task).collect(),
    })
}

/// Suggested wait before polling again after `too_many_polls`.
const TOO_MANY_POLLS_RETRY_SECS: u64 = 5;

fn too_many_polls() -> Rejection {
    Rejection::new(
        ErrorCode::TooManyPolls,
        format!(
            "this device already has {MAX_POLLS_PER_DEVICE} polls in flight; poll again when one has ended"
        ),
    )
    .retry_after(TOO_MANY_POLLS_RETRY_SECS)
}

/// A well-formed, valid poll request.
fn poll_request(body: &[u8]) -> Result<PollRequest, Rejection> {
    let poll: PollRequest = parse_json(body)?;
    poll.validate()?;
    Ok(poll)
}

/// Claims in a detached task: if this poll's connection drops while the claim
/// is in flight, the detached task sees the closed channel and releases the
/// leases at once instead of stranding them until expiry.
async fn claim(
    state: &AppState,
    device_id: &str,
    capacity: u32,
    nonce: Option<NonceUse>,
) -> Result<Claimed, Rejection> {
    let (tx, rx) = oneshot::channel();
    let store = state.store.clone();
    let device_id = device_id.to_owned();
    let lease_ms = state.lease.as_millis() as i64;
    tokio::spawn(async move {
        let result = store.claim(&device_id, capacity, lease_ms, nonce).await;
        if let Err(Ok(Claimed::Tasks(tasks))) = tx.send(result) {
            tracing::info!(count = tasks.len(), "poll abandoned; releasing its leases");
            store.release(tasks.into_iter().map(|t| t.lease_id).collect());
        }
    });
    let claimed = rx
        .await
        .map_err(|_| Rejection::internal("claim", "claim task ended without answering"))?;
    Ok(claimed?)
}

fn to_task(t: ClaimedTask) -> Task {
    Task {
        task_id: t.task_id,
        lease_id: t.lease_id,
        tracking_url: t.tracking_url,
        options: t.options,
        attempt: t.attempt,
        lease_expires_at: ids::rfc3339(t.lease_expires_at),
        api_key_name: t.api_key_name,
        source: t.source,
    }
}

/// `POST /api/agent/tasks/{taskId}/result`
pub async fn post_result(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
    req: Request,
) -> Result<Json<serde_json::Value>, Rejection> {
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let auth = authenticate(&state, &parts.headers, &body, PrincipalKind::Device).await?;
    let post: ResultPost = auth.check(&state, parse_json(&body)).await?;
    let result_json = serde_json::to_string(&post.result)
        .map_err(|e| Rejection::internal("encoding result", e))?;
    state
        .store
        .post_result(
            &auth.key_id,
            &task_id,
            &post.lease_id,
            result_json,
            auth.nonce,
        )
        .await?;
    tracing::info!(task = %task_id, device = %auth.key_id, conclusion = %post.result.conclusion, "result stored");
    Ok(Json(serde_json::json!({"ok": true})))
}
