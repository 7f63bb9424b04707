//! The agent loop: deliver parked results, long-poll with free capacity, run
//! resolutions, post each result — and stop cleanly.
//!
//! Shape (one task owns the loop, workers own one lease each):
//!
//! ```text
//!   ┌──────────── loop until stop / sign-in required ─────────────┐
//!   │ 1. outbox not empty?  post parked results first (backoff)    │
//!   │ 2. no free capacity?  wait for a worker to finish            │
//!   │ 3. poll(capacity - running, waitSeconds)   (backoff on error)│
//!   │ 4. each task → worker: resolve → outbox (fsync) → post →     │
//!   │                        delete from outbox once accepted      │
//!   └──────────────────────────────────────────────────────────────┘
//!   stop: cancel the poll, give workers up to 30 s, report what is parked
//! ```
//!
//! Invariants: a result is on disk before it is posted and leaves the disk
//! only when the relay accepted it or answered that it never will (the
//! [`policy`](super::policy) table); while the relay is failing, the loop
//! sleeps per the full-jitter [`Backoff`] instead of polling, so an outage
//! costs one request per backoff step, not a tight loop; a revoked device
//! ends the loop with [`Exit::SignInRequired`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, Connection, Publisher};
use super::backoff::Backoff;
use super::client::{RelayClient, RelayErrorExt};
use super::control::controller::{Controller, Task as ControlTask};
use super::control::{Decision, Reason, quota::Exhausted};
use super::history::{self, Entry, History, StateEntry, TaskEntry};
use super::outbox::{Outbox, Pending, now_ms};
use super::policy::{Op, Verdict};
use super::resolve::LinkResolver;
use link_peeler_wire::client::RelayError;
use link_peeler_wire::protocol::{Conclusion, ResolutionResult, ResultPost, Task};

/// How long in-flight resolutions may run after a stop request.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a paused agent repeats its state report while nothing changes
/// (protocol.md §4.2: "about once a minute", so `lastSeenAt` stays current).
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// How the runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Resolutions at once (1–64).
    pub capacity: u32,
    /// Long-poll hold time asked of the relay (0–30 s).
    pub poll_wait_seconds: u32,
    /// Grace for in-flight work after a stop request.
    pub drain_timeout: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            capacity: super::config::DEFAULT_CAPACITY,
            poll_wait_seconds: super::config::DEFAULT_POLL_WAIT_SECONDS,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }
}

impl RunnerConfig {
    /// The runner's share of the agent's settings (headless and tray alike).
    pub fn from_settings(settings: &super::config::Settings) -> Self {
        RunnerConfig {
            capacity: settings.capacity,
            poll_wait_seconds: settings.poll_wait_seconds,
            ..Default::default()
        }
    }
}

/// Why the runner returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Stopped on request. `parked` results wait in the outbox; `abandoned`
    /// resolutions did not finish in time (their leases will expire and the
    /// relay will hand them out again).
    Stopped { parked: usize, abandoned: usize },
    /// The relay refused these credentials (revoked, unknown, bad signature).
    SignInRequired { reason: String, parked: usize },
}

/// Running totals, shared with whoever wants to watch (demo, bench, tests).
#[derive(Debug, Default)]
pub struct Counters {
    pub polls: AtomicU64,
    pub poll_failures: AtomicU64,
    pub tasks: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub parked: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a worker (or one outbox delivery) ended with.
#[derive(Debug)]
enum Outcome {
    Delivered,
    Dropped,
    /// Kept in the outbox; the error says why (and may carry `Retry-After`).
    Parked(RelayError),
    SignIn(String),
}

struct Shared<R> {
    client: Arc<RelayClient>,
    resolver: R,
    outbox: Outbox,
    counters: Arc<Counters>,
    /// What the loop is doing, for a user interface (the tray).
    activity: Publisher,
    /// Tasks a worker is handling, so an outbox flush does not post them twice.
    in_flight: Mutex<HashSet<String>>,
}

/// The agent loop for one relay and one device.
pub struct Runner<R> {
    shared: Arc<Shared<R>>,
    cfg: RunnerConfig,
    stop: CancellationToken,
    /// The user's policy: pauses, quotas, destination rules (none: no limits).
    control: Option<Arc<Controller>>,
    /// "Recent activity": finished tasks and pauses (none: not recorded).
    history: Option<Arc<History>>,
}

impl<R: LinkResolver> Runner<R> {
    pub fn new(
        client: Arc<RelayClient>,
        resolver: R,
        outbox: Outbox,
        cfg: RunnerConfig,
        stop: CancellationToken,
    ) -> Self {
        Runner {
            shared: Arc::new(Shared {
                client,
                resolver,
                outbox,
                counters: Arc::default(),
                activity: Publisher::default(),
                in_flight: Mutex::default(),
            }),
            cfg,
            stop,
            control: None,
            history: None,
        }
    }

    /// Runs under `control`: no poll while it says paused, no task taken
    /// without a quota reservation, every hop checked against the
    /// destination rules and metered.
    pub fn with_control(mut self, control: Arc<Controller>) -> Self {
        self.control = Some(control);
        self
    }

    /// Records each finished task and each pause in `history`.
    pub fn with_history(mut self, history: Arc<History>) -> Self {
        self.history = Some(history);
        self
    }

    /// The controller this runner obeys, if any (for a user interface).
    pub fn control(&self) -> Option<Arc<Controller>> {
        self.control.clone()
    }

    /// Live counters of this runner.
    pub fn counters(&self) -> Arc<Counters> {
        self.shared.counters.clone()
    }

    /// The live [`Activity`] of this runner (connection, in flight, delivered).
    pub fn activity(&self) -> watch::Receiver<Activity> {
        self.shared.activity.subscribe()
    }

    /// Runs until `stop` is cancelled or the relay asks for a new sign-in.
    pub async fn run(self) -> Exit {
        let s = &self.shared;
        tracing::info!(
            relay = %s.client.base(),
            device = s.client.device_id().as_deref().unwrap_or("?"),
            capacity = self.cfg.capacity,
            "agent started"
        );
        let mut st = LoopState::new();
        loop {
            while let Some(done) = st.workers.try_join_next() {
                note(done, &mut st.outbox_dirty, &mut st.sign_in);
            }
            if st.sign_in.is_some() || self.stop.is_cancelled() {
                break;
            }
            if st.outbox_dirty {
                match self.deliver_parked(&mut st).await {
                    Next::Proceed => {}
                    Next::Restart => continue,
                    Next::Stop => break,
                }
            }
            let free = self.cfg.capacity.saturating_sub(st.workers.len() as u32);
            if free == 0 {
                self.wait_for_a_worker(&mut st).await;
                continue;
            }
            let free = match &self.control {
                Some(c) => match self.admit(&mut st, c, free).await {
                    Some(n) => n,
                    None => continue,
                },
                None => free,
            };
            if self.poll_and_start(&mut st, free).await == Next::Stop {
                break;
            }
        }
        let abandoned = self
            .drain(&mut st.workers, &mut st.outbox_dirty, &mut st.sign_in)
            .await;
        self.exit(st.sign_in, abandoned)
    }

    /// Step 1: posts parked results first. A sign-in answer stops the loop; a
    /// retryable failure backs off and restarts the loop.
    async fn deliver_parked(&self, st: &mut LoopState) -> Next {
        match self.flush_outbox().await {
            Ok(()) => {
                st.outbox_dirty = false;
                Next::Proceed
            }
            Err(FlushError::SignIn(reason)) => {
                st.sign_in = Some(reason);
                Next::Stop
            }
            Err(FlushError::Retry(e)) => {
                let delay = self.back_off(st, &e);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot deliver parked results");
                self.pause(delay).await;
                Next::Restart
            }
        }
    }

    /// Step 2b: asks the controller. Paused: waits for a change (a resume,
    /// a sensor, a task finishing, the clock) and returns `None`; no room in
    /// the quotas while tasks run: waits for one to finish. Otherwise the
    /// number of tasks the quotas have room for (at most `free`).
    async fn admit(&self, st: &mut LoopState, c: &Arc<Controller>, free: u32) -> Option<u32> {
        let decision = c.decide_now();
        if let Decision::Paused(reasons) = &decision {
            let news = st.paused.as_ref() != Some(reasons);
            if news {
                tracing::info!(reasons = ?reasons, "paused: not taking tasks");
                st.paused = Some(reasons.clone());
                self.record_state(decision.describe(&c.now())).await;
            }
            // Tell the relay why no work is taken: when the reasons change
            // and about once a minute (protocol.md §4.2), not on every
            // wake-up (each finished task, each sensor reading).
            let due = st.reported_at.is_none_or(|at| at.elapsed() >= REPORT_EVERY);
            if news || due {
                st.reported_at = Some(Instant::now());
                match self.shared.client.report(c.report()).await {
                    Ok(()) => {}
                    Err(e) if e.verdict(Op::Poll) == Verdict::SignIn => {
                        st.sign_in = Some(e.to_string());
                        return None;
                    }
                    Err(e) => tracing::debug!(error = %e, "state report not delivered"),
                }
            }
            let idle = st.workers.is_empty();
            tokio::select! {
                done = st.workers.join_next(), if !idle => if let Some(done) = done {
                    note(done, &mut st.outbox_dirty, &mut st.sign_in);
                },
                _ = c.changed(&decision) => {}
                _ = self.stop.cancelled() => {}
            }
            return None;
        }
        if st.paused.take().is_some() {
            tracing::info!("active again: taking tasks");
            self.record_state(vec![]).await;
        }
        st.reported_at = None; // active: every poll carries the report
        let room = c.room(free);
        if room == 0 {
            // The quotas have room only once a task in flight settles.
            self.wait_for_a_worker(st).await;
            return None;
        }
        Some(room)
    }

    /// Notes a change between working (`reasons` empty) and paused in the history.
    async fn record_state(&self, reasons: Vec<String>) {
        let Some(h) = self.history.clone() else {
            return;
        };
        let entry = Entry::State(StateEntry {
            at_ms: history::now_ms(),
            state: if reasons.is_empty() {
                "active"
            } else {
                "paused"
            }
            .to_owned(),
            reasons,
        });
        if let Err(e) = tokio::task::spawn_blocking(move || h.append(&entry)).await {
            tracing::warn!(error = %e, "activity log writer failed");
        }
    }

    /// Step 2: no free capacity, so waits for a worker to finish (or a stop).
    async fn wait_for_a_worker(&self, st: &mut LoopState) {
        tokio::select! {
            done = st.workers.join_next() => if let Some(done) = done {
                note(done, &mut st.outbox_dirty, &mut st.sign_in);
            },
            _ = self.stop.cancelled() => {}
        }
    }

    /// Steps 3–4: polls for up to `free` tasks and hands each to a worker. A
    /// stop or a sign-in answer stops the loop; a failure backs off.
    async fn poll_and_start(&self, st: &mut LoopState, free: u32) -> Next {
        let s = &self.shared;
        let polled = tokio::select! {
            r = s.client.poll_reporting(
                free,
                if st.connected { self.cfg.poll_wait_seconds } else { 0 },
                self.control.as_ref().map(|c| c.report()),
            ) => r,
            // Dropping a held poll is safe: the relay releases leases of an abandoned poll.
            _ = self.stop.cancelled() => return Next::Stop,
            // Paused meanwhile (the user, a sensor): take nothing this poll would bring.
            _ = paused(self.control.as_ref()) => return Next::Restart,
        };
        Counters::bump(&s.counters.polls);
        match polled {
            Ok(tasks) => {
                if st.backoff.failures() > 0 {
                    tracing::info!("relay reachable again");
                }
                st.backoff.reset();
                st.connected = true;
                s.activity.connection(Connection::Online);
                for task in tasks {
                    self.start(&mut st.workers, task);
                }
            }
            Err(e) if e.verdict(Op::Poll) == Verdict::SignIn => {
                st.sign_in = Some(e.to_string());
                return Next::Stop;
            }
            Err(e) => {
                Counters::bump(&s.counters.poll_failures);
                let delay = self.back_off(st, &e);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "poll failed");
                self.pause(delay).await;
            }
        }
        Next::Proceed
    }

    /// After a failed relay call: the next backoff delay, marked as not
    /// connected, and the user interface told when the next try is.
    fn back_off(&self, st: &mut LoopState, e: &RelayError) -> Duration {
        let delay = st.backoff.next_delay(e.retry_after());
        st.connected = false;
        self.shared.activity.connection(retrying(delay, e));
        delay
    }

    /// Reports what is parked and why the loop ended.
    fn exit(&self, sign_in: Option<String>, abandoned: usize) -> Exit {
        let s = &self.shared;
        let parked = s.outbox.len().unwrap_or(0);
        if parked > 0 {
            tracing::info!(
                parked,
                "results parked in the outbox; they are posted first at the next start"
            );
        }
        match sign_in {
            Some(reason) => {
                s.activity.connection(Connection::SignInRequired {
                    reason: reason.clone(),
                });
                tracing::error!(%reason, "sign-in required: the relay no longer accepts this device; polling stopped");
                Exit::SignInRequired { reason, parked }
            }
            None => {
                tracing::info!(parked, abandoned, "agent stopped");
                Exit::Stopped { parked, abandoned }
            }
        }
    }

    fn start(&self, workers: &mut JoinSet<Outcome>, task: Task) {
        Counters::bump(&self.shared.counters.tasks);
        self.shared.activity.task_started();
        if let Ok(mut set) = self.shared.in_flight.lock() {
            set.insert(task.task_id.clone());
        }
        tracing::debug!(task = %task.task_id, attempt = task.attempt, "task leased");
        let shared = self.shared.clone();
        let watch = self.control.as_ref().map(|c| c.reserve());
        let history = self.history.clone();
        workers.spawn(async move {
            let id = task.task_id.clone();
            let outcome = work(&shared, task, watch, history).await;
            shared
                .activity
                .task_finished(matches!(outcome, Outcome::Delivered));
            if let Ok(mut set) = shared.in_flight.lock() {
                set.remove(&id);
            }
            outcome
        });
    }

    /// Lets workers finish for up to the drain timeout; returns how many were cut off.
    async fn drain(
        &self,
        workers: &mut JoinSet<Outcome>,
        outbox_dirty: &mut bool,
        sign_in: &mut Option<String>,
    ) -> usize {
        if workers.is_empty() {
            return 0;
        }
        tracing::info!(
            in_flight = workers.len(),
            grace_s = self.cfg.drain_timeout.as_secs(),
            "waiting for in-flight resolutions"
        );
        let deadline = tokio::time::sleep(self.cfg.drain_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = workers.join_next() => match done {
                    Some(done) => note(done, outbox_dirty, sign_in),
                    None => return 0,
                },
                _ = &mut deadline => {
                    let n = workers.len();
                    workers.abort_all();
                    self.shared.activity.none_in_flight();
                    tracing::warn!(abandoned = n, "in-flight resolutions did not finish in time; their leases will expire and the relay will hand them out again");
                    return n;
                }
            }
        }
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Posts every parked result, oldest first. Stops at the first retryable failure.
    async fn flush_outbox(&self) -> Result<(), FlushError> {
        let s = &self.shared;
        let outbox = s.outbox.clone();
        let pending = match tokio::task::spawn_blocking(move || outbox.pending()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(error = %e, dir = %s.outbox.dir().display(), "cannot read the outbox");
                return Ok(());
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox reader failed");
                return Ok(());
            }
        };
        if !pending.is_empty() {
            tracing::info!(count = pending.len(), "delivering parked results");
        }
        for p in pending {
            if self.stop.is_cancelled() {
                break;
            }
            let busy = s
                .in_flight
                .lock()
                .map(|set| set.contains(&p.task_id))
                .unwrap_or(false);
            if busy {
                continue;
            }
            match deliver(s, p).await {
                Outcome::SignIn(reason) => return Err(FlushError::SignIn(reason)),
                Outcome::Parked(e) => return Err(FlushError::Retry(e)),
                Outcome::Delivered => s.activity.delivered_from_outbox(),
                Outcome::Dropped => {}
            }
        }
        Ok(())
    }
}

/// The agent loop's state between turns.
struct LoopState {
    backoff: Backoff,
    workers: JoinSet<Outcome>,
    outbox_dirty: bool,
    sign_in: Option<String>,
    /// Until a poll succeeds, poll without holding (waitSeconds 0) so a
    /// user interface learns "connected" at once, not a long-poll later.
    connected: bool,
    /// Why the controller last said paused (logged once per change).
    paused: Option<Vec<Reason>>,
    /// When a paused agent last sent a report-only poll.
    reported_at: Option<Instant>,
}

impl LoopState {
    fn new() -> Self {
        LoopState {
            backoff: Backoff::default(),
            workers: JoinSet::new(),
            outbox_dirty: true,
            sign_in: None,
            connected: false,
            paused: None,
            reported_at: None,
        }
    }
}

/// What the loop does after one of its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Go on to the next step.
    Proceed,
    /// Start the next turn of the loop.
    Restart,
    /// Leave the loop.
    Stop,
}

fn retrying(delay: Duration, e: &RelayError) -> Connection {
    Connection::Retrying {
        retry_at: SystemTime::now() + delay,
        error: e.to_string(),
    }
}

enum FlushError {
    Retry(RelayError),
    SignIn(String),
}

fn note(
    done: Result<Outcome, tokio::task::JoinError>,
    outbox_dirty: &mut bool,
    sign_in: &mut Option<String>,
) {
    match done {
        Ok(Outcome::Parked(_)) => *outbox_dirty = true,
        Ok(Outcome::SignIn(reason)) => {
            *outbox_dirty = true;
            sign_in.get_or_insert(reason);
        }
        Ok(Outcome::Delivered | Outcome::Dropped) => {}
        Err(e) if e.is_cancelled() => {}
        Err(e) => {
            // A panicking resolution must not take the agent down; its lease will expire.
            tracing::error!(error = %e, "a resolution task failed");
            *outbox_dirty = true;
        }
    }
}

/// A result for a task refused before any request (protocol.md §5.3).
fn refused(url: &str, why: String) -> ResolutionResult {
    ResolutionResult {
        input_url: url.to_owned(),
        final_url: url.to_owned(),
        conclusion: Conclusion::RefusedByPolicy,
        final_status: None,
        redirect_count: 0,
        elapsed_ms: 0,
        error: Some(why),
        hops: Vec::new(),
    }
}

/// Resolves under the task's reservation and rules (`None`: no controller);
/// returns the result and the bytes the task downloaded (0 when unmetered).
/// The input URL's host is checked here, before the resolver is called, so
/// a refused task makes no request whatever the resolver does.
async fn resolve_task<R: LinkResolver>(
    s: &Shared<R>,
    task: &Task,
    watch: Option<Result<ControlTask, Exhausted>>,
) -> (ResolutionResult, u64) {
    let url = &task.tracking_url;
    let watch = match watch {
        None => return (s.resolver.resolve(url, &task.options).await, 0),
        Some(Err(Exhausted(q))) => {
            let why = format!("this computer's {} quota is reached", q.key());
            return (refused(url, why), 0);
        }
        Some(Ok(w)) => Arc::new(w),
    };
    let parsed = url::Url::parse(url).ok();
    let denied = parsed
        .as_ref()
        .and_then(|u| watch.controller().refuse_destination(u));
    let result = match denied {
        Some(why) => refused(url, why),
        None => {
            s.resolver
                .resolve_watched(url, &task.options, watch.clone())
                .await
        }
    };
    let bytes = watch.bytes();
    let counted = bytes > 0 || result.hops.iter().any(|h| h.status.is_some());
    // Settling writes the counts to disk (fsync): not on an async worker thread.
    let settle = watch.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || settle.finish(counted)).await {
        tracing::error!(error = %e, "cannot settle the task's quota reservation");
    }
    (result, bytes)
}

/// Waits until `control` says paused (for ever without one).
async fn paused(control: Option<&Arc<Controller>>) {
    match control {
        Some(c) => c.until_paused().await,
        None => std::future::pending().await,
    }
}

/// The history line of a finished task.
fn task_entry(task: &Task, result: &ResolutionResult, bytes: u64) -> Entry {
    Entry::Task(TaskEntry {
        at_ms: history::now_ms(),
        task_id: task.task_id.clone(),
        requester: task.api_key_name.clone().filter(|s| !s.is_empty()),
        source: task.source.clone().filter(|s| !s.is_empty()),
        input_domain: history::domain(&result.input_url),
        final_domain: history::domain(&result.final_url),
        hops: result.hops.len(),
        bytes,
        conclusion: result.conclusion.to_string(),
        elapsed_ms: result.elapsed_ms,
    })
}

/// One lease: resolve, park durably (and note it in the history), post, unpark.
async fn work<R: LinkResolver>(
    s: &Shared<R>,
    task: Task,
    watch: Option<Result<ControlTask, Exhausted>>,
    history: Option<Arc<History>>,
) -> Outcome {
    let (result, bytes) = resolve_task(s, &task, watch).await;
    let entry = history.map(|h| (h, task_entry(&task, &result, bytes)));
    tracing::info!(
        task = %task.task_id,
        conclusion = %result.conclusion,
        hops = result.hops.len(),
        elapsed_ms = result.elapsed_ms,
        "resolved"
    );
    let pending = Pending {
        task_id: task.task_id,
        lease_id: task.lease_id,
        result,
        finished_at_ms: now_ms(),
    };
    let outbox = s.outbox.clone();
    let copy = pending.clone();
    let save = move || {
        if let Some((h, e)) = entry {
            h.append(&e);
        }
        outbox.save(&copy)
    };
    match tokio::task::spawn_blocking(save).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(task = %pending.task_id, error = %e, "cannot write the result to the outbox; posting without a durable copy")
        }
        Err(e) => tracing::error!(task = %pending.task_id, error = %e, "outbox writer failed"),
    }
    deliver(s, pending).await
}

/// Posts one parked result and settles its outbox file per the policy table.
async fn deliver<R>(s: &Shared<R>, p: Pending) -> Outcome {
    let task_id = p.task_id.clone();
    let post = ResultPost {
        lease_id: p.lease_id,
        result: p.result,
    };
    let settle = |remove: bool| {
        let outbox = s.outbox.clone();
        let id = task_id.clone();
        tokio::task::spawn_blocking(move || {
            let r = if remove {
                outbox.remove(&id)
            } else {
                outbox.reject(&id)
            };
            if let Err(e) = r {
                tracing::error!(task = %id, error = %e, "cannot update the outbox");
            }
        })
    };
    match s.client.post_result(&task_id, &post).await {
        Ok(()) => {
            let _ = settle(true).await;
            Counters::bump(&s.counters.delivered);
            tracing::debug!(task = %task_id, "result delivered");
            Outcome::Delivered
        }
        Err(e) => match e.verdict(Op::PostResult) {
            Verdict::Drop => {
                tracing::warn!(task = %task_id, error = %e, "dropping result: the relay no longer holds this lease");
                let _ = settle(true).await;
                Counters::bump(&s.counters.dropped);
                Outcome::Dropped
            }
            Verdict::Reject => {
                tracing::error!(task = %task_id, error = %e, "the relay refuses this result; moved to outbox/rejected/");
                let _ = settle(false).await;
                Counters::bump(&s.counters.dropped);
                Outcome::Dropped
            }
            Verdict::SignIn => {
                Counters::bump(&s.counters.parked);
                Outcome::SignIn(e.to_string())
            }
            // `Refused` is an enrollment verdict; a result post never gets it.
            Verdict::Retry | Verdict::FixClockAndRetryOnce | Verdict::Refused => {
                tracing::warn!(task = %task_id, error = %e, "result parked in the outbox; will retry");
                Counters::bump(&s.counters.parked);
                Outcome::Parked(e)
            }
        },
    }
}
