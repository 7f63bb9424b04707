//! The UI thread: tao's event loop owns the main thread (AppKit requires it
//! on macOS; on Linux it is the GTK main loop that tray-icon needs), the
//! tray icon and menu live here, and everything else arrives as a
//! [`UserEvent`] through the loop's proxy.
//!
//! The UI keeps no agent state of its own beyond the latest [`Snapshot`]
//! and the start-at-login flag it reads back after each change; every
//! redraw is `view(state, now)` copied onto the widgets.
//!
//! [`Snapshot`]: super::model::Snapshot

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoopBuilder};
use tao::platform::run_return::EventLoopExtRunReturn;
use tokio::sync::mpsc::UnboundedSender;
use tray_icon::menu::MenuEvent;
use tray_icon::{TrayIcon, TrayIconBuilder};

use super::host::{Command, PauseLength, Update};
use super::menu::{Action, TrayMenu};
use super::model::{Phase, TrayState};
use super::view::{self, View};
use super::{autostart, dialogs, icons, open};
use link_peeler_agent::enrollment::Enrolled;

/// Everything that reaches the event loop from other threads.
#[derive(Debug)]
pub enum UserEvent {
    Host(Update),
    Menu(MenuEvent),
}

/// The UI's state and widgets.
pub struct Ui {
    commands: UnboundedSender<Command>,
    state: TrayState,
    tray: Option<TrayIcon>,
    menu: Option<TrayMenu>,
    shown: Option<View>,
    log_dir: PathBuf,
    data_dir: PathBuf,
    exit: Option<i32>,
    host_alive: bool,
    /// No tray could be shown: quit, and exit non-zero.
    failed: bool,
    /// The consent question was put once this run (later only from the menu).
    consent_asked: bool,
}

impl Ui {
    pub fn new(commands: UnboundedSender<Command>, data_dir: PathBuf, log_dir: PathBuf) -> Ui {
        let start_at_login = autostart::is_enabled()
            .inspect_err(|e| tracing::warn!(error = %e, "cannot read the start-at-login setting"))
            .ok();
        Ui {
            commands,
            state: TrayState {
                start_at_login,
                start_at_login_locked: autostart::locked_by_admin(),
                ..Default::default()
            },
            tray: None,
            menu: None,
            shown: None,
            log_dir,
            data_dir,
            exit: None,
            host_alive: true,
            failed: false,
            consent_asked: false,
        }
    }

    /// Runs the loop until the host has stopped; returns the exit code.
    pub fn run(mut self, mut event_loop: tao::event_loop::EventLoop<UserEvent>) -> i32 {
        event_loop.run_return(|event, _, control_flow| self.handle(event, control_flow))
    }

    fn handle(&mut self, event: Event<'_, UserEvent>, control_flow: &mut ControlFlow) {
        match event {
            // tray-icon wants the loop running before the icon exists (macOS).
            Event::NewEvents(StartCause::Init) => self.create_tray(),
            Event::UserEvent(UserEvent::Host(update)) => self.on_update(update),
            Event::UserEvent(UserEvent::Menu(e)) => {
                if let Some(action) = TrayMenu::action(&e) {
                    self.on_action(action);
                }
            }
            _ => {}
        }
        let now = SystemTime::now();
        self.render(now);
        *control_flow = match (self.exit, view::next_change(&self.state, now)) {
            (Some(code), _) => ControlFlow::ExitWithCode(code),
            (None, Some(at)) => {
                ControlFlow::WaitUntil(Instant::now() + at.duration_since(now).unwrap_or_default())
            }
            (None, None) => ControlFlow::Wait,
        };
    }

    fn create_tray(&mut self) {
        let v = view::view(&self.state, SystemTime::now());
        let menu = match TrayMenu::new(&v) {
            Ok(m) => m,
            Err(e) => return self.give_up(&format!("Could not build the tray menu: {e}")),
        };
        let mut builder = TrayIconBuilder::new()
            .with_id("link-peeler")
            .with_menu(Box::new(menu.menu.clone()))
            .with_tooltip(&v.tooltip);
        if let Some(icon) = icons::icon(v.icon) {
            builder = builder.with_icon(icon);
        }
        // libappindicator is loaded at run time and its absence panics inside tray-icon.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.build()));
        match built {
            Ok(Ok(tray)) => {
                tracing::info!("tray icon created");
                self.tray = Some(tray);
                self.menu = Some(menu);
                self.shown = Some(v);
            }
            Ok(Err(e)) => self.give_up(&format!("Could not create the tray icon: {e}")),
            Err(_) => self.give_up(
                "Could not create the tray icon: no AppIndicator library. Install libayatana-appindicator3-1 (or run `link-peeler run --headless`).",
            ),
        }
    }

    /// No tray is possible: say so, then quit like the menu would.
    fn give_up(&mut self, why: &str) {
        tracing::error!("{why}");
        eprintln!("link-peeler: {why}");
        dialogs::error(dialogs::TITLE_ERROR, why);
        self.failed = true;
        self.send(Command::Quit);
    }

    fn on_update(&mut self, update: Update) {
        match update {
            Update::Snapshot(s) => {
                self.state.agent = s;
                // First start: ask at once, before any task (the menu asks again later).
                if self.state.agent.phase == Phase::ConsentNeeded && !self.consent_asked {
                    self.consent_asked = true;
                    self.ask_consent();
                }
            }
            Update::ConsentByOrganization => dialogs::info(
                dialogs::TITLE_WELCOME,
                &format!(
                    "{}\n{} has agreed to this for the computers it manages.",
                    dialogs::consent_text(self.relay_name()),
                    self.state
                        .agent
                        .organization
                        .as_deref()
                        .unwrap_or("Your organization")
                ),
            ),
            Update::Enrolled(Ok(e)) => dialogs::info(dialogs::TITLE_ENROLLED, &enrolled_text(&e)),
            Update::Enrolled(Err(why)) => dialogs::error(dialogs::TITLE_ENROLL_FAILED, &why),
            Update::Stopped { ok } => {
                self.host_alive = false;
                self.exit = Some(if ok && !self.failed { 0 } else { 1 });
            }
        }
    }

    fn on_action(&mut self, action: Action) {
        let now = SystemTime::now();
        let v = view::view(&self.state, now);
        match action {
            Action::PauseForAnHour if v.pause_enabled => {
                self.send(Command::Pause(PauseLength::AnHour))
            }
            Action::PauseUntilTomorrow if v.pause_enabled => {
                self.send(Command::Pause(PauseLength::UntilTomorrow))
            }
            Action::PauseUntilResumed if v.pause_enabled => {
                self.send(Command::Pause(PauseLength::UntilResumed))
            }
            Action::Resume if v.resume_enabled => self.send(Command::Resume),
            Action::PauseForAnHour
            | Action::PauseUntilTomorrow
            | Action::PauseUntilResumed
            | Action::Resume => {}
            Action::Prompt if v.prompt == Some(view::ALLOW) => self.ask_consent(),
            Action::Prompt => {
                let default = self.state.agent.relay_url.clone();
                if let Some((relay, code)) = dialogs::ask_enrollment(default.as_deref()) {
                    self.send(Command::Enroll { relay, code });
                }
            }
            Action::RecentActivity => {
                let policy = self
                    .state
                    .agent
                    .policy
                    .as_deref()
                    .cloned()
                    .unwrap_or_default();
                let opened = link_peeler_agent::history::write_page(&self.data_dir, &policy)
                    .and_then(|page| open::path(&page));
                if let Err(e) = opened {
                    dialogs::error(
                        dialogs::TITLE_ERROR,
                        &format!("Could not show the recent activity: {e}"),
                    );
                }
            }
            Action::OpenLogs => {
                if let Err(e) =
                    std::fs::create_dir_all(&self.log_dir).and_then(|()| open::path(&self.log_dir))
                {
                    dialogs::error(
                        dialogs::TITLE_ERROR,
                        &format!("Could not open {}: {e}", self.log_dir.display()),
                    );
                }
            }
            Action::ToggleStartAtLogin => {
                let want = self.state.start_at_login != Some(true);
                self.state.start_at_login = match autostart::set(want) {
                    Ok(now_on) => Some(now_on),
                    Err(e) => {
                        dialogs::error(
                            dialogs::TITLE_ERROR,
                            &format!("Could not change “Start at login”: {e}"),
                        );
                        autostart::is_enabled().ok()
                    }
                };
                tracing::info!(start_at_login = ?self.state.start_at_login, "start at login changed");
                // The check item toggled itself when clicked: re-sync it even if nothing changed.
                self.shown = None;
            }
            Action::About => dialogs::info(dialogs::TITLE_ABOUT, &self.about_text(&v)),
            Action::Quit => self.send(Command::Quit),
        }
    }

    fn relay_name(&self) -> &str {
        self.state
            .agent
            .relay
            .as_deref()
            .unwrap_or("your team's relay")
    }

    /// Asks whether the agent may use this connection; Yes lets it start.
    fn ask_consent(&mut self) {
        if dialogs::ask_consent(self.relay_name()) {
            self.send(Command::Consent);
        }
    }

    fn send(&mut self, cmd: Command) {
        if self.commands.send(cmd).is_err() || !self.host_alive {
            // The host is gone: nothing left to wait for.
            self.exit.get_or_insert(1);
        }
    }

    fn render(&mut self, now: SystemTime) {
        let v = view::view(&self.state, now);
        if self.shown.as_ref() == Some(&v) {
            return;
        }
        if let Some(menu) = &mut self.menu {
            menu.apply(&v);
        }
        if let Some(tray) = &self.tray {
            let old = self.shown.as_ref();
            if old.is_none_or(|o| o.icon != v.icon)
                && let Err(e) = tray.set_icon(icons::icon(v.icon))
            {
                tracing::warn!(error = %e, "cannot change the tray icon");
            }
            if old.is_none_or(|o| o.tooltip != v.tooltip)
                && let Err(e) = tray.set_tooltip(Some(&v.tooltip))
            {
                tracing::warn!(error = %e, "cannot change the tooltip");
            }
        }
        self.shown = Some(v);
    }

    fn about_text(&self, v: &View) -> String {
        let mut text = format!(
            "Link Peeler {}\nResolves tracking links on this computer for your team's relay.\n\nStatus: {}",
            env!("CARGO_PKG_VERSION"),
            v.status
        );
        if let Some(detail) = &self.state.agent.detail {
            text.push_str(&format!("\nDetails: {detail}"));
        }
        if let Some(relay) = &self.state.agent.relay_url {
            text.push_str(&format!("\nRelay: {relay}"));
        }
        if let Some(managed) = &v.managed {
            text.push_str(&format!("\n{managed}"));
        }
        if let Some(s) = &self.state.agent.sensors {
            text.push_str(&format!(
                "\nMetered network: {}\nOn battery: {}",
                s.metered.words(),
                s.on_battery.words()
            ));
        }
        if let Some(policy) = &self.state.agent.policy {
            text.push_str("\n\nLimits in force:");
            for (key, value, source) in policy.rows() {
                text.push_str(&format!("\n  {key}: {value} ({source})"));
            }
        }
        text.push_str(&format!(
            "\n\nData and logs: {}\nLogs: {}",
            self.data_dir.display(),
            self.log_dir.display()
        ));
        text
    }
}

fn enrolled_text(e: &Enrolled) -> String {
    let mut text = format!(
        "This computer is enrolled as {} with {}.\nLink Peeler will now resolve links for your team.",
        e.device_id,
        super::host::display(&e.relay)
    );
    if let Some(old) = &e.replaced {
        text.push_str(&format!(
            "\n\nIt replaces device {old}; ask your admin to revoke it."
        ));
    }
    text
}

/// Builds the event loop (with the macOS "no Dock icon" policy).
pub fn event_loop() -> tao::event_loop::EventLoop<UserEvent> {
    #[allow(unused_mut)]
    let mut event_loop = EventLoopBuilder::<UserEvent>::with_user_event().build();
    #[cfg(target_os = "macos")]
    {
        use tao::platform::macos::{ActivationPolicy, EventLoopExtMacOS};
        // A menu-bar app: no Dock icon, no app menu (LSUIElement for bundles).
        event_loop.set_activation_policy(ActivationPolicy::Accessory);
    }
    event_loop
}
