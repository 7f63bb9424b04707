//! The relay's HTTP surface (protocol.md §2–§4): routing, shared state, middleware.
//!
//! Handlers are split by audience: [`links`] for external systems (API keys),
//! [`agent`] for desktop agents (device credentials), [`ops`] for operators.
//! Every signed handler starts with [`auth::read_body`] and
//! [`auth::authenticate`], which run the protocol's checks in its order (docs/protocol.md §2.5).

mod agent;
mod auth;
mod links;
mod ops;

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultMakeSpan, TraceLayer};

use super::Rejection;
use super::metrics::{CodeLabel, Metrics, RouteStatus};
use super::store::Store;
use link_peeler_wire::protocol::{ErrorCode, HEADER_SIGNATURE, paths};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Metrics,
    pub lease: Duration,
    /// Cancelled when the relay shuts down, so held long-polls answer at once.
    pub shutdown: CancellationToken,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(paths::LINKS_FETCH, post(links::fetch))
        .route("/api/links/jobs", get(links::find))
        .route("/api/links/jobs/{job_id}", get(links::get_job))
        .route(paths::AGENT_ENROLL, post(agent::enroll))
        .route(paths::AGENT_POLL, post(agent::poll))
        .route(
            "/api/agent/tasks/{task_id}/result",
            post(agent::post_result),
        )
        .route(paths::HEALTHZ, get(ops::healthz))
        .route(paths::METRICS, get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(DefaultMakeSpan::new().include_headers(true)),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::HeaderName::from_static(HEADER_SIGNATURE),
        ]))
        .with_state(state)
}

async fn not_found(req: Request) -> Rejection {
    Rejection::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// Counts requests by route template (not raw path, to bound cardinality) and status.
async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    if let Some(code) = resp.extensions().get::<ErrorCode>()
        && code.status() == 401
    {
        state
            .metrics
            .signature_failures
            .get_or_create(&CodeLabel {
                code: code.as_str().to_owned(),
            })
            .inc();
    }
    state
        .metrics
        .requests
        .get_or_create(&RouteStatus {
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}
