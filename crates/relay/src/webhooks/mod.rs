//! Webhook deliveries: the relay's one kind of outbound request
//! (protocol.md §3.12).
//!
//! The queue is durable and lives in the store (`store/webhooks.rs`): a
//! delivery row is written in the transaction that finishes its job. This
//! module is the dispatcher, one task per relay, that turns due rows into
//! attempts:
//!
//! - it wakes when jobs finish (the store's finish watch), when an attempt
//!   ends, and when the earliest retry is due — never on a busy loop;
//! - it claims only what fits its caps (64 attempts in all, 4 per host and
//!   port), so one slow receiver cannot take every slot;
//! - every attempt goes through [`attempt::Sender`], behind the SSRF guard;
//! - outcomes and retry times ([`backoff`]) go back to the store. A relay
//!   that dies mid-attempt leaves the row leased, and it is tried again when
//!   the lease runs out: at least once, with the same delivery id.

pub mod attempt;
pub mod backoff;

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::store::{Attempt, DueDelivery, Slots, Store};
use attempt::{Sender, Verdict};
use link_peeler_wire::protocol::WebhookState;

/// Attempts in flight at once, in all.
pub const MAX_IN_FLIGHT: usize = 64;
/// Attempts in flight at once to one host and port.
pub const MAX_PER_TARGET: usize = 4;
/// One attempt's deadline, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Networks the guard lets deliveries reach although it refuses them by default.
    pub allow_networks: Vec<ipnet::IpNet>,
    pub attempt_timeout: Duration,
    /// The bound of the first retry's wait ([`backoff::BASE`]).
    pub retry_base: Duration,
    pub max_in_flight: usize,
    pub max_per_target: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_networks: Vec::new(),
            attempt_timeout: ATTEMPT_TIMEOUT,
            retry_base: backoff::BASE,
            max_in_flight: MAX_IN_FLIGHT,
            max_per_target: MAX_PER_TARGET,
        }
    }
}

/// Runs the dispatcher until `shutdown`. Attempts still in flight then are
/// dropped; their rows are tried again after their lease (at least once).
pub async fn run(store: Store, config: WebhookConfig, shutdown: CancellationToken) {
    let sender = match Sender::new(config.allow_networks.clone(), config.attempt_timeout) {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "webhook deliveries are off: cannot build the HTTP client");
            return;
        }
    };
    // An attempt holds its row for its own deadline plus a margin for recording it.
    let lease_ms = i64::try_from((config.attempt_timeout + Duration::from_secs(5)).as_millis())
        .unwrap_or(i64::MAX);
    let mut finishes = store.finishes();
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    let mut attempts: JoinSet<String> = JoinSet::new();
    loop {
        let free = config.max_in_flight.saturating_sub(attempts.len());
        let mut starved = false;
        if free > 0 {
            let slots = Slots {
                total: free,
                in_flight: in_flight.clone(),
                per_target: config.max_per_target,
            };
            match store.claim_deliveries(lease_ms, slots).await {
                Ok(due) => {
                    starved = due.len() == free;
                    for d in due {
                        *in_flight.entry(d.target.clone()).or_default() += 1;
                        attempts.spawn(deliver(
                            store.clone(),
                            sender.clone(),
                            d,
                            config.retry_base,
                        ));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim webhook deliveries"),
            }
        }
        let wait = if starved {
            // Every slot is busy: the next wake-up is an attempt ending.
            Duration::from_secs(1)
        } else {
            until_next_due(&store).await
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = finishes.changed() => {
                if changed.is_err() {
                    break; // the store closed
                }
            }
            Some(done) = attempts.join_next(), if !attempts.is_empty() => {
                if let Ok(target) = done
                    && let Some(n) = in_flight.get_mut(&target)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        in_flight.remove(&target);
                    }
                } else {
                    // A panicked attempt: recount from what is still running.
                    in_flight.clear();
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
    attempts.abort_all();
}

/// How long to sleep before the earliest pending delivery is due (at most a
/// minute, and a little at least, so a row held by a blocked target does
/// not spin the loop).
async fn until_next_due(store: &Store) -> Duration {
    match store.next_delivery_due().await {
        Ok(Some(at)) => {
            let ms = (at - store.now_ms()).clamp(20, 60_000);
            Duration::from_millis(u64::try_from(ms).unwrap_or(60_000))
        }
        Ok(None) => Duration::from_secs(60),
        Err(_) => Duration::from_secs(1),
    }
}

/// One attempt, recorded; returns its target (to free its slot).
async fn deliver(
    store: Store,
    sender: std::sync::Arc<Sender>,
    d: DueDelivery,
    retry_base: Duration,
) -> String {
    let verdict = match body(&store, &d).await {
        Ok(Some(body)) => sender.send(&d, body).await,
        Ok(None) => Verdict::Rejected {
            status: 0,
            error: "the job was deleted before it could be delivered".into(),
        },
        Err(e) => Verdict::Retry {
            status: None,
            error: format!("cannot read the job: {e}"),
            retry_after: None,
        },
    };
    let attempt = record(&d, verdict, store.now_ms(), retry_base);
    tracing::info!(
        delivery = %d.delivery_id,
        job = %d.job_id,
        attempt = d.attempt,
        state = attempt.state.as_str(),
        error = attempt.error.as_deref().unwrap_or(""),
        "webhook attempt"
    );
    if let Err(e) = store.record_attempt(attempt).await {
        tracing::warn!(delivery = %d.delivery_id, error = %e, "cannot record a webhook attempt; it will be retried");
    }
    d.target
}

/// The job as the webhook body: its JSON when it finished, without `webhook`.
async fn body(store: &Store, d: &DueDelivery) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
    let Some(mut job) = store.get_job(&d.api_key_id, &d.job_id).await? else {
        return Ok(None);
    };
    job.webhook = None;
    serde_json::to_vec(&job)
        .map(Some)
        .map_err(|e| crate::store::StoreError::Internal {
            context: "encoding a webhook body",
            detail: e.to_string(),
        })
}

/// The store's record of an attempt, with the retry time when it is retried.
fn record(d: &DueDelivery, verdict: Verdict, now: i64, retry_base: Duration) -> Attempt {
    let id = d.delivery_id.clone();
    match verdict {
        Verdict::Delivered(status) => Attempt {
            delivery_id: id,
            state: WebhookState::Delivered,
            status: Some(status),
            error: None,
            next_attempt_at: None,
        },
        Verdict::Rejected { status, error } => Attempt {
            delivery_id: id,
            state: WebhookState::Rejected,
            status: (status != 0).then_some(status),
            error: Some(error),
            next_attempt_at: None,
        },
        Verdict::Refused(error) => Attempt {
            delivery_id: id,
            state: WebhookState::Refused,
            status: None,
            error: Some(error),
            next_attempt_at: None,
        },
        Verdict::Retry {
            status,
            error,
            retry_after,
        } => {
            let next = backoff::next_attempt(
                d.first_attempt_at,
                d.attempt,
                now,
                retry_after,
                retry_base,
                rand::random::<f64>(),
            );
            Attempt {
                delivery_id: id,
                state: if next.is_some() {
                    WebhookState::Pending
                } else {
                    WebhookState::Failed
                },
                status,
                error: Some(error),
                next_attempt_at: next,
            }
        }
    }
}
