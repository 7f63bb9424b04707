//! A small redirect lab on loopback: every kind of redirect protocol.md §5 names,
//! a broken link, a loop, generic n-hop chains and slow pages.
//!
//! Why built in: the demo, the end-to-end tests and the benchmark all need
//! real HTTP redirects without touching the internet; one lab keeps their
//! chains identical. It binds `127.0.0.1:0` only, counts hits per path (so a
//! test can tell a resolution is in progress), and stops with its token.
//!
//! Routes:
//!
//! | path | answer |
//! |---|---|
//! | `/ad/click?id=N` | 302 → `/track/redirect?c=N` |
//! | `/track/redirect?c=N` | 301 → `/landing/spring-sale?utm_source=demo&c=N` |
//! | `/interstitial` | 200, `<meta http-equiv="refresh">` → `/landing/meta` |
//! | `/js-bounce` | 200, `location.replace("/landing/js")` |
//! | `/refresh-header` | 200, `Refresh: 0; url=/landing/refresh` |
//! | `/gate` | 200, a load handler decodes a token and POSTs a form → `/gate/continue` |
//! | `/gate/continue` (POST) | 303 → `/landing/gated?token=…` (the posted token) |
//! | `/s/{code}` | 302 → `/t/{code}` → meta refresh → JS → `/landing/{code}` |
//! | `/expired-campaign` | 302 → `/gone` (404) |
//! | `/loop/a`, `/loop/b` | 302 to each other |
//! | `/chain/{n}` | 302 → `/chain/{n-1}` … `/chain/0` (200): n redirects, n+1 hops |
//! | `/slow/{ms}` | 200 after `ms` milliseconds |
//! | `/slow-once/{key}/{ms}` | the first request per key waits `ms`, later ones answer at once |
//! | `/landing/…` | 200 page |

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct LabState {
    hits: Mutex<HashMap<String, u64>>,
    slow_seen: Mutex<HashSet<String>>,
}

/// A running lab.
pub struct Lab {
    pub addr: SocketAddr,
    state: Arc<LabState>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Lab {
    /// Binds `127.0.0.1:0` and serves in the background of the current runtime.
    pub async fn start() -> std::io::Result<Lab> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(LabState::default());
        let stop = CancellationToken::new();
        let app = router(state.clone());
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(Lab {
            addr,
            state,
            stop,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Requests seen for exactly `path` (without query).
    pub fn hits(&self, path: &str) -> u64 {
        self.state
            .hits
            .lock()
            .map(|h| h.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Requests seen in total.
    pub fn total_hits(&self) -> u64 {
        self.state
            .hits
            .lock()
            .map(|h| h.values().sum())
            .unwrap_or(0)
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn router(state: Arc<LabState>) -> Router {
    Router::new()
        .route("/ad/click", get(ad_click))
        .route("/track/redirect", get(track_redirect))
        .route(
            "/interstitial",
            get(|| async { meta_page("/landing/meta") }),
        )
        .route("/js-bounce", get(|| async { js_page("/landing/js") }))
        .route("/refresh-header", get(refresh_header))
        .route("/gate", get(|| async { Html(GATE_PAGE) }))
        .route("/gate/continue", axum::routing::post(gate_continue))
        .route("/s/{code}", get(short))
        .route("/t/{code}", get(short_meta))
        .route("/u/{code}", get(short_js))
        .route("/expired-campaign", get(|| async { found("/gone") }))
        .route("/gone", get(gone))
        .route("/loop/a", get(|| async { found("/loop/b") }))
        .route("/loop/b", get(|| async { found("/loop/a") }))
        .route("/chain/{n}", get(chain))
        .route("/slow/{ms}", get(slow))
        .route("/slow-once/{key}/{ms}", get(slow_once))
        .route("/landing/{*rest}", get(landing))
        .route("/", get(|| async { Html("<h1>Link Peeler lab</h1>") }))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(State(state): State<Arc<LabState>>, req: Request, next: Next) -> Response {
    if let Ok(mut h) = state.hits.lock() {
        *h.entry(req.uri().path().to_owned()).or_default() += 1;
    }
    next.run(req).await
}

fn redirect(status: StatusCode, to: &str) -> Response {
    (status, [(header::LOCATION, to.to_owned())]).into_response()
}

fn found(to: &str) -> Response {
    redirect(StatusCode::FOUND, to)
}

fn meta_page(to: &str) -> Response {
    Html(format!(
        "<!doctype html><html><head><meta http-equiv=\"refresh\" content=\"0; url={to}\"><title>One moment…</title></head><body>Redirecting…</body></html>"
    ))
    .into_response()
}

fn js_page(to: &str) -> Response {
    Html(format!(
        "<!doctype html><html><head><title>Loading</title></head><body><script>window.location.replace(\"{to}\");</script></body></html>"
    ))
    .into_response()
}

/// A link-protection page: nothing happens without running its scripts.
const GATE_PAGE: &str = "<!doctype html><html><head><title>Checking your browser…</title></head>\
<body onload=\"setTimeout(verify, 800)\"><p>Checking your browser…</p>\
<form method=post action=\"/gate/continue\"><input type=hidden name=token></form>\
<script>function verify() { var f = document.forms[0]; f.elements.token.value = atob('c3ByaW5nMjQ='); f.submit(); }</script>\
</body></html>";

async fn gate_continue(body: String) -> Response {
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| word(&v))
        .unwrap_or_default();
    redirect(
        StatusCode::SEE_OTHER,
        &format!("/landing/gated?token={token}"),
    )
}

async fn ad_click(Query(q): Query<HashMap<String, String>>) -> Response {
    let id = q.get("id").map(|s| digits(s)).unwrap_or_default();
    found(&format!("/track/redirect?c={id}"))
}

async fn track_redirect(Query(q): Query<HashMap<String, String>>) -> Response {
    let c = q.get("c").map(|s| digits(s)).unwrap_or_default();
    redirect(
        StatusCode::MOVED_PERMANENTLY,
        &format!("/landing/spring-sale?utm_source=demo&c={c}"),
    )
}

async fn refresh_header() -> Response {
    (
        [(header::REFRESH, "0; url=/landing/refresh")],
        Html("<p>Redirecting…</p>"),
    )
        .into_response()
}

async fn short(Path(code): Path<String>) -> Response {
    found(&format!("/t/{}", word(&code)))
}

async fn short_meta(Path(code): Path<String>) -> Response {
    meta_page(&format!("/u/{}", word(&code)))
}

async fn short_js(Path(code): Path<String>) -> Response {
    js_page(&format!("/landing/{}", word(&code)))
}

async fn gone() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<h1>This campaign has ended</h1>"),
    )
        .into_response()
}

async fn chain(Path(n): Path<u32>) -> Response {
    if n == 0 {
        Html("<h1>end of chain</h1>").into_response()
    } else {
        found(&format!("/chain/{}", n - 1))
    }
}

async fn slow(Path(ms): Path<u64>) -> Response {
    tokio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
    Html("<h1>slow page</h1>").into_response()
}

async fn slow_once(
    State(state): State<Arc<LabState>>,
    Path((key, ms)): Path<(String, u64)>,
) -> Response {
    let first = state
        .slow_seen
        .lock()
        .map(|mut s| s.insert(key))
        .unwrap_or(false);
    if first {
        tokio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
    }
    Html("<h1>slow-once page</h1>").into_response()
}

async fn landing(Path(rest): Path<String>) -> Response {
    Html(format!("<h1>Landing page: {}</h1>", word(&rest))).into_response()
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).take(12).collect()
}

fn word(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect()
}
