//! The system-tray app: what end users see. `link-peeler` with no
//! subcommand starts it (cargo feature `tray`, on by default).
//!
//! Two threads, two channels, no shared mutable state:
//!
//! - the **main thread** runs tao's event loop ([`app`]): the tray icon, its
//!   menu and native dialogs — GUI toolkits want all of that on one thread,
//!   and macOS insists it is the main one;
//! - the **host thread** ([`host`]) runs a tokio runtime with the same agent
//!   engine as `run --headless` ([`link_peeler_agent::runner`]), and owns
//!   config, credentials and the agent's state file.
//!
//! Menu clicks become [`host::Command`]s on an mpsc channel; the host
//! answers with [`host::Update`]s through tao's `EventLoopProxy`, which
//! wakes the loop. What the tray shows is one pure function, [`view::view`],
//! of the latest state — unit-tested for every state.
//!
//! The tray depends on [`link_peeler_agent`]; the agent knows nothing of it.
//!
//! One file per concern: [`model`] (plain state), [`view`] (state → icon,
//! status, menu), [`menu`] (widgets), [`icons`] (embedded PNGs),
//! [`dialogs`] (native dialogs), [`enroll_input`] (what users paste),
//! [`autostart`] (start at login), [`open`] (the logs folder).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use tray_icon::menu::MenuEvent;

use link_peeler_agent::config::{self, Overrides};
use link_peeler_agent::lock::{self, LockError};
use link_peeler_agent::logging;

pub mod app;
pub mod autostart;
pub mod dialogs;
pub mod enroll_input;
pub mod host;
pub mod icons;
pub mod menu;
pub mod model;
pub mod open;
pub mod view;

/// Exit code when another instance is already running (as headless: non-zero).
pub const EXIT_ALREADY_RUNNING: u8 = 1;

/// What the command line passes to the tray app.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config_file: Option<PathBuf>,
    pub overrides: Overrides,
}

/// Starts the tray app and returns when the user quits.
pub fn run(opts: Options) -> ExitCode {
    // Read the UTC offset while this is the only thread: on Unix it cannot
    // be read soundly once others exist. UTC if unknown.
    let local_offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    if let Err(why) = graphical_session() {
        eprintln!("link-peeler: {why}");
        return ExitCode::from(1);
    }
    let data_dir = match config::data_dir() {
        Ok(d) => d,
        Err(e) => return fail(&e.to_string()),
    };
    // One agent per user: the headless agent's lock, so tray and headless exclude each other too.
    let lock = match lock::acquire(&data_dir) {
        Ok(l) => l,
        Err(LockError::AlreadyRunning { pid, .. }) => {
            eprintln!(
                "link-peeler: already running for this user{}; look for its icon next to the clock",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            );
            dialogs::already_running(pid);
            return ExitCode::from(EXIT_ALREADY_RUNNING);
        }
        Err(e) => return fail(&e.to_string()),
    };
    let logs = match logging::init(&data_dir, std::io::stderr().is_terminal()) {
        Ok(g) => g,
        Err(e) => return fail(&format!("{e:#}")),
    };
    for problem in lock.not_private() {
        tracing::warn!(%problem, "could not make a file in the data dir private");
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %data_dir.display(),
        "starting the tray app"
    );

    let event_loop = app::event_loop();
    let proxy = event_loop.create_proxy();
    MenuEvent::set_event_handler(Some(move |e| {
        let _ = proxy.send_event(app::UserEvent::Menu(e));
    }));
    let proxy = event_loop.create_proxy();
    let host = host::spawn(
        host::HostConfig {
            data_dir: data_dir.clone(),
            config_file: opts.config_file,
            overrides: opts.overrides,
            local_offset,
        },
        move |u| {
            let _ = proxy.send_event(app::UserEvent::Host(u));
        },
    );
    let host = match host {
        Ok(h) => h,
        Err(e) => return fail(&format!("cannot start the agent thread: {e}")),
    };
    let ui = app::Ui::new(host.commands.clone(), data_dir, logs.dir.clone());
    let code = ui.run(event_loop);
    host.join();
    tracing::info!(code, "tray app exiting");
    drop(logs);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn fail(why: &str) -> ExitCode {
    eprintln!("link-peeler: {why}");
    dialogs::error(dialogs::TITLE_ERROR, why);
    ExitCode::from(1)
}

/// On Linux/BSD a tray needs an X11 or Wayland session; say so instead of panicking in GTK.
fn graphical_session() -> Result<(), String> {
    if cfg!(any(target_os = "windows", target_os = "macos")) {
        return Ok(());
    }
    let set = |k| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if set("DISPLAY") || set("WAYLAND_DISPLAY") {
        Ok(())
    } else {
        Err("no graphical session (DISPLAY and WAYLAND_DISPLAY are unset): the tray app needs a desktop; use `link-peeler run --headless` on servers".into())
    }
}
