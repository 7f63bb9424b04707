//! Prometheus metrics for `GET /metrics` (on the operations listener), via the `prometheus-client` crate.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use link_peeler_wire::protocol::ErrorCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// All relay metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub requests: Family<RouteStatus, Counter>,
    pub signature_failures: Family<CodeLabel, Counter>,
    pub poll_waiters: Gauge,
    pub jobs: Family<StateLabel, Gauge>,
    pub webhook_deliveries: Family<StateLabel, Gauge>,
    pub writer_commits: Gauge,
    pub writer_ops: Gauge,
    pub connections: Gauge,
    pub connections_dropped: Family<ReasonLabel, Counter>,
    pub enroll_rate_limited: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("relay");
        let requests = Family::<RouteStatus, Counter>::default();
        let signature_failures = Family::<CodeLabel, Counter>::default();
        let poll_waiters = Gauge::default();
        let jobs = Family::<StateLabel, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template and status",
            requests.clone(),
        );
        registry.register(
            "signature_failures",
            "Signed requests refused, by error code",
            signature_failures.clone(),
        );
        registry.register(
            "poll_waiters",
            "Agent long-polls currently held open",
            poll_waiters.clone(),
        );
        registry.register("jobs", "Jobs in the store by state", jobs.clone());
        let webhook_deliveries = Family::<StateLabel, Gauge>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries in the store by state",
            webhook_deliveries.clone(),
        );
        let writer_commits = Gauge::default();
        let writer_ops = Gauge::default();
        registry.register(
            "writer_commits",
            "Transactions committed by the writer (each one fsync)",
            writer_commits.clone(),
        );
        registry.register(
            "writer_ops",
            "Write operations committed; ops / commits is the group-commit batch size",
            writer_ops.clone(),
        );
        let connections = Gauge::default();
        let connections_dropped = Family::<ReasonLabel, Counter>::default();
        let enroll_rate_limited = Counter::default();
        registry.register(
            "connections",
            "Connections open on the main listener",
            connections.clone(),
        );
        registry.register(
            "connections_dropped",
            "Connections the relay closed itself: header_timeout, idle_timeout, overloaded",
            connections_dropped.clone(),
        );
        registry.register(
            "enroll_rate_limited",
            "Enrollment attempts refused with 429 rate_limited",
            enroll_rate_limited.clone(),
        );
        for reason in ["header_timeout", "idle_timeout", "overloaded"] {
            let _ = connections_dropped.get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            });
        }
        // Every 401 code exists from the start, so a rate over it is defined before the first failure.
        for code in [
            ErrorCode::MissingHeader,
            ErrorCode::InvalidTimestamp,
            ErrorCode::StaleTimestamp,
            ErrorCode::InvalidNonce,
            ErrorCode::ReplayedNonce,
            ErrorCode::UnknownKey,
            ErrorCode::RevokedKey,
            ErrorCode::BadSignature,
        ] {
            let _ = signature_failures.get_or_create(&CodeLabel {
                code: code.as_str().to_owned(),
            });
        }
        Metrics {
            registry: Arc::new(registry),
            requests,
            signature_failures,
            poll_waiters,
            jobs,
            webhook_deliveries,
            writer_commits,
            writer_ops,
            connections,
            connections_dropped,
            enroll_rate_limited,
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts one held-open poll until the returned guard drops.
    pub fn waiter(&self) -> WaiterGuard {
        self.poll_waiters.inc();
        WaiterGuard(self.poll_waiters.clone())
    }

    /// Counts one open connection until the returned guard drops.
    pub fn connection(&self) -> WaiterGuard {
        self.connections.inc();
        WaiterGuard(self.connections.clone())
    }

    /// Counts a connection the relay closed itself, by reason.
    pub fn dropped(&self, reason: &str) {
        self.connections_dropped
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// Decrements its gauge when dropped.
pub struct WaiterGuard(Gauge);

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
