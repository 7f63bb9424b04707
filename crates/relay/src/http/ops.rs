//! Operator endpoints: `GET /healthz` (main and operations listeners) and
//! `GET /metrics` (operations listener only: job counts are not for the public).

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::Rejection;
use crate::metrics::StateLabel;

/// Healthy when the database answers a trivial query. Says nothing else:
/// no counts, no versions. A relay whose PostgreSQL is unreachable answers
/// 503, so a load balancer takes it out of rotation.
pub async fn healthz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, Rejection> {
    state.store.ping().await?;
    Ok(Json(serde_json::json!({"status": "ok"})))
}

/// Prometheus text format. Job counts are read from the store at scrape time,
/// so they are right across restarts and admin edits.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, Rejection> {
    let counts = state.store.count_jobs_by_status().await?;
    for s in ["queued", "leased", "done", "failed"] {
        let n = counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        state
            .metrics
            .jobs
            .get_or_create(&StateLabel {
                state: s.to_owned(),
            })
            .set(n);
    }
    let deliveries = state.store.count_deliveries_by_state().await?;
    for s in ["pending", "delivered", "rejected", "refused", "failed"] {
        let n = deliveries
            .iter()
            .find(|(k, _)| k == s)
            .map_or(0, |(_, n)| *n);
        state
            .metrics
            .webhook_deliveries
            .get_or_create(&StateLabel {
                state: s.to_owned(),
            })
            .set(n);
    }
    let stats = state.store.writer_stats();
    let metrics = &state.metrics;
    metrics
        .writer_commits
        .set(stats.commits.load(Ordering::Relaxed) as i64);
    metrics
        .writer_ops
        .set(stats.ops.load(Ordering::Relaxed) as i64);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    ))
}
