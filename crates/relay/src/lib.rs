//! The bundled relay: where external systems drop signed jobs and desktop
//! agents pick them up.
//!
//! "Minimal" in size, not in correctness: a 202 means the job is on disk
//! (SQLite WAL, `synchronous=FULL`, group commit; or committed in PostgreSQL,
//! which lets several relays share one queue), every signed request is
//! checked in protocol order with a constant-time MAC, nonces cannot be replayed
//! while their timestamp is acceptable, and a task is leased to one agent at
//! a time. The relay fetches nothing but webhook deliveries ([`webhooks`]),
//! through the same SSRF guard as the agent's resolver: resolving links is
//! the agent's job.
//!
//! Rooms: [`store`] (durable state, the single writer), `http` (routes and
//! authentication), `server` (the accept loop: connection deadlines, the
//! connection cap, load shedding), [`tls`], `throttle` (failed enrollments),
//! [`metrics`], [`admin`] (key and device management shared by the CLI, tests
//! and the demo), [`cli`] (the `link-peeler-relay` command line) and [`bench`].
//!
//! May depend on: `link-peeler-wire` only — never on the agent, the resolver
//! or any GUI library, so a server build needs no GTK (`cargo build -p
//! link-peeler-relay`; CI builds it with pkg-config finding nothing).

pub mod admin;
pub mod bench;
pub mod cli;
mod error;
mod http;
pub mod ids;
pub mod metrics;
mod server;
pub mod store;
mod throttle;
pub mod tls;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::Rejection;
use metrics::Metrics;
pub use store::Database;
use store::Store;
pub use tls::TlsFiles;

/// Default listen address of `serve` and `dev`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// Default seconds for a request head to arrive (from its first byte, or from accept).
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// Default seconds a kept-alive connection may sit idle between requests.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Default seconds for a whole request body to arrive.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 15;
/// Default cap on open connections (lowered to fit the open-file limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// Default failed enrollment attempts per client address per minute.
pub const DEFAULT_ENROLL_FAILURES_PER_IP: u32 = 10;
/// Default failed enrollment attempts per minute from all addresses together.
pub const DEFAULT_ENROLL_FAILURES_TOTAL: u32 = 120;
/// Connections the operations listener serves at once.
const OPS_MAX_CONNECTIONS: usize = 16;

/// How a relay is run.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The SQLite file or the PostgreSQL database (shown with its password redacted).
    pub db: Database,
    pub listen: SocketAddr,
    /// How long an agent holds a task before it is handed to someone else.
    pub lease_duration: Duration,
    /// Lease expiries after which a job fails with `agent_unavailable`.
    pub max_lease_expiries: u32,
    /// Finished jobs (and so their idempotency keys) are kept this long; at least 24 h.
    pub retention: Duration,
    /// How often expired leases are requeued and old nonces pruned.
    pub maintenance_interval: Duration,
    /// Where `/metrics` (and another `/healthz`) are served, never on `listen`.
    /// `None`: nowhere. The default here is an ephemeral loopback port
    /// ([`RunningRelay::ops_addr`]); the command line's default is off.
    pub ops_listen: Option<SocketAddr>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// A request head must arrive within this, counted from its first byte
    /// (from accept, for a connection's first request).
    pub header_timeout: Duration,
    /// A kept-alive connection is closed after this long without a request.
    /// Requests being handled (long-polls included) are never cut by it.
    pub idle_timeout: Duration,
    /// The whole request body must arrive within this (`408 request_timeout`).
    pub body_timeout: Duration,
    /// Open connections at most; lowered to the open-file limit minus a reserve.
    /// Over it, new connections are answered `503 overloaded` and closed.
    pub max_connections: usize,
    /// Failed enrollment attempts per client address per `enroll_window`.
    pub enroll_failures_per_ip: u32,
    /// Failed enrollment attempts from all addresses per `enroll_window`.
    pub enroll_failures_total: u32,
    /// The window of the two enrollment limits (one minute).
    pub enroll_window: Duration,
    /// Networks webhook deliveries may reach although the guard refuses them
    /// by default (`serve --webhook-allow-network`).
    pub webhook_allow_networks: Vec<ipnet::IpNet>,
    /// One webhook attempt's deadline, connecting included.
    pub webhook_timeout: Duration,
    /// The bound of a webhook's first retry wait (5 s; tests shorten it).
    pub webhook_retry_base: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            db: Database::Sqlite(PathBuf::from("link-peeler-relay.db")),
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            lease_duration: Duration::from_secs(120),
            max_lease_expiries: 3,
            retention: Duration::from_secs(30 * 24 * 3600),
            maintenance_interval: Duration::from_secs(1),
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            tls: None,
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            body_timeout: Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            enroll_failures_per_ip: DEFAULT_ENROLL_FAILURES_PER_IP,
            enroll_failures_total: DEFAULT_ENROLL_FAILURES_TOTAL,
            enroll_window: Duration::from_secs(60),
            webhook_allow_networks: Vec::new(),
            webhook_timeout: webhooks::ATTEMPT_TIMEOUT,
            webhook_retry_base: webhooks::backoff::BASE,
        }
    }
}

/// A relay serving in the background of the current tokio runtime.
pub struct RunningRelay {
    pub addr: SocketAddr,
    /// The operations listener (`/metrics`), when there is one.
    pub ops_addr: Option<SocketAddr>,
    /// The connection cap in force (the configured one, lowered to fit the open-file limit).
    pub max_connections: usize,
    https: bool,
    store: Store,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    ops: Option<JoinHandle<std::io::Result<()>>>,
    maintenance: JoinHandle<()>,
    webhooks: JoinHandle<()>,
}

impl RunningRelay {
    /// Base URL, e.g. `http://127.0.0.1:8787` (`https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Base URL of the operations listener, e.g. `http://127.0.0.1:9797`.
    pub fn ops_url(&self) -> Option<String> {
        self.ops_addr.map(|a| format!("http://{a}"))
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
        let ops_served = match self.ops {
            Some(ops) => ops.await,
            None => Ok(Ok(())),
        };
        self.maintenance.abort();
        let _ = self.webhooks.await;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.close()).await?;
        served??;
        ops_served??;
        Ok(())
    }
}

/// Opens the database, binds the listeners and starts serving.
pub async fn serve(config: RelayConfig) -> anyhow::Result<RunningRelay> {
    check(&config)?;
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let open_file_limit = server::limits::raise_open_file_limit();
    let store = Store::connect(&config.db, Arc::new(store::SystemClock)).await?;
    let listener = bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let ops_listener = match config.ops_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let ops_addr = ops_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let (max_connections, shed_slots) = budget(&config, open_file_limit, ops_addr.is_some());
    let shutdown = CancellationToken::new();
    let state = app_state(&config, store.clone(), shutdown.clone());
    let main = server::Ctx {
        tls: tls.clone(),
        max_connections,
        shed_slots,
        counted: true,
        ..listener_ctx(&config, http::router(state.clone()), &state)
    };
    let server = tokio::spawn(server::run(listener, main));
    let ops = ops_listener.map(|l| {
        let ops = listener_ctx(&config, http::ops_router(state.clone()), &state);
        tokio::spawn(server::run(l, ops))
    });
    let maintenance = tokio::spawn(maintain(store.clone(), config.clone(), shutdown.clone()));
    let webhooks = tokio::spawn(webhooks::run(
        store.clone(),
        webhooks::WebhookConfig {
            allow_networks: config.webhook_allow_networks.clone(),
            attempt_timeout: config.webhook_timeout,
            retry_base: config.webhook_retry_base,
            ..webhooks::WebhookConfig::default()
        },
        shutdown.clone(),
    ));
    let https = tls.is_some();
    let db = &config.db;
    tracing::info!(%addr, https, ops = ?ops_addr, max_connections, %db, "relay listening");
    if !https && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "{PLAIN_HTTP_WARNING}");
    }
    Ok(RunningRelay {
        addr,
        ops_addr,
        max_connections,
        https,
        store,
        shutdown,
        server,
        ops,
        maintenance,
        webhooks,
    })
}

/// The main listener's connection cap and shed slots under the open-file limit.
fn budget(config: &RelayConfig, open_file_limit: Option<u64>, ops: bool) -> (usize, usize) {
    let (max_connections, shed_slots) = server::limits::connection_budget(
        config.max_connections,
        open_file_limit,
        server::limits::open_descriptors(),
        if ops { OPS_MAX_CONNECTIONS } else { 0 },
    );
    if max_connections < config.max_connections {
        tracing::warn!(
            wanted = config.max_connections,
            max_connections,
            open_file_limit,
            "connection cap lowered to fit the open-file limit"
        );
    }
    (max_connections, shed_slots)
}

fn app_state(config: &RelayConfig, store: Store, shutdown: CancellationToken) -> http::AppState {
    http::AppState {
        store,
        metrics: Metrics::new(),
        lease: config.lease_duration,
        shutdown,
        body_timeout: config.body_timeout,
        enroll_throttle: Arc::new(throttle::Throttle::new(
            config.enroll_failures_per_ip,
            config.enroll_failures_total,
            config.enroll_window,
        )),
    }
}

/// A listener's settings: the operations listener's as they are (no TLS, a
/// small cap, nothing shed, not counted); the main one overrides them.
fn listener_ctx(config: &RelayConfig, router: axum::Router, state: &http::AppState) -> server::Ctx {
    server::Ctx {
        router,
        tls: None,
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: OPS_MAX_CONNECTIONS,
        shed_slots: 0,
        shutdown: state.shutdown.clone(),
        metrics: state.metrics.clone(),
        counted: false,
    }
}

/// Said at start when plain HTTP is served on a non-loopback address.
pub const PLAIN_HTTP_WARNING: &str = "plain HTTP on a non-loopback address: enrollment answers carry \
     device secrets and every request reveals job contents to the network; serve TLS \
     (--tls-cert/--tls-key) or put a TLS-terminating proxy in front";

fn check(config: &RelayConfig) -> anyhow::Result<()> {
    if config.retention < Duration::from_secs(24 * 3600) {
        anyhow::bail!("retention must be at least 24 h (idempotency keys are kept that long)");
    }
    if config.lease_duration.is_zero() {
        anyhow::bail!("the lease duration must be positive");
    }
    for (name, d) in [
        ("header timeout", config.header_timeout),
        ("idle timeout", config.idle_timeout),
        ("body timeout", config.body_timeout),
        ("enrollment window", config.enroll_window),
    ] {
        if d.is_zero() {
            anyhow::bail!("the {name} must be positive");
        }
    }
    if config.max_connections == 0 {
        anyhow::bail!("max connections must be at least 1");
    }
    if config
        .ops_listen
        .is_some_and(|a| a == config.listen && a.port() != 0)
    {
        anyhow::bail!("--ops-listen must differ from --listen: /metrics is not for the public");
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
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
