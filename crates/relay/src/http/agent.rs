//! `/api/agent/*`: enrollment, long-poll and results for desktop agents (protocol.md §4).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Request, State};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::AppState;
use super::auth::{authenticate, parse_json, read_body};
use crate::store::{ClaimedTask, PrincipalKind};
use crate::{Rejection, ids};
use link_peeler_wire::protocol::{
    EnrollRequest, EnrollResponse, PollRequest, PollResponse, ResultPost, Task,
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
/// Waiting is an in-process notification ([`Store::work_available`]), not a
/// sleep-and-query loop. The `Notified` future is enabled *before* each claim
/// attempt, so a job committed between the claim and the wait still wakes us.
///
/// [`Store::work_available`]: crate::store::Store::work_available
pub async fn poll(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<PollResponse>, Rejection> {
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let auth = authenticate(&state, &parts.headers, &body, PrincipalKind::Device).await?;
    let poll: PollRequest = parse_json(&body)?;
    poll.validate()?;

    let deadline = Instant::now() + Duration::from_secs(poll.wait_seconds.into());
    let _waiting = state.metrics.waiter();
    let mut nonce = Some(auth.nonce);
    loop {
        let notified = state.store.work_available().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let tasks = claim(&state, &auth.key_id, poll.capacity, nonce.take()).await?;
        if !tasks.is_empty() || Instant::now() >= deadline || state.shutdown.is_cancelled() {
            return Ok(Json(PollResponse {
                tasks: tasks.into_iter().map(to_task).collect(),
            }));
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
}

/// Claims in a detached task: if this poll's connection drops while the claim
/// is in flight, the detached task sees the closed channel and releases the
/// leases at once instead of stranding them until expiry.
async fn claim(
    state: &AppState,
    device_id: &str,
    capacity: u32,
    nonce: Option<crate::store::NonceUse>,
) -> Result<Vec<ClaimedTask>, Rejection> {
    let (tx, rx) = oneshot::channel();
    let store = state.store.clone();
    let device_id = device_id.to_owned();
    let lease_ms = state.lease.as_millis() as i64;
    tokio::spawn(async move {
        let result = store.claim(&device_id, capacity, lease_ms, nonce).await;
        if let Err(Ok(tasks)) = tx.send(result) {
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
    let post: ResultPost = parse_json(&body)?;
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
