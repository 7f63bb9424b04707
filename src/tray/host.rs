//! The agent host: the tray's agent, on its own thread with its own tokio
//! runtime, driven by commands and reporting [`Snapshot`]s.
//!
//! ```text
//!   UI thread (tao)                         host thread (tokio)
//!   ───────────────                         ───────────────────
//!   menu click ── Command (mpsc) ─────────▶ Host: config, credentials,
//!                                           Runner (same engine as
//!   redraw ◀──── Update via EventLoopProxy ─ `run --headless`), state.json
//! ```
//!
//! Nothing is shared but the two channels: the host owns the runner and the
//! state file, the UI owns the widgets. Pause is the user's pause in the
//! runner's [`Controller`]: the runner keeps its connection (and tells the
//! relay why it takes no work), in-flight resolutions finish, and a held
//! poll is dropped; the controller saves it (`control.json`), so it survives
//! a restart and ends on its own after "1 hour" or at midnight. The status
//! line shows every reason the controller gives, automatic ones included.
//!
//! Consent: before the first runner starts, the host waits in
//! [`Phase::ConsentNeeded`] until the user allows it (the UI asks), unless
//! the managed configuration gave consent for the organisation (the UI then
//! says so once). The answer is kept in `state.json`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::model::{Phase, Snapshot};
use link_peeler_agent::activity::{Activity, Connection};
use link_peeler_agent::config::{self, Overrides, Settings};
use link_peeler_agent::control::{ControlState, Controller, Reason};
use link_peeler_agent::credentials::{self, CredentialError, DeviceCredentials};
use link_peeler_agent::enrollment::{self, Enrolled};
use link_peeler_agent::runner::{Exit, Runner};
use link_peeler_agent::state::{self, AgentState, Consent};
use link_peeler_agent::{assembly, managed, shutdown};
use link_peeler_resolver::Resolver;

/// How often a problem that may fix itself (a keychain locked at login) is retried.
const PROBLEM_RETRY: Duration = Duration::from_secs(30);
/// How often a waiting host checks whether the local day changed.
const DAY_CHECK_EVERY: Duration = Duration::from_secs(60);
/// How often today's count is written to the state file while links flow.
const SAVE_EVERY: Duration = Duration::from_secs(10);

/// How long the user's pause lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseLength {
    AnHour,
    UntilTomorrow,
    UntilResumed,
}

/// What the UI asks of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Pause(PauseLength),
    Resume,
    /// The user allows the agent to use this connection.
    Consent,
    Enroll {
        relay: Url,
        code: String,
    },
    Quit,
}

/// What the agent tells the UI.
#[derive(Debug, Clone)]
pub enum Update {
    Snapshot(Snapshot),
    /// The outcome of an enrollment, as a sentence for a dialog on failure.
    Enrolled(Result<Enrolled, String>),
    /// The organisation gave consent for this computer (first start): say so.
    ConsentByOrganization,
    /// The host is gone; `ok` is false when it died rather than quit.
    Stopped {
        ok: bool,
    },
}

/// Where and how the host runs its agent.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub data_dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub overrides: Overrides,
    /// For "links today" on the user's calendar (read once at start-up).
    pub local_offset: time::UtcOffset,
}

/// The running host.
pub struct HostHandle {
    pub commands: mpsc::UnboundedSender<Command>,
    thread: std::thread::JoinHandle<()>,
}

impl HostHandle {
    /// Waits for the host thread (after it reported `Stopped`).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts the host thread. `sink` is called on that thread for every update.
pub fn spawn(
    cfg: HostConfig,
    sink: impl Fn(Update) + Send + 'static,
) -> std::io::Result<HostHandle> {
    let (tx, rx) = mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name("link-peeler-host".into())
        .spawn(move || {
            // Whatever happens below, the UI hears that the host is gone.
            let guard = StoppedOnDrop(Some(Box::new(sink)));
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("link-peeler-agent")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the agent runtime");
                    return;
                }
            };
            let ok = runtime.block_on(Host::new(cfg, &guard, rx).run());
            // Do not wait for blocking threads (e.g. a keychain call) on the way out.
            runtime.shutdown_timeout(Duration::from_secs(1));
            guard.finish(ok);
        })?;
    Ok(HostHandle {
        commands: tx,
        thread,
    })
}

type Sink = Box<dyn Fn(Update) + Send>;

struct StoppedOnDrop(Option<Sink>);

impl StoppedOnDrop {
    fn send(&self, u: Update) {
        if let Some(s) = &self.0 {
            s(u);
        }
    }

    fn finish(mut self, ok: bool) {
        if let Some(s) = self.0.take() {
            s(Update::Stopped { ok });
        }
    }
}

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s(Update::Stopped { ok: false });
        }
    }
}

/// How one `step` ended.
enum Next {
    /// Look at config and credentials again and carry on.
    Again,
    Quit,
}

/// One runner's lifetime as [`Host::run_agent`] tracks it.
struct RunState {
    /// Stops the runner: no new polls, in-flight resolutions finish.
    stop: CancellationToken,
    /// Set once `stop` was cancelled: the phase to show until the runner ends.
    stopping: Option<Phase>,
    /// An enrollment asked for meanwhile, done once the runner has stopped.
    enroll_after: Option<(Url, String)>,
    /// The runner's delivered count already added to today's links.
    delivered: u64,
    /// The runner's controller: the user's pause, the reasons to show.
    control: Option<Arc<Controller>>,
}

impl RunState {
    fn new(stop: CancellationToken, control: Option<Arc<Controller>>) -> Self {
        RunState {
            stop,
            stopping: None,
            enroll_after: None,
            delivered: 0,
            control,
        }
    }
}

struct Host<'a> {
    cfg: HostConfig,
    sink: &'a StoppedOnDrop,
    commands: mpsc::UnboundedReceiver<Command>,
    signals: CancellationToken,
    state: AgentState,
    state_dirty: bool,
    snapshot: Snapshot,
    shown: Option<Snapshot>,
    /// End the user's pause when the next runner starts (after enrolling).
    resume_next: bool,
}

impl<'a> Host<'a> {
    fn new(
        cfg: HostConfig,
        sink: &'a StoppedOnDrop,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let state = state::load(&cfg.data_dir).unwrap_or_else(|e| {
            tracing::warn!(error = %e, file = %state::path(&cfg.data_dir).display(), "state file unreadable; starting unpaused");
            AgentState::default()
        });
        Host {
            cfg,
            sink,
            commands,
            signals: CancellationToken::new(),
            state,
            state_dirty: false,
            snapshot: Snapshot::default(),
            shown: None,
            resume_next: false,
        }
    }

    /// Runs until Quit (or a signal); true when it stopped cleanly.
    async fn run(mut self) -> bool {
        // SIGTERM/Ctrl-C quit like the menu's Quit; a second signal exits at once.
        if let Err(e) = shutdown::install(self.signals.clone()) {
            tracing::warn!(error = %e, "cannot listen for signals");
        }
        self.refresh_today();
        while let Next::Again = self.step().await {}
        self.save_state();
        tracing::info!("tray agent stopped");
        true
    }

    /// One round: read config and credentials, then run, wait or ask.
    async fn step(&mut self) -> Next {
        self.set_phase(Phase::Starting);
        let (settings, managed, config_path) =
            match assembly::load(self.cfg.config_file.as_deref(), &self.cfg.overrides) {
                Ok(l) => (l.settings, l.managed, l.path),
                Err(e) => {
                    return self
                        .problem("the config file has an error", &e.to_string(), true)
                        .await;
                }
            };
        self.snapshot.managed = managed.keys();
        self.snapshot.organization = managed.organization.clone();
        self.snapshot.policy = Some(Arc::new(settings.policy.clone()));
        let creds = match tokio::task::spawn_blocking(|| credentials::load(None)).await {
            Ok(Ok((creds, _source))) => creds,
            Ok(Err(CredentialError::NotEnrolled)) if managed.can_enroll() => {
                return self.enroll_managed(&managed).await;
            }
            Ok(Err(CredentialError::NotEnrolled)) => {
                self.snapshot.relay_url = settings.relay.as_ref().map(Url::to_string);
                self.snapshot.relay = settings.relay.as_ref().map(display);
                return self.wait(Phase::NotEnrolled, None).await;
            }
            Ok(Err(e)) => {
                let summary = credential_summary(&e);
                return self.problem(summary, &e.to_string(), true).await;
            }
            Err(e) => return self.problem("internal error", &e.to_string(), true).await,
        };
        let relay = match assembly::relay(settings.relay.as_ref(), Some(&creds), &config_path) {
            Ok(u) => u,
            Err(e @ config::ConfigError::NoRelay { .. }) => {
                return self
                    .problem("no relay address is configured", &e.to_string(), false)
                    .await;
            }
            Err(e) => {
                return self
                    .problem("the relay address is not valid", &e.to_string(), false)
                    .await;
            }
        };
        self.snapshot.relay = Some(display(&relay));
        self.snapshot.relay_url = Some(relay.to_string());
        if self.state.consent.is_none() {
            if !managed.consent_given {
                return self.wait(Phase::ConsentNeeded, None).await;
            }
            self.record_consent("organization");
            self.sink.send(Update::ConsentByOrganization);
        }
        self.run_agent(creds, relay, settings).await
    }

    /// Enrolls from the admin's managed relay URL + code (issue 6, `agent::managed`):
    /// at most once per (relay, code), retrying only while the relay is unreachable,
    /// and still answering the menu meanwhile.
    async fn enroll_managed(&mut self, managed: &managed::Managed) -> Next {
        // Say what is happening (it may take a while: an unreachable relay is retried).
        self.snapshot.relay_url = managed.relay.as_ref().map(Url::to_string);
        self.snapshot.relay = managed.relay.as_ref().map(display);
        self.set_phase(Phase::Enrolling);
        let stop = self.signals.child_token();
        let data_dir = self.cfg.data_dir.clone();
        let enroll = managed::enroll_if_needed(managed, &data_dir, None, &stop);
        tokio::pin!(enroll);
        let outcome = loop {
            tokio::select! {
                r = &mut enroll => break r,
                cmd = self.commands.recv() => match cmd.unwrap_or(Command::Quit) {
                    // Nothing runs yet: nothing to pause (the menu offers no Pause).
                    Command::Pause(_) | Command::Resume => {}
                    Command::Consent => self.record_consent("user"),
                    Command::Enroll { relay, code } => {
                        stop.cancel();
                        self.enroll(relay, code).await;
                        return Next::Again;
                    }
                    Command::Quit => {
                        stop.cancel();
                        return Next::Quit;
                    }
                },
            }
        };
        match outcome {
            Ok(managed::AutoEnroll::Stopped) => Next::Quit,
            Ok(managed::AutoEnroll::Enrolled { device_id }) => {
                tracing::info!(device = %device_id, "enrolled from the managed configuration");
                Next::Again
            }
            Ok(_) => self.wait(Phase::NotEnrolled, None).await,
            // The code will never work: say so (About has the admin-facing text) and
            // offer "Enroll this computer…" with a code of the user's own.
            Err(
                e @ (managed::AutoEnrollError::Refused { .. }
                | managed::AutoEnrollError::AlreadyUsed { .. }),
            ) => {
                tracing::error!(error = %e, "managed enrollment did not work");
                self.snapshot.detail = Some(e.to_string());
                let next = self.wait(Phase::ManagedCodeFailed, None).await;
                self.snapshot.detail = None;
                next
            }
            // Keychain, record-file and other local failures may pass (an unlocked
            // keychain, a freed disk): try again later. The attempts record keeps a
            // spent code from being sent twice.
            Err(e) => {
                self.problem(
                    "the enrollment set up by your administrator did not work",
                    &e.to_string(),
                    true,
                )
                .await
            }
        }
    }

    /// Shows `phase` and waits for a command (or `retry`).
    async fn wait(&mut self, phase: Phase, retry: Option<Duration>) -> Next {
        self.set_phase(phase);
        let sleep = tokio::time::sleep(retry.unwrap_or(Duration::MAX / 4));
        tokio::pin!(sleep);
        // "N links today" turns to 0 at midnight while paused or waiting, too.
        let mut day_tick = tokio::time::interval(DAY_CHECK_EVERY);
        loop {
            let cmd = tokio::select! {
                cmd = self.commands.recv() => cmd.unwrap_or(Command::Quit),
                _ = self.signals.cancelled() => Command::Quit,
                _ = &mut sleep, if retry.is_some() => return Next::Again,
                _ = day_tick.tick() => {
                    self.refresh_today();
                    continue;
                }
            };
            match cmd {
                Command::Pause(_) | Command::Resume => {}
                Command::Consent => {
                    self.record_consent("user");
                    return Next::Again;
                }
                Command::Enroll { relay, code } => {
                    self.enroll(relay, code).await;
                    return Next::Again;
                }
                Command::Quit => return Next::Quit,
            }
        }
    }

    async fn problem(&mut self, summary: &str, detail: &str, may_fix_itself: bool) -> Next {
        tracing::error!(problem = summary, detail, "the tray agent cannot run");
        self.snapshot.detail = Some(detail.to_owned());
        let next = self
            .wait(
                Phase::Problem {
                    summary: summary.to_owned(),
                },
                may_fix_itself.then_some(PROBLEM_RETRY),
            )
            .await;
        self.snapshot.detail = None;
        next
    }

    /// Runs the agent engine until it is paused, quit, or loses its sign-in.
    async fn run_agent(
        &mut self,
        creds: DeviceCredentials,
        relay: Url,
        settings: Settings,
    ) -> Next {
        let stop = CancellationToken::new();
        let built = assembly::build(
            &settings,
            &creds,
            relay.clone(),
            &self.cfg.data_dir,
            0,
            stop.clone(),
        );
        let runner = match built {
            Ok(runner) => runner,
            Err(e) => {
                return self
                    .problem("the agent cannot start", &e.to_string(), false)
                    .await;
            }
        };
        tracing::info!(device = %creds.device_id, relay = %relay, "tray agent running");
        let control = runner.control();
        if let Some(c) = &control {
            // An older version's pause (state.json) becomes the controller's.
            if self.state.paused {
                c.pause_until_resumed();
                self.state.paused = false;
                self.state_dirty = true;
                self.save_state();
            }
            if std::mem::take(&mut self.resume_next) {
                c.resume();
            }
        }
        let mut run = RunState::new(stop, control);
        let exit = self.supervise(runner, &mut run).await;
        tracing::info!(?exit, "tray agent's runner stopped");
        if run.stopping == Some(Phase::Quitting) {
            return Next::Quit;
        }
        if let Some((relay, code)) = run.enroll_after {
            self.enroll(relay, code).await;
            return Next::Again;
        }
        match exit {
            Exit::SignInRequired { .. } => self.wait(Phase::SignInRequired, None).await,
            Exit::Stopped { .. } => Next::Again,
        }
    }

    /// Drives `runner` until it exits, meanwhile folding its activity into the
    /// snapshot, answering the menu and signals, and saving today's count.
    async fn supervise(&mut self, runner: Runner<Resolver>, run: &mut RunState) -> Exit {
        let mut activity = runner.activity();
        let mut control = run.control.as_ref().map(|c| c.watch());
        if let Some(rx) = &mut control {
            let st = rx.borrow_and_update().clone();
            self.show_control(&st, run.control.as_deref());
        }
        let mut save_tick = tokio::time::interval(SAVE_EVERY);
        self.set_phase(Phase::Connecting);
        let engine = runner.run();
        tokio::pin!(engine);
        let exit = loop {
            tokio::select! {
                exit = &mut engine => break exit,
                changed = activity.changed() => if changed.is_ok() {
                    let a = activity.borrow_and_update().clone();
                    self.absorb(&a, &mut run.delivered, run.stopping.as_ref());
                },
                changed = control_changed(&mut control) => match changed {
                    Some(st) => self.show_control(&st, run.control.as_deref()),
                    None => control = None,
                },
                cmd = self.commands.recv() => {
                    self.command_while_running(cmd.unwrap_or(Command::Quit), run);
                }
                _ = self.signals.cancelled(), if run.stopping != Some(Phase::Quitting) => {
                    self.stop_runner(run, Phase::Quitting);
                }
                _ = save_tick.tick() => {
                    self.refresh_today();
                    self.save_state();
                }
            }
        };
        let last = activity.borrow().clone();
        self.absorb(&last, &mut run.delivered, run.stopping.as_ref());
        self.snapshot.in_flight = 0;
        self.snapshot.paused.clear();
        self.snapshot.user_paused = false;
        self.save_state();
        exit
    }

    /// Shows the controller's reasons to pause, in words.
    fn show_control(&mut self, st: &ControlState, c: Option<&Controller>) {
        let Some(c) = c else { return };
        self.snapshot.paused = st.decision.describe(&c.now());
        self.snapshot.sensors = Some(st.sensors);
        self.snapshot.user_paused = matches!(
            &st.decision,
            link_peeler_agent::control::Decision::Paused(rs)
                if rs.iter().any(|r| matches!(r, Reason::User { .. }))
        );
        self.publish();
    }

    /// A menu command while the runner runs. Pause and Resume go to its
    /// controller (the runner stays connected; in-flight resolutions
    /// finish); Quit stops it; Enroll waits until it has stopped.
    fn command_while_running(&mut self, cmd: Command, run: &mut RunState) {
        match (cmd, run.control.as_ref()) {
            (Command::Pause(length), Some(c)) => {
                tracing::info!(?length, "paused by the user");
                match length {
                    PauseLength::AnHour => c.pause_for(Duration::from_secs(3600)),
                    PauseLength::UntilTomorrow => c.pause_until_tomorrow(),
                    PauseLength::UntilResumed => c.pause_until_resumed(),
                }
            }
            (Command::Resume, Some(c)) => {
                tracing::info!("resumed by the user");
                c.resume();
            }
            (Command::Pause(_) | Command::Resume | Command::Consent, _) => {}
            (Command::Enroll { relay, code }, _) => {
                run.enroll_after = Some((relay, code));
                run.stop.cancel();
                run.stopping.get_or_insert(Phase::Enrolling);
            }
            (Command::Quit, _) => self.stop_runner(run, Phase::Quitting),
        }
    }

    /// Tells the runner to stop and shows `phase` until it has.
    fn stop_runner(&mut self, run: &mut RunState, phase: Phase) {
        run.stop.cancel();
        run.stopping = Some(phase.clone());
        self.set_phase(phase);
    }

    /// Folds a runner snapshot into ours.
    fn absorb(&mut self, a: &Activity, delivered: &mut u64, stopping: Option<&Phase>) {
        if a.delivered > *delivered {
            let day = self.today();
            self.state.links.add(&day, a.delivered - *delivered);
            self.state_dirty = true;
            *delivered = a.delivered;
            self.snapshot.links_today = self.state.links.on(&day);
        }
        self.snapshot.in_flight = a.in_flight;
        self.snapshot.phase = match (stopping, &a.connection) {
            (Some(p), _) => p.clone(),
            (None, Connection::Connecting) => Phase::Connecting,
            (None, Connection::Online) => Phase::Online,
            (None, Connection::Retrying { retry_at, .. }) => Phase::Retrying {
                retry_at: *retry_at,
            },
            (None, Connection::SignInRequired { .. }) => Phase::SignInRequired,
        };
        self.publish();
    }

    async fn enroll(&mut self, relay: Url, code: String) {
        self.snapshot.relay = Some(display(&relay));
        self.snapshot.relay_url = Some(relay.to_string());
        self.set_phase(Phase::Enrolling);
        tracing::info!(relay = %relay, "enrolling from the tray");
        // The relay's private CA, if this user's settings name one (file and
        // registry reads: off the async worker). A config that does not load
        // is reported by the next step; enroll with the OS trust store then.
        let (file, overrides) = (self.cfg.config_file.clone(), self.cfg.overrides.clone());
        let ca = tokio::task::spawn_blocking(move || {
            assembly::load(file.as_deref(), &overrides)
                .ok()
                .and_then(|l| l.settings.relay_ca)
        })
        .await
        .ok()
        .flatten();
        let roots = ca.as_ref().map(|c| &c.roots);
        let result = enrollment::enroll(relay, &code, None, None, roots).await;
        match &result {
            Ok(e) => {
                tracing::info!(device = %e.device_id, "enrolled");
                // Enrolling is a clear "start working": it ends an old pause.
                self.resume_next = true;
            }
            Err(e) => tracing::warn!(error = %e, "enrollment failed"),
        }
        self.sink
            .send(Update::Enrolled(result.map_err(|e| e.to_string())));
    }

    /// Keeps who agreed that the agent may use this connection.
    fn record_consent(&mut self, by: &str) {
        tracing::info!(by, "consent to use this connection recorded");
        self.state.consent = Some(Consent {
            at_ms: link_peeler_agent::history::now_ms(),
            by: by.to_owned(),
        });
        self.state_dirty = true;
        self.save_state();
    }

    fn save_state(&mut self) {
        if !self.state_dirty {
            return;
        }
        match state::save(&self.cfg.data_dir, &self.state) {
            Ok(()) => self.state_dirty = false,
            Err(e) => tracing::error!(error = %e, "cannot write the state file"),
        }
    }

    fn today(&self) -> String {
        let d = time::OffsetDateTime::now_utc()
            .to_offset(self.cfg.local_offset)
            .date();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    }

    /// Starts a new day's count at midnight even when no link arrives.
    fn refresh_today(&mut self) {
        self.snapshot.links_today = self.state.links.on(&self.today());
        self.publish();
    }

    fn set_phase(&mut self, phase: Phase) {
        self.snapshot.phase = phase;
        self.publish();
    }

    fn publish(&mut self) {
        if self.shown.as_ref() != Some(&self.snapshot) {
            self.shown = Some(self.snapshot.clone());
            self.sink.send(Update::Snapshot(self.snapshot.clone()));
        }
    }
}

/// The controller's next state (`None`: it is gone; never ready without one).
async fn control_changed(
    rx: &mut Option<tokio::sync::watch::Receiver<ControlState>>,
) -> Option<ControlState> {
    match rx {
        Some(r) => match r.changed().await {
            Ok(()) => Some(r.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// `relay.example.com`, or `127.0.0.1:8787` when the port is not the scheme's default.
pub fn display(url: &Url) -> String {
    let host = url.host_str().unwrap_or("relay");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// A few words for the status line; the full message goes to the log and About.
fn credential_summary(e: &CredentialError) -> &'static str {
    match e {
        CredentialError::NoKeychain { .. } => "no keychain is reachable",
        CredentialError::Locked { .. } => "the keychain is locked",
        CredentialError::Timeout => "the keychain does not answer",
        CredentialError::Corrupt(_) => "the stored credentials are unreadable",
        CredentialError::PartialEnv { .. } => "device credentials are half set",
        CredentialError::NotEnrolled => "not enrolled",
        CredentialError::Other(_) => "keychain error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_display_keeps_only_a_non_default_port() {
        let u = |s| config::relay_url(s).unwrap();
        assert_eq!(
            display(&u("https://relay.example.com/lp")),
            "relay.example.com"
        );
        assert_eq!(
            display(&u("https://relay.example.com:8443")),
            "relay.example.com:8443"
        );
        assert_eq!(display(&u("http://127.0.0.1:8787")), "127.0.0.1:8787");
        assert_eq!(display(&u("http://[::1]:9")), "[::1]:9");
    }
}
