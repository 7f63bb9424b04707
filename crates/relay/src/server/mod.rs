//! The relay's accept loop: one tokio task per connection, each an HTTP/1.1
//! connection with deadlines ([`conn`]), under a cap on open connections.
//!
//! - At the cap a new connection is still accepted and answered
//!   `503 overloaded` with `Retry-After` (plain HTTP; over TLS it is closed at
//!   once, since a handshake is the expensive part), so an overloaded relay
//!   sheds load with an answer instead of going deaf. Answers being shed are
//!   themselves bounded; past that, extra connections are closed at once.
//! - `accept` failing for lack of file descriptors (EMFILE/ENFILE) or memory
//!   never ends the loop: it logs (at most once a second), pauses 100 ms and
//!   goes on, so connections freed meanwhile make room again.
//! - On shutdown it stops accepting, asks every connection to finish its
//!   in-flight request (held long-polls answer at once) and waits for them.

pub mod conn;
pub mod limits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use conn::{ConnState, Expiry};

/// How long a connection being shed may take to send its request head.
const SHED_PATIENCE: Duration = Duration::from_secs(2);
/// Pause after `accept` failed for lack of resources.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What one listener serves, and how.
pub struct Ctx {
    pub router: Router,
    pub tls: Option<TlsAcceptor>,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shed_slots: usize,
    pub shutdown: CancellationToken,
    pub metrics: Metrics,
    /// Whether this listener's connections are counted in the metrics (the main one).
    pub counted: bool,
}

/// Accepts connections until shutdown, then waits for the open ones to finish.
pub async fn run(listener: TcpListener, ctx: Ctx) -> std::io::Result<()> {
    let ctx = Arc::new(ctx);
    let open = Arc::new(Semaphore::new(ctx.max_connections));
    let shedding = Arc::new(Semaphore::new(ctx.shed_slots));
    let mut last_complaint: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = ctx.shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                accept_failed(&e, &mut last_complaint).await;
                continue;
            }
        };
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(handle(stream, peer, ctx.clone(), permit));
            }
            Err(_) => shed(stream, peer, &ctx, &shedding),
        }
    }
    drop(listener);
    // Every connection holds a permit until it ends: all permits back means all done.
    let all = u32::try_from(ctx.max_connections).unwrap_or(u32::MAX);
    let _ = open.acquire_many(all).await;
    let _ = shedding
        .acquire_many(u32::try_from(ctx.shed_slots).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// Logs an `accept` failure and, unless it concerned only that one
/// connection, pauses before the next try.
async fn accept_failed(e: &std::io::Error, last_complaint: &mut Option<Instant>) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) {
        tracing::debug!(error = %e, "accept: connection gone before it was accepted");
        return;
    }
    let now = Instant::now();
    if last_complaint.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
        *last_complaint = Some(now);
        tracing::warn!(
            error = %e,
            "accept failed (out of file descriptors or memory?); pausing 100 ms and carrying on"
        );
    }
    tokio::time::sleep(ACCEPT_PAUSE).await;
}

/// Over the cap: answer `503 overloaded` while shed slots last, else close at once.
fn shed(stream: TcpStream, peer: SocketAddr, ctx: &Arc<Ctx>, shedding: &Arc<Semaphore>) {
    if ctx.counted {
        ctx.metrics.dropped("overloaded");
    }
    tracing::debug!(%peer, "at the connection limit: shedding");
    if ctx.tls.is_some() {
        return;
    }
    let Ok(permit) = shedding.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        conn::shed(stream, SHED_PATIENCE).await;
        drop(permit);
    });
}

async fn handle(stream: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>, permit: OwnedSemaphorePermit) {
    let _open = ctx.counted.then(|| ctx.metrics.connection());
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState::new(Instant::now()));
    let expired = match &ctx.tls {
        None => conn::serve(stream, peer, state, &ctx).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(ctx.header_timeout, acceptor.accept(stream));
            let tls = tokio::select! {
                tls = handshake => tls,
                _ = ctx.shutdown.cancelled() => return,
            };
            match tls {
                Ok(Ok(tls)) => conn::serve(tls, peer, state, &ctx).await,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => Some(Expiry::Header),
            }
        }
    };
    if let Some(why) = expired
        && ctx.counted
    {
        ctx.metrics.dropped(why.as_str());
    }
    drop(permit);
}
