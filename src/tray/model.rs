//! What the tray knows: plain data, no GUI types.
//!
//! The agent host (another thread) sends a [`Snapshot`] whenever something
//! visible changes; the UI thread keeps the latest one plus the few facts it
//! owns itself (whether start-at-login is on) in a [`TrayState`], and hands
//! that to the pure [`view`](super::view) function. Keeping the model free
//! of GUI types is what lets every state be unit-tested without a display.

use std::time::SystemTime;

/// Where the agent is in its life, as the user should understand it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Reading config and credentials.
    Starting,
    /// No device credentials on this computer.
    NotEnrolled,
    /// Trading an enrollment code for credentials.
    Enrolling,
    /// Runner started; waiting for the relay's first answer.
    Connecting,
    /// Polling normally.
    Online,
    /// The relay is unreachable or failing; the next try is at `retry_at`.
    Retrying { retry_at: SystemTime },
    /// The relay revoked or does not know this device.
    SignInRequired,
    /// The admin's managed enrollment code was refused or already used: the
    /// user can still enroll with a code of their own.
    ManagedCodeFailed,
    /// Enrolled, but nobody has agreed yet that the agent may use this
    /// computer's connection: it takes no task until the user allows it.
    ConsentNeeded,
    /// Something the user or admin must fix (keychain locked, bad config).
    Problem { summary: String },
    /// Quit clicked; in-flight resolutions are finishing.
    Quitting,
}

/// What the agent host reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub phase: Phase,
    /// The relay's host (and port when not the default), for the status line.
    pub relay: Option<String>,
    /// The full relay URL, to pre-fill the enrollment dialog.
    pub relay_url: Option<String>,
    /// The full text of a [`Phase::Problem`], for the About box.
    pub detail: Option<String>,
    /// Resolutions running now.
    pub in_flight: usize,
    /// Links resolved and delivered today (local calendar).
    pub links_today: u64,
    /// Settings the admin manages (as `config.toml` names them); empty when none.
    pub managed: Vec<&'static str>,
    /// The organisation's name from the managed configuration.
    pub organization: Option<String>,
    /// Why the agent takes no task, in words ("by you until 15:00",
    /// "metered network"); empty while it works.
    pub paused: Vec<String>,
    /// The user's own pause is among the reasons (Resume is offered).
    pub user_paused: bool,
    /// Metered network and battery as the running agent reads them.
    pub sensors: Option<link_peeler_agent::control::Sensors>,
    /// The policy in force, each value with its source (once settings are read).
    pub policy: Option<std::sync::Arc<link_peeler_agent::control::Policy>>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            phase: Phase::Starting,
            relay: None,
            relay_url: None,
            detail: None,
            in_flight: 0,
            links_today: 0,
            managed: Vec::new(),
            organization: None,
            paused: Vec::new(),
            user_paused: false,
            policy: None,
            sensors: None,
        }
    }
}

/// Everything the view depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrayState {
    pub agent: Snapshot,
    /// Whether the app starts at login; `None` when that could not be read.
    pub start_at_login: Option<bool>,
    /// Start at login was set for every user by an installer and only an admin can change it.
    pub start_at_login_locked: bool,
}
