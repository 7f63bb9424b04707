//! `/api/links/*`: job submission and reads for external systems (protocol.md §3).

use axum::Json;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{authenticate, parse_json, read_body};
use crate::Rejection;
use crate::store::PrincipalKind;
use link_peeler_wire::protocol::{ErrorCode, FetchRequest, HEADER_IDEMPOTENT_REPLAYED, Job};

/// `POST /api/links/fetch`: 202 for a new job, 200 + `Idempotent-Replayed` for a replay.
pub async fn fetch(State(state): State<AppState>, req: Request) -> Result<Response, Rejection> {
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let auth = authenticate(&state, &parts.headers, &body, PrincipalKind::ApiKey).await?;
    let request = auth.check(&state, fetch_request(&body)).await?;
    let submitted = state
        .store
        .submit(&auth.key_id, request, auth.nonce)
        .await?;
    if submitted.created {
        tracing::info!(job = %submitted.job.job_id, key = %auth.key_id, "job accepted");
        Ok((StatusCode::ACCEPTED, Json(submitted.job)).into_response())
    } else {
        let mut resp = (StatusCode::OK, Json(submitted.job)).into_response();
        resp.headers_mut()
            .insert(HEADER_IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        Ok(resp)
    }
}

/// A well-formed, valid submission.
fn fetch_request(body: &[u8]) -> Result<FetchRequest, Rejection> {
    let request: FetchRequest = parse_json(body)?;
    request.validate()?;
    Ok(request)
}

/// `GET /api/links/jobs/{jobId}`
pub async fn get_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    req: Request,
) -> Result<Json<Job>, Rejection> {
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let auth = authenticate(&state, &parts.headers, &body, PrincipalKind::ApiKey).await?;
    state.store.consume_nonce(auth.nonce).await?;
    state
        .store
        .get_job(&auth.key_id, &job_id)
        .await?
        .map(Json)
        .ok_or_else(|| Rejection::new(ErrorCode::NotFound, format!("no job {job_id}")))
}

/// `GET /api/links/jobs?idempotencyKey=K`
pub async fn find(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Json<Job>, Rejection> {
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let auth = authenticate(&state, &parts.headers, &body, PrincipalKind::ApiKey).await?;
    let key = auth
        .check(&state, idempotency_key(query.as_deref()))
        .await?;
    state.store.consume_nonce(auth.nonce).await?;
    state
        .store
        .find_job(&auth.key_id, &key)
        .await?
        .map(Json)
        .ok_or_else(|| Rejection::new(ErrorCode::NotFound, "no job with this idempotencyKey"))
}

/// The one non-empty `idempotencyKey` of the query string.
fn idempotency_key(query: Option<&str>) -> Result<String, Rejection> {
    let wanted: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "idempotencyKey")
        .map(|(_, v)| v.into_owned())
        .collect();
    match wanted.as_slice() {
        [one] if !one.is_empty() => Ok(one.clone()),
        [] => Err(Rejection::new(
            ErrorCode::InvalidRequest,
            "query parameter idempotencyKey is required",
        )),
        _ => Err(Rejection::new(
            ErrorCode::InvalidRequest,
            "query parameter idempotencyKey must appear exactly once and not be empty",
        )),
    }
}
