//! `/api/links/*`: job submission and reads for external systems (protocol.md §3).

use axum::Json;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::AppState;
use super::auth::{authenticate, parse_json, read_body, read_body_up_to};
use super::query::Query;
use crate::Rejection;
use crate::store::{ListFilter, PrincipalKind, StoreError, Submitted};
use link_peeler_wire::protocol::{
    ApiError, BatchItem, BatchOutcome, BatchResponse, DEFAULT_PAGE_LIMIT, ErrorCode, EventsPage,
    FetchRequest, HEADER_IDEMPOTENT_REPLAYED, Job, JobList, JobStatus, MAX_BATCH_BODY_BYTES,
    MAX_BATCH_JOBS, MAX_EVENTS_WAIT_SECONDS, MAX_PAGE_LIMIT,
};

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

/// `GET /api/links/jobs`: with `idempotencyKey`, that one job (§3.5);
/// without it, a page of the key's jobs (§3.11).
pub async fn find(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, Rejection> {
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let auth = authenticate(&state, &parts.headers, &body, PrincipalKind::ApiKey).await?;
    if !has_idempotency_key(query.as_deref()) {
        let filter = auth.check(&state, list_filter(query.as_deref())).await?;
        state.store.consume_nonce(auth.nonce).await?;
        let (jobs, next) = state.store.list_jobs(&auth.key_id, filter).await?;
        let page = JobList {
            jobs,
            next_cursor: next.map(|n| n.to_string()),
        };
        return Ok(Json(page).into_response());
    }
    let key = auth
        .check(&state, idempotency_key(query.as_deref()))
        .await?;
    state.store.consume_nonce(auth.nonce).await?;
    state
        .store
        .find_job(&auth.key_id, &key)
        .await?
        .map(|job| Json(job).into_response())
        .ok_or_else(|| Rejection::new(ErrorCode::NotFound, "no job with this idempotencyKey"))
}

fn has_idempotency_key(query: Option<&str>) -> bool {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, _)| k == "idempotencyKey")
}

/// The one non-empty `idempotencyKey` of the query string.
fn idempotency_key(query: Option<&str>) -> Result<String, Rejection> {
    let wanted: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "idempotencyKey")
        .map(|(_, v)| v.into_owned())
        .collect();
    match wanted.as_slice() {
        // No key holds a control character (§3.1), and PostgreSQL text cannot hold U+0000.
        [one] if one.chars().any(char::is_control) => Err(Rejection::new(
            ErrorCode::InvalidRequest,
            "query parameter idempotencyKey must not contain control characters",
        )),
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

/// The listing's filters (protocol.md §3.11).
fn list_filter(query: Option<&str>) -> Result<ListFilter, Rejection> {
    let q = Query::parse(
        query,
        &[
            "source",
            "rowId",
            "status",
            "createdAfter",
            "createdBefore",
            "limit",
            "cursor",
        ],
    )?;
    let status = match q.text("status")? {
        None => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            Rejection::new(
                ErrorCode::InvalidRequest,
                format!("query parameter status must be queued, leased, done or failed, not {s:?}"),
            )
        })?),
    };
    Ok(ListFilter {
        source: q.text("source")?.map(str::to_owned),
        row_id: q.text("rowId")?.map(str::to_owned),
        status,
        created_after: q.time("createdAfter")?,
        created_before: q.time("createdBefore")?,
        cursor: q.cursor("cursor")?,
        limit: q.number("limit", 1..=MAX_PAGE_LIMIT, DEFAULT_PAGE_LIMIT)?,
    })
}

/// `GET /api/links/events`: the key's finished jobs after a cursor, held
/// until one finishes or `waitSeconds` pass (protocol.md §3.10).
pub async fn events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Json<EventsPage>, Rejection> {
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let auth = authenticate(&state, &parts.headers, &body, PrincipalKind::ApiKey).await?;
    let (after, wait, limit) = auth.check(&state, events_query(query.as_deref())).await?;
    state.store.consume_nonce(auth.nonce).await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait.into());
    let mut finishes = state.store.finishes();
    loop {
        // Marked seen before the read: a finish committed after it wakes us.
        finishes.borrow_and_update();
        let events = state.store.events(&auth.key_id, after, limit).await?;
        if !events.is_empty()
            || tokio::time::Instant::now() >= deadline
            || state.shutdown.is_cancelled()
        {
            let next_cursor = events
                .last()
                .map_or_else(|| after.to_string(), |e| e.cursor.clone());
            return Ok(Json(EventsPage {
                events,
                next_cursor,
            }));
        }
        tokio::select! {
            changed = finishes.changed() => {
                if changed.is_err() {
                    return Err(StoreError::ShuttingDown.into());
                }
            }
            () = tokio::time::sleep_until(deadline) => {}
            () = state.shutdown.cancelled() => {}
        }
    }
}

/// `after`, `waitSeconds` and `limit` of the feed.
fn events_query(query: Option<&str>) -> Result<(i64, u32, u32), Rejection> {
    let q = Query::parse(query, &["after", "waitSeconds", "limit"])?;
    Ok((
        q.cursor("after")?.unwrap_or(0),
        q.number("waitSeconds", 0..=MAX_EVENTS_WAIT_SECONDS, 0)?,
        q.number("limit", 1..=MAX_PAGE_LIMIT, DEFAULT_PAGE_LIMIT)?,
    ))
}

/// The batch body as it arrives: each item kept raw, so that one malformed
/// item is that item's `invalid` outcome rather than the whole batch's 400.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    jobs: Vec<Box<RawValue>>,
}

/// `POST /api/links/batch`: one outcome per item, in order (protocol.md §3.9).
pub async fn batch(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<BatchResponse>, Rejection> {
    let (parts, body) = req.into_parts();
    let body = read_body_up_to(&parts.headers, body, MAX_BATCH_BODY_BYTES).await?;
    let auth = authenticate(&state, &parts.headers, &body, PrincipalKind::ApiKey).await?;
    let items = auth.check(&state, batch_items(&body)).await?;
    let valid: Vec<FetchRequest> = items
        .iter()
        .filter_map(|i| i.as_ref().ok().cloned())
        .collect();
    let mut stored = state
        .store
        .submit_batch(&auth.key_id, valid, auth.nonce)
        .await?
        .into_iter();
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        results.push(match item {
            Err(invalid) => *invalid,
            Ok(request) => match stored.next() {
                Some(outcome) => stored_item(request.idempotency_key, outcome),
                None => return Err(StoreError::internal("batch", "an outcome is missing").into()),
            },
        });
    }
    let created = results
        .iter()
        .filter(|r| r.outcome == BatchOutcome::Created)
        .count();
    tracing::info!(key = %auth.key_id, items = results.len(), created, "batch accepted");
    Ok(Json(BatchResponse { results }))
}

/// Each item as a valid request, or its `invalid` outcome.
fn batch_items(body: &[u8]) -> Result<Vec<Result<FetchRequest, Box<BatchItem>>>, Rejection> {
    let raw: RawBatch = parse_json(body)?;
    if raw.jobs.is_empty() {
        return Err(Rejection::new(
            ErrorCode::InvalidRequest,
            "jobs must hold at least one job",
        ));
    }
    if raw.jobs.len() > MAX_BATCH_JOBS {
        return Err(Rejection::new(
            ErrorCode::BatchTooLarge,
            format!(
                "a batch holds at most {MAX_BATCH_JOBS} jobs, this one {}",
                raw.jobs.len()
            ),
        ));
    }
    Ok(raw.jobs.iter().map(|j| batch_item(j)).collect())
}

fn batch_item(raw: &RawValue) -> Result<FetchRequest, Box<BatchItem>> {
    let invalid = |error: ApiError| {
        Box::new(BatchItem {
            outcome: BatchOutcome::Invalid,
            idempotency_key: readable_key(raw),
            job: None,
            error: Some(error),
        })
    };
    let request: FetchRequest = serde_json::from_str(raw.get())
        .map_err(|e| invalid(ApiError::new(ErrorCode::InvalidRequest, e.to_string())))?;
    request.validate().map_err(invalid)?;
    Ok(request)
}

/// The item's `idempotencyKey`, if it has a string one.
fn readable_key(raw: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Key {
        #[serde(rename = "idempotencyKey")]
        idempotency_key: Option<serde_json::Value>,
    }
    serde_json::from_str::<Key>(raw.get())
        .ok()?
        .idempotency_key?
        .as_str()
        .map(str::to_owned)
}

fn stored_item(key: String, outcome: Result<Submitted, StoreError>) -> BatchItem {
    match outcome {
        Ok(s) => BatchItem {
            outcome: if s.created {
                BatchOutcome::Created
            } else {
                BatchOutcome::Replayed
            },
            idempotency_key: Some(key),
            job: Some(s.job),
            error: None,
        },
        Err(e) => {
            let outcome = match e {
                StoreError::IdempotencyConflict => BatchOutcome::Conflict,
                _ => BatchOutcome::Refused,
            };
            BatchItem {
                outcome,
                idempotency_key: Some(key),
                job: None,
                error: Some(Rejection::from(e).error),
            }
        }
    }
}
