//! The agent's control room at run time: the effective policy, the sensor
//! readings, the quota ledger and the user's pause, brought together in one
//! [`Controller`] that the runner asks before each poll and that a user
//! interface (the tray) drives and watches.
//!
//! API for a user interface: [`Controller::pause_for`],
//! [`Controller::pause_until_tomorrow`], [`Controller::pause_until_resumed`],
//! [`Controller::resume`], [`Controller::effective_policy`] and
//! [`Controller::watch`] (a `watch` channel of [`ControlState`]: the latest
//! decision, sensors and quota left, never a backlog).
//!
//! What survives a restart — the quota counts and the user's pause — is kept
//! in `<data dir>/control.json` (written atomically, private to the user).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use link_peeler_wire::protocol::{AgentReport, QuotaLeft};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use url::Url;

use super::decide::{self, Decision, Inputs, Periods, Reason, Sensors, UserPause};
use super::keys::Policy;
use super::quota::{Counts, Exhausted, Ledger, Left, Reservation};

/// Name of the controller's file inside the data dir.
pub const CONTROL_FILE: &str = "control.json";

/// What the controller keeps across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Saved {
    pub quota: Counts,
    /// The user's pause; `None`: not paused by the user.
    pub user_pause: Option<SavedPause>,
}

/// The user's pause as saved: `"untilResumed"` or `{"until": <unix ms>}`.
/// (Not `Option<Option<i64>>`: JSON writes `Some(None)` as `null`, which
/// reads back as `None` — "until I resume" would not survive a restart.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SavedPause {
    UntilResumed,
    Until(i64),
}

impl Saved {
    fn user(&self) -> UserPause {
        match self.user_pause {
            None => UserPause::None,
            Some(SavedPause::UntilResumed) => UserPause::UntilResumed,
            Some(SavedPause::Until(ms)) => match Timestamp::from_millisecond(ms) {
                Ok(t) => UserPause::Until(t),
                Err(_) => UserPause::UntilResumed,
            },
        }
    }

    fn set_user(&mut self, u: UserPause) {
        self.user_pause = match u {
            UserPause::None => None,
            UserPause::UntilResumed => Some(SavedPause::UntilResumed),
            UserPause::Until(t) => Some(SavedPause::Until(t.as_millisecond())),
        };
    }
}

/// The controller file of a data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(CONTROL_FILE)
}

/// Reads the saved state; a missing file is the default, a broken one an error.
pub fn load(data_dir: &Path) -> std::io::Result<Saved> {
    match std::fs::read(path(data_dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(e),
    }
}

/// What a user interface shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlState {
    pub decision: Decision,
    pub sensors: Sensors,
    pub quota_left: Left,
}

/// The clock: the system's, or a fixed one in tests.
#[derive(Debug, Clone)]
pub enum Clock {
    /// Now, in the computer's time zone.
    System,
    /// Always this instant (tests).
    Fixed(Zoned),
}

impl Clock {
    pub fn now(&self) -> Zoned {
        match self {
            Clock::System => Zoned::now().with_time_zone(TimeZone::system()),
            Clock::Fixed(z) => z.clone(),
        }
    }
}

struct Inner {
    saved: Saved,
}

/// The policy, sensors, quotas and user pause of one running agent.
pub struct Controller {
    policy: Policy,
    clock: Clock,
    ledger: Ledger,
    inner: Mutex<Inner>,
    sensors: watch::Receiver<Sensors>,
    state: watch::Sender<ControlState>,
    data_dir: Option<PathBuf>,
    /// Held while the file is written, the counts read inside it: the last
    /// write always holds the latest counts.
    saving: Mutex<()>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller for `policy`, starting from `saved`, reading `sensors`
    /// (a receiver that never changes reads "unknown" for ever), saving to
    /// `data_dir` when given.
    pub fn new(
        policy: Policy,
        saved: Saved,
        sensors: watch::Receiver<Sensors>,
        clock: Clock,
        data_dir: Option<PathBuf>,
    ) -> Arc<Controller> {
        let ledger = Ledger::new(saved.quota);
        let c = Controller {
            state: watch::Sender::new(ControlState {
                decision: Decision::Active,
                sensors: Sensors::default(),
                quota_left: Left::default(),
            }),
            policy,
            clock,
            ledger,
            inner: Mutex::new(Inner { saved }),
            sensors,
            data_dir,
            saving: Mutex::new(()),
        };
        c.decide_now();
        Arc::new(c)
    }

    /// Loads `<data_dir>/control.json` (an unreadable file is logged and
    /// replaced: losing a count is better than an agent that cannot start).
    pub fn open(
        policy: Policy,
        sensors: watch::Receiver<Sensors>,
        data_dir: &Path,
    ) -> Arc<Controller> {
        let saved = load(data_dir).unwrap_or_else(|e| {
            tracing::warn!(error = %e, file = %path(data_dir).display(), "control file unreadable; starting with empty quota counts");
            Saved::default()
        });
        Controller::new(
            policy,
            saved,
            sensors,
            Clock::System,
            Some(data_dir.to_path_buf()),
        )
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Now, by this controller's clock (local time).
    pub fn now(&self) -> Zoned {
        self.clock.now()
    }

    /// The policy in force, each value with its source.
    pub fn effective_policy(&self) -> &Policy {
        &self.policy
    }

    /// The latest state, for a user interface.
    pub fn watch(&self) -> watch::Receiver<ControlState> {
        self.state.subscribe()
    }

    /// Writes the counts and the pause (blocking: fsync).
    fn save(&self) {
        let Some(dir) = &self.data_dir else { return };
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let mut saved = self.inner().saved.clone();
        saved.quota = self.ledger.counts();
        let write = serde_json::to_vec_pretty(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::files::write_atomic(&path(dir), &bytes));
        if let Err(e) = write {
            tracing::warn!(error = %e, file = %path(dir).display(), "cannot save the quota counts and pause");
        }
    }

    fn set_user(&self, u: UserPause) {
        self.inner().saved.set_user(u);
        self.save();
        self.decide_now();
    }

    /// Pauses for `d` (the tray's "1 hour").
    pub fn pause_for(&self, d: Duration) {
        self.set_user(UserPause::for_duration(self.clock.now().timestamp(), d));
    }

    /// Pauses until the start of tomorrow, local time.
    pub fn pause_until_tomorrow(&self) {
        self.set_user(UserPause::until_tomorrow(&self.clock.now()));
    }

    /// Pauses until [`Controller::resume`].
    pub fn pause_until_resumed(&self) {
        self.set_user(UserPause::UntilResumed);
    }

    /// Ends the user's pause (automatic pauses still apply).
    pub fn resume(&self) {
        self.set_user(UserPause::None);
    }

    /// Decides now, publishes the result and returns it. Besides
    /// [`decide::decide`], a byte quota too close to its cap for one more
    /// page (and nothing in flight to wait for) counts as reached.
    pub fn decide_now(&self) -> Decision {
        let now = self.clock.now();
        let sensors = *self.sensors.borrow();
        let usage = self.ledger.usage(&now);
        let user = self.inner().saved.user();
        let mut decision = decide::decide(&Inputs {
            now: &now,
            policy: &self.policy,
            sensors,
            usage,
            user,
        });
        if let Err(Exhausted(q)) = self.ledger.check(&now, &self.policy)
            && let Ok(p) = Periods::of(&now)
        {
            let reason = Reason::QuotaReached {
                quota: q,
                until: p.reset(q),
            };
            match &mut decision {
                Decision::Active => decision = Decision::Paused(vec![reason]),
                Decision::Paused(rs) if !rs.contains(&reason) => rs.push(reason),
                Decision::Paused(_) => {}
            }
        }
        let state = ControlState {
            decision: decision.clone(),
            sensors,
            quota_left: Left::of(&self.policy, &usage),
        };
        self.state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
        decision
    }

    /// Waits until the decision may have changed: the published decision is
    /// no longer `d` (the user paused or resumed, a task finished and
    /// changed a quota), a sensor changed, or the earliest instant
    /// at which `d` ends by the clock (capped at a minute, so a clock
    /// change or a suspend is noticed).
    pub async fn changed(&self, d: &Decision) {
        let wait = d
            .recheck_at()
            .and_then(|t| {
                let now = self.clock.now().timestamp();
                Duration::try_from(t.duration_since(now)).ok()
            })
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60))
            .max(Duration::from_millis(10));
        let mut sensors = self.sensors.clone();
        // No sensor source (or none any more): only the other two wake us.
        let alive = sensors.has_changed().is_ok();
        // Wake on readings other than those the last decision used. (Not
        // `changed()`: a cloned receiver starts from the version the
        // original has seen, and the original only borrows, so after the
        // first reading `changed()` would return at once, every time.)
        let used = self.state.borrow().sensors;
        let mut state = self.state.subscribe();
        tokio::select! {
            // A value comparison, not a notification: a change published
            // before this wait began is seen too (no lost wake-up).
            _ = state.wait_for(|s| s.decision != *d) => {}
            _ = sensors.wait_for(|s| *s != used), if alive => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    /// Returns once the agent should take no more work: the published
    /// decision turns to paused (the user, a finished task's quota), or a
    /// sensor reading arrives that makes it paused (a metered network
    /// joined during a held poll, the first reading after start-up). For
    /// the runner's held poll, which it then drops.
    pub async fn until_paused(&self) {
        let mut state = self.state.subscribe();
        let mut sensors = self.sensors.clone();
        loop {
            let used = self.state.borrow().sensors;
            if *self.sensors.borrow() != used && !self.decide_now().is_active() {
                return;
            }
            let alive = sensors.has_changed().is_ok();
            let gone = tokio::select! {
                _ = state.wait_for(|s| !s.decision.is_active()) => return,
                r = sensors.wait_for(|s| *s != used), if alive => r.is_err(),
            };
            if gone {
                // No sensor source any more: only the published decision counts.
                let _ = state.wait_for(|s| !s.decision.is_active()).await;
                return;
            }
        }
    }

    /// The state report sent with each poll (protocol.md §4.2).
    pub fn report(&self) -> AgentReport {
        let s = self.state.borrow().clone();
        let (state, reasons) = match &s.decision {
            Decision::Active => ("active", vec![]),
            Decision::Paused(rs) => (
                "paused",
                rs.iter()
                    .map(|r| r.name().to_owned())
                    .take(link_peeler_wire::protocol::MAX_REPORT_REASONS)
                    .collect(),
            ),
        };
        let q = s.quota_left;
        AgentReport {
            state: state.to_owned(),
            reasons,
            quota_left: Some(QuotaLeft {
                links_this_hour: q.links_this_hour,
                links_today: q.links_today,
                bytes_today: q.bytes_today,
                bytes_this_month: q.bytes_this_month,
            }),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        }
    }

    /// How many of `want` tasks the quotas have room for now.
    pub fn room(&self, want: u32) -> u32 {
        self.ledger.room(&self.clock.now(), &self.policy, want)
    }

    /// Takes one task's reservation, or says which quota has no room.
    pub fn reserve(self: &Arc<Self>) -> Result<Task, Exhausted> {
        let r = self.ledger.reserve(&self.clock.now(), &self.policy)?;
        Ok(Task {
            controller: self.clone(),
            reservation: Mutex::new(Some(r)),
        })
    }

    /// Why a request to `url` is refused by the destination rules, if it is.
    pub fn refuse_destination(&self, url: &Url) -> Option<String> {
        let host = url.host_str()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if self.policy.deny_domains.value.matches(host) {
            return Some(format!(
                "{host} is on this computer's deny list (deny_domains, {})",
                self.policy.deny_domains.source
            ));
        }
        if !self.policy.destination_allowed(host) {
            return Some(format!(
                "{host} is not on this computer's allow list (allow_domains, {})",
                self.policy.allow_domains.source
            ));
        }
        None
    }
}

/// One taken task: its quota reservation and its watcher for the resolver
/// (destination rules and byte metering on every hop).
#[derive(Debug)]
pub struct Task {
    controller: Arc<Controller>,
    reservation: Mutex<Option<Reservation>>,
}

impl Task {
    /// The task is over: its bytes and (when `counted`) its link are counted and saved.
    pub fn finish(&self, counted: bool) {
        let taken = self
            .reservation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(r) = taken {
            r.settle(&self.controller.clock.now(), counted);
            self.controller.save();
            self.controller.decide_now();
        }
    }

    /// The controller that reserved this task.
    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// Bytes this task has downloaded so far.
    pub fn bytes(&self) -> u64 {
        self.reservation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |r| r.meter().load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl link_peeler_resolver::meter::Watch for Task {
    fn before_hop(&self, url: &Url) -> Result<(), String> {
        if let Some(why) = self.controller.refuse_destination(url) {
            return Err(why);
        }
        let now = self.controller.clock.now();
        let mut guard = self.reservation.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(r) => r.before_hop(&now).map_err(|Exhausted(q)| {
                format!(
                    "the next hop could exceed this computer's {} quota ({})",
                    q.key(),
                    q.cap(&self.controller.policy)
                )
            }),
            None => Ok(()),
        }
    }

    fn downloaded(&self, bytes: u64) {
        if let Some(r) = self
            .reservation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            r.meter()
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::decide::Quota;
    use crate::control::keys::Layer;

    fn at(utc: &str) -> Zoned {
        utc.parse::<Timestamp>()
            .unwrap()
            .to_zoned(TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap())
    }

    fn controller(policy: Policy, dir: &Path, now: &str) -> Arc<Controller> {
        let (_tx, sensors) = watch::channel(Sensors::default());
        Controller::new(
            policy,
            load(dir).unwrap(),
            sensors,
            Clock::Fixed(at(now)),
            Some(dir.to_path_buf()),
        )
    }

    #[test]
    fn the_users_pause_is_published_saved_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(Policy::default(), dir.path(), "2026-06-01T10:00:00Z");
        let rx = c.watch();
        assert_eq!(rx.borrow().decision, Decision::Active);
        c.pause_for(Duration::from_secs(3600));
        let until: Timestamp = "2026-06-01T11:00:00Z".parse().unwrap();
        assert_eq!(
            rx.borrow().decision,
            Decision::Paused(vec![Reason::User { until: Some(until) }])
        );
        // A restart within the hour is still paused; one after it is not.
        let again = controller(Policy::default(), dir.path(), "2026-06-01T10:30:00Z");
        assert!(!again.decide_now().is_active());
        let later = controller(Policy::default(), dir.path(), "2026-06-01T11:00:00Z");
        assert!(later.decide_now().is_active());
        c.pause_until_tomorrow();
        assert_eq!(
            c.decide_now(),
            Decision::Paused(vec![Reason::User {
                until: Some("2026-06-01T22:00:00Z".parse().unwrap())
            }])
        );
        c.pause_until_resumed();
        assert_eq!(
            c.decide_now(),
            Decision::Paused(vec![Reason::User { until: None }])
        );
        // "Until I resume" survives a restart, however much later.
        let restarted = controller(Policy::default(), dir.path(), "2027-01-01T00:00:00Z");
        assert_eq!(
            restarted.decide_now(),
            Decision::Paused(vec![Reason::User { until: None }])
        );
        c.resume();
        let restarted = controller(Policy::default(), dir.path(), "2026-06-01T10:00:00Z");
        assert!(restarted.decide_now().is_active());
        assert!(c.decide_now().is_active());
        crate::files::assert_private_file(&path(dir.path()));
    }

    #[test]
    fn quota_counts_are_saved_and_a_full_quota_pauses() {
        let dir = tempfile::tempdir().unwrap();
        let policy = Policy::merge(
            &Layer {
                max_links_per_hour: Some(2),
                ..Default::default()
            },
            &Layer::default(),
            &Layer::default(),
        );
        let c = controller(policy.clone(), dir.path(), "2026-06-01T10:00:00Z");
        assert_eq!(c.room(8), 2);
        for _ in 0..2 {
            let t = c.reserve().unwrap();
            link_peeler_resolver::meter::Watch::downloaded(&t, 100);
            t.finish(true);
        }
        let d = c.decide_now();
        assert_eq!(
            d,
            Decision::Paused(vec![Reason::QuotaReached {
                quota: Quota::LinksPerHour,
                until: "2026-06-01T11:00:00Z".parse().unwrap()
            }])
        );
        assert_eq!(c.watch().borrow().quota_left.links_this_hour, 0);
        // Saved: a restart in the same hour is still paused, the next hour is not.
        assert!(
            !controller(policy.clone(), dir.path(), "2026-06-01T10:59:00Z")
                .decide_now()
                .is_active()
        );
        let next = controller(policy, dir.path(), "2026-06-01T11:00:00Z");
        assert!(next.decide_now().is_active());
        assert_eq!(
            next.watch().borrow().quota_left.bytes_today,
            crate::control::keys::DEFAULT_MAX_BYTES_PER_DAY - 200
        );
    }

    #[test]
    fn the_report_for_the_relay_is_valid_and_names_the_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(Policy::default(), dir.path(), "2026-06-01T10:00:00Z");
        let r = c.report();
        assert_eq!((r.state.as_str(), r.reasons.len()), ("active", 0));
        assert_eq!(
            r.quota_left.unwrap().links_this_hour,
            crate::control::keys::DEFAULT_MAX_LINKS_PER_HOUR
        );
        c.pause_for(Duration::from_secs(60));
        let r = c.report();
        assert_eq!(
            (r.state.as_str(), r.reasons.as_slice()),
            ("paused", &["user".to_owned()][..])
        );
        assert_eq!(r.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        let poll = link_peeler_wire::protocol::PollRequest {
            capacity: 0,
            wait_seconds: 0,
            state: Some(r),
        };
        assert!(poll.validate().is_ok());
    }

    #[test]
    fn destination_rules_name_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let policy = Policy::merge(
            &Layer {
                allow_domains: Some(crate::control::Domains(vec!["example.com".into()])),
                deny_domains: Some(crate::control::Domains(vec!["ads.example.com".into()])),
                ..Default::default()
            },
            &Layer::default(),
            &Layer::default(),
        );
        let c = controller(policy, dir.path(), "2026-06-01T10:00:00Z");
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            c.refuse_destination(&url("https://www.example.com/x")),
            None
        );
        let e = c
            .refuse_destination(&url("https://ads.example.com/x"))
            .unwrap();
        assert!(e.contains("deny list") && e.contains("user"), "{e}");
        let e = c
            .refuse_destination(&url("https://other.example/"))
            .unwrap();
        assert!(e.contains("allow list"), "{e}");
        let t = c.reserve().unwrap();
        let w: &dyn link_peeler_resolver::meter::Watch = &t;
        assert!(w.before_hop(&url("https://x.ads.example.com/")).is_err());
        assert!(w.before_hop(&url("https://example.com/")).is_ok());
    }

    #[tokio::test]
    async fn a_resume_published_before_the_wait_still_wakes_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(Policy::default(), dir.path(), "2026-06-01T10:00:00Z");
        c.pause_until_resumed();
        let paused = c.decide_now();
        assert!(!paused.is_active());
        // The tray's Resume lands between the runner's decision and its wait.
        c.resume();
        let woke = tokio::time::timeout(Duration::from_secs(5), c.changed(&paused)).await;
        assert!(
            woke.is_ok(),
            "the wait missed the resume (it would sleep a minute)"
        );
        assert!(c.decide_now().is_active());
    }

    #[tokio::test]
    async fn a_metered_reading_during_a_held_poll_ends_the_wait() {
        use crate::control::Reading;
        let dir = tempfile::tempdir().unwrap();
        let (tx, sensors) = watch::channel(Sensors::default());
        let c = Controller::new(
            Policy::default(),
            Saved::default(),
            sensors,
            Clock::Fixed(at("2026-06-01T10:00:00Z")),
            Some(dir.path().to_path_buf()),
        );
        assert!(c.decide_now().is_active());
        let short = Duration::from_millis(200);
        // A reading that does not pause keeps the poll.
        tx.send_replace(Sensors {
            metered: Reading::No,
            on_battery: Reading::No,
        });
        assert!(tokio::time::timeout(short, c.until_paused()).await.is_err());
        // Joining a metered network ends it, and the decision says why.
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.until_paused().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(Sensors {
            metered: Reading::Yes,
            on_battery: Reading::No,
        });
        let done = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(matches!(done, Ok(Ok(()))), "{done:?}");
        assert_eq!(
            c.watch().borrow().decision,
            Decision::Paused(vec![Reason::MeteredNetwork])
        );
    }
}
