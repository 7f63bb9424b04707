//! The bundled relay: where external systems drop signed jobs and desktop
//! agents pick them up.
//!
//! "Minimal" in size, not in correctness: a 202 means the job is on disk
//! (SQLite WAL, `synchronous=FULL`, group commit), every signed request is
//! checked in protocol order with a constant-time MAC, nonces cannot be replayed
//! while their timestamp is acceptable, and a task is leased to one agent at
//! a time. The relay never fetches a URL: resolving is the agent's job.
//!
//! Rooms: [`store`] (durable state, the single writer), `http` (routes and
//! authentication), [`metrics`], [`admin`] (key and device management shared by
//! the CLI, tests and the demo), [`cli`] (the `link-peeler-relay` command line)
//! and [`bench`].

pub mod admin;
pub mod bench;
pub mod cli;
mod error;
mod http;
pub mod ids;
pub mod metrics;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::Rejection;
use metrics::Metrics;
use store::Store;

/// Default listen address of `serve` and `dev`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// How a relay is run.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub db_path: PathBuf,
    pub listen: SocketAddr,
    /// How long an agent holds a task before it is handed to someone else.
    pub lease_duration: Duration,
    /// Lease expiries after which a job fails with `agent_unavailable`.
    pub max_lease_expiries: u32,
    /// Finished jobs (and so their idempotency keys) are kept this long; at least 24 h.
    pub retention: Duration,
    /// How often expired leases are requeued and old nonces pruned.
    pub maintenance_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            db_path: PathBuf::from("link-peeler-relay.db"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            lease_duration: Duration::from_secs(120),
            max_lease_expiries: 3,
            retention: Duration::from_secs(30 * 24 * 3600),
            maintenance_interval: Duration::from_secs(1),
        }
    }
}

/// A relay serving in the background of the current tokio runtime.
pub struct RunningRelay {
    pub addr: SocketAddr,
    store: Store,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    maintenance: JoinHandle<()>,
}

impl RunningRelay {
    /// Base URL, e.g. `http://127.0.0.1:8787`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The relay's store (tests and the benchmark read its counters).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A token that, once cancelled, starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting connections, lets in-flight requests finish (held
    /// long-polls answer at once), flushes the writer and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the relay has stopped (after its shutdown token is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        let served = self.server.await;
        self.maintenance.abort();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.close()).await?;
        served??;
        Ok(())
    }
}

/// Opens the database, binds the listener and starts serving.
pub async fn serve(config: RelayConfig) -> anyhow::Result<RunningRelay> {
    if config.retention < Duration::from_secs(24 * 3600) {
        anyhow::bail!("retention must be at least 24 h (idempotency keys are kept that long)");
    }
    if config.lease_duration.is_zero() {
        anyhow::bail!("the lease duration must be positive");
    }
    let db = config.db_path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&db)).await??;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let state = http::AppState {
        store: store.clone(),
        metrics: Metrics::new(),
        lease: config.lease_duration,
        shutdown: shutdown.clone(),
    };
    let app = http::router(state);
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    let maintenance = tokio::spawn(maintain(store.clone(), config.clone(), shutdown.clone()));
    tracing::info!(%addr, db = %config.db_path.display(), "relay listening");
    Ok(RunningRelay {
        addr,
        store,
        shutdown,
        server,
        maintenance,
    })
}

async fn maintain(store: Store, config: RelayConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(config.maintenance_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention_ms = config.retention.as_millis() as i64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match store
            .maintain(config.max_lease_expiries, retention_ms)
            .await
        {
            Ok(r) if r.requeued + r.failed > 0 => {
                tracing::info!(
                    requeued = r.requeued,
                    failed = r.failed,
                    "expired leases handled"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "maintenance pass failed"),
        }
    }
}
