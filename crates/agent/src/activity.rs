//! What the runner is doing right now, published for whoever shows it (the
//! tray app).
//!
//! Why a `watch` channel and not events: a user interface wants the latest
//! state — online or retrying until when, how many links in flight, how many
//! delivered — never a backlog. A watch keeps exactly one value, costs
//! nothing when nobody subscribes (headless mode), and lets the runner
//! publish without knowing who is looking: the agent never depends on the
//! tray.

use std::time::SystemTime;

use tokio::sync::watch;

/// The runner's standing with its relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Started; no answer from the relay yet.
    Connecting,
    /// The last poll succeeded.
    Online,
    /// The relay failed or asked us to wait; the next try is at `retry_at`.
    Retrying { retry_at: SystemTime, error: String },
    /// The relay no longer accepts this device (revoked, unknown key).
    SignInRequired { reason: String },
}

/// A snapshot of one runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub connection: Connection,
    /// Resolutions running now.
    pub in_flight: usize,
    /// Results the relay accepted since this runner started.
    pub delivered: u64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            connection: Connection::Connecting,
            in_flight: 0,
            delivered: 0,
        }
    }
}

/// The runner's side of the channel; every update is a cheap in-place edit.
#[derive(Debug)]
pub(crate) struct Publisher(watch::Sender<Activity>);

impl Default for Publisher {
    fn default() -> Self {
        Publisher(watch::Sender::new(Activity::default()))
    }
}

impl Publisher {
    pub(crate) fn subscribe(&self) -> watch::Receiver<Activity> {
        self.0.subscribe()
    }

    pub(crate) fn connection(&self, c: Connection) {
        self.0.send_if_modified(|a| {
            let changed = a.connection != c;
            a.connection = c;
            changed
        });
    }

    pub(crate) fn task_started(&self) {
        self.0.send_modify(|a| a.in_flight += 1);
    }

    pub(crate) fn task_finished(&self, delivered: bool) {
        self.0.send_modify(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            a.delivered += u64::from(delivered);
        });
    }

    /// A parked result from an earlier run reached the relay.
    pub(crate) fn delivered_from_outbox(&self) {
        self.0.send_modify(|a| a.delivered += 1);
    }

    /// Workers were cut off at the end of a drain.
    pub(crate) fn none_in_flight(&self) {
        self.0
            .send_if_modified(|a| std::mem::replace(&mut a.in_flight, 0) != 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_tracks_in_flight_and_deliveries() {
        let p = Publisher::default();
        let rx = p.subscribe();
        p.task_started();
        p.task_started();
        p.task_finished(true);
        assert_eq!(rx.borrow().in_flight, 1);
        assert_eq!(rx.borrow().delivered, 1);
        p.delivered_from_outbox();
        p.none_in_flight();
        assert_eq!(
            *rx.borrow(),
            Activity {
                connection: Connection::Connecting,
                in_flight: 0,
                delivered: 2
            }
        );
        p.connection(Connection::Online);
        assert_eq!(rx.borrow().connection, Connection::Online);
    }
}
