//! The relay's HTTP surface (protocol.md §2–§4): routing, shared state, middleware.
//!
//! Handlers are split by audience: [`links`] for external systems (API keys),
//! [`agent`] for desktop agents (device credentials), [`ops`] for operators
//! (`/healthz` on the main listener; `/metrics` only on the operations listener,
//! [`ops_router`]). Every signed handler starts with [`auth::read_body`] and
//! [`auth::authenticate`], which run the protocol's checks in its order (docs/protocol.md §2.5).
//! Every request first passes [`edge`] (framing, body deadline, error envelope);
//! enrollment also passes [`throttle_enrollment`].

mod agent;
mod auth;
mod edge;
mod links;
mod ops;
mod query;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultMakeSpan, TraceLayer};

use super::Rejection;
use super::metrics::{CodeLabel, Metrics, RouteStatus};
use super::store::Store;
use super::throttle::Throttle;
pub use edge::overloaded;
use link_peeler_wire::protocol::{ErrorCode, HEADER_SIGNATURE, paths};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Metrics,
    pub lease: Duration,
    /// Cancelled when the relay shuts down, so held long-polls answer at once.
    pub shutdown: CancellationToken,
    /// The whole request body must arrive within this (`408 request_timeout`).
    pub body_timeout: Duration,
    /// Failed enrollment attempts, per client address and overall.
    pub enroll_throttle: Arc<Throttle>,
}

/// The main listener's routes: the API and `/healthz`.
pub fn router(state: AppState) -> Router {
    let enroll = post(agent::enroll).route_layer(middleware::from_fn_with_state(
        state.clone(),
        throttle_enrollment,
    ));
    let routes = Router::new()
        .route(paths::LINKS_FETCH, post(links::fetch))
        .route(paths::LINKS_JOBS, get(links::find))
        .route(paths::LINKS_JOB, get(links::get_job))
        .route(paths::LINKS_BATCH, post(links::batch))
        .route(paths::LINKS_EVENTS, get(links::events))
        .route(paths::AGENT_ENROLL, enroll)
        .route(paths::AGENT_POLL, post(agent::poll))
        .route(paths::AGENT_TASK_RESULT, post(agent::post_result))
        .route(paths::HEALTHZ, get(ops::healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), edge::edge));
    common_layers(routes, state)
}

/// The operations listener's routes: `/metrics` and `/healthz`.
pub fn ops_router(state: AppState) -> Router {
    let routes = Router::new()
        .route(paths::HEALTHZ, get(ops::healthz))
        .route(paths::METRICS, get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found);
    common_layers(routes, state)
}

fn common_layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
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

/// Limits failed enrollment attempts (answered 4xx) per client address and
/// overall, checked before the code is looked up: over the limit, every
/// attempt (a right code too) is `429 rate_limited` with `Retry-After`.
async fn throttle_enrollment(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let attempt = match state.enroll_throttle.take(ip, tokio::time::Instant::now()) {
        Ok(attempt) => attempt,
        Err(wait) => {
            state.metrics.enroll_rate_limited.inc();
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            tracing::debug!(%ip, retry_after = secs, "enrollment attempt throttled");
            return Rejection::new(
                ErrorCode::RateLimited,
                format!("too many failed enrollment attempts; retry in {secs} s"),
            )
            .retry_after(secs)
            .into_response();
        }
    };
    let resp = next.run(req).await;
    if !resp.status().is_client_error() {
        state.enroll_throttle.refund(attempt);
    }
    resp
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
