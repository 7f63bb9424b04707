//! The one pure function of the tray: state → icon, status line, tooltip and
//! menu items. No GUI types, no clock reads (`now` is a parameter), no I/O —
//! so every state is covered by unit tests below, and the GUI glue in
//! [`menu`](super::menu) only copies fields onto widgets.

use std::time::{Duration, SystemTime};

use super::model::{Phase, TrayState};

/// Menu labels (also what the GUI smoke test looks for).
pub const PAUSE: &str = "Pause";
pub const PAUSE_HOUR: &str = "For 1 hour";
pub const PAUSE_TOMORROW: &str = "Until tomorrow";
pub const PAUSE_UNTIL_RESUMED: &str = "Until I resume";
pub const RESUME: &str = "Resume";
pub const ENROLL: &str = "Enroll this computer…";
pub const ALLOW: &str = "Allow Link Peeler to start…";
pub const RECENT: &str = "Recent activity…";
pub const OPEN_LOGS: &str = "Open logs folder";
pub const START_AT_LOGIN: &str = "Start at login";
pub const ABOUT: &str = "About Link Peeler";
pub const QUIT: &str = "Quit";

/// Windows truncates tray tooltips at 127 characters.
const TOOLTIP_MAX_CHARS: usize = 127;

/// The five icon designs in `assets/icons/src/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IconKind {
    Working,
    Idle,
    Paused,
    Offline,
    Attention,
}

/// Everything the tray shows for one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub icon: IconKind,
    /// The first, disabled menu line.
    pub status: String,
    /// Mirrors the status line.
    pub tooltip: String,
    /// A second disabled line, "Managed by <organization>: …", when an admin manages settings.
    pub managed: Option<String>,
    /// The "Pause" submenu (1 hour, until tomorrow, until I resume).
    pub pause_enabled: bool,
    /// "Resume": the user's own pause holds.
    pub resume_enabled: bool,
    /// What the agent needs from the user, as a menu item: [`ENROLL`] or [`ALLOW`].
    pub prompt: Option<&'static str>,
    pub recent_enabled: bool,
    pub start_at_login_checked: bool,
    pub start_at_login_enabled: bool,
    pub open_logs_enabled: bool,
    pub quit_enabled: bool,
}

/// Maps a state to what the tray shows at `now`.
pub fn view(state: &TrayState, now: SystemTime) -> View {
    let a = &state.agent;
    let relay = a.relay.as_deref().unwrap_or("the relay");
    let today = links(a.links_today);
    let (icon, status) = match &a.phase {
        Phase::Starting => (IconKind::Idle, "Starting…".to_owned()),
        Phase::NotEnrolled => (
            IconKind::Attention,
            "Not enrolled — enroll this computer to start".to_owned(),
        ),
        Phase::Enrolling => (IconKind::Working, format!("Enrolling with {relay}…")),
        Phase::Connecting | Phase::Online | Phase::Retrying { .. } if !a.paused.is_empty() => (
            IconKind::Paused,
            match a.in_flight {
                0 => format!("Paused — {} · {today} today", a.paused.join(", ")),
                n => format!(
                    "Paused — {} · finishing {}",
                    a.paused.join(", "),
                    links(n as u64)
                ),
            },
        ),
        Phase::Connecting => (IconKind::Idle, format!("Connecting to {relay}…")),
        Phase::Online if a.in_flight > 0 => (
            IconKind::Working,
            format!("Resolving {} · {today} today", links(a.in_flight as u64)),
        ),
        Phase::Online => (
            IconKind::Idle,
            format!("Connected to {relay} · {today} today"),
        ),
        Phase::Retrying { retry_at } => (
            IconKind::Offline,
            match seconds_until(*retry_at, now) {
                0 => "Offline — retrying now".to_owned(),
                s => format!("Offline — retrying in {s} s"),
            },
        ),
        Phase::SignInRequired => (
            IconKind::Attention,
            "Sign-in required — enroll this computer again".to_owned(),
        ),
        Phase::ManagedCodeFailed => (
            IconKind::Attention,
            "Not enrolled — the code from your admin did not work".to_owned(),
        ),
        Phase::ConsentNeeded => (
            IconKind::Attention,
            "Waiting for your permission to start".to_owned(),
        ),
        Phase::Problem { summary } => (IconKind::Attention, format!("Needs attention: {summary}")),
        Phase::Quitting => (IconKind::Paused, finishing("Quitting", a.in_flight)),
    };
    // The user's pause acts on the running agent: no runner, nothing to pause.
    let running = matches!(
        a.phase,
        Phase::Connecting | Phase::Online | Phase::Retrying { .. }
    );
    let quitting = a.phase == Phase::Quitting;
    let prompt = match a.phase {
        Phase::NotEnrolled | Phase::SignInRequired | Phase::ManagedCodeFailed => Some(ENROLL),
        Phase::ConsentNeeded => Some(ALLOW),
        _ => None,
    };
    View {
        icon,
        tooltip: tooltip(&status),
        status,
        managed: managed_line(&a.managed, a.organization.as_deref()),
        pause_enabled: running && !a.user_paused,
        resume_enabled: running && a.user_paused,
        prompt,
        recent_enabled: !quitting,
        start_at_login_checked: state.start_at_login == Some(true),
        start_at_login_enabled: state.start_at_login.is_some()
            && !state.start_at_login_locked
            && !quitting,
        open_logs_enabled: !quitting,
        quit_enabled: !quitting,
    }
}

/// When the view will change with no new state (the retry countdown), if ever.
pub fn next_change(state: &TrayState, now: SystemTime) -> Option<SystemTime> {
    match state.agent.phase {
        Phase::Retrying { retry_at } if retry_at > now => {
            let left = retry_at.duration_since(now).unwrap_or_default();
            // The countdown shows whole seconds rounded up: the text changes on the next whole second.
            let frac = Duration::from_nanos((left.as_nanos() % 1_000_000_000) as u64);
            Some(
                now + if frac.is_zero() {
                    Duration::from_secs(1)
                } else {
                    frac
                },
            )
        }
        _ => None,
    }
}

/// "Link Peeler — <status>", cut to what every platform can show.
fn tooltip(status: &str) -> String {
    let full = format!("Link Peeler — {status}");
    if full.chars().count() <= TOOLTIP_MAX_CHARS {
        return full;
    }
    let mut cut: String = full.chars().take(TOOLTIP_MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// "Managed by Acme: relay, enrollment code" — in words a user knows
/// ("your organization" when the admin set no name).
fn managed_line(keys: &[&str], organization: Option<&str>) -> Option<String> {
    if keys.is_empty() {
        return None;
    }
    let names: Vec<String> = keys.iter().map(|k| k.replace('_', " ")).collect();
    Some(format!(
        "Managed by {}: {}",
        organization.unwrap_or("your organization"),
        names.join(", ")
    ))
}

fn links(n: u64) -> String {
    if n == 1 {
        "1 link".to_owned()
    } else {
        format!("{n} links")
    }
}

fn finishing(what: &str, in_flight: usize) -> String {
    if in_flight == 0 {
        format!("{what}…")
    } else {
        format!("{what} — finishing {}…", links(in_flight as u64))
    }
}

/// Whole seconds until `at`, rounded up (a countdown never shows 0 early).
fn seconds_until(at: SystemTime, now: SystemTime) -> u64 {
    match at.duration_since(now) {
        Ok(d) => d.as_secs() + u64::from(d.subsec_nanos() > 0),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tray::model::Snapshot;

    fn at(phase: Phase) -> TrayState {
        TrayState {
            agent: Snapshot {
                phase,
                relay: Some("relay.example.com".into()),
                links_today: 128,
                ..Snapshot::default()
            },
            start_at_login: Some(false),
            start_at_login_locked: false,
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn show(phase: Phase) -> View {
        view(&at(phase), now())
    }

    #[test]
    fn starting() {
        let v = show(Phase::Starting);
        assert_eq!(v.icon, IconKind::Idle);
        assert_eq!(v.status, "Starting…");
        assert!(!v.pause_enabled && !v.resume_enabled);
        assert_eq!(v.prompt, None);
        assert!(v.quit_enabled);
    }

    #[test]
    fn not_enrolled_needs_attention_and_offers_enrollment() {
        let v = show(Phase::NotEnrolled);
        assert_eq!(v.icon, IconKind::Attention);
        assert_eq!(v.status, "Not enrolled — enroll this computer to start");
        assert_eq!(v.prompt, Some(ENROLL));
        assert!(!v.pause_enabled);
    }

    #[test]
    fn enrolling() {
        let v = show(Phase::Enrolling);
        assert_eq!(v.icon, IconKind::Working);
        assert_eq!(v.status, "Enrolling with relay.example.com…");
        assert!(v.prompt.is_none() && !v.pause_enabled);
    }

    #[test]
    fn connecting() {
        let v = show(Phase::Connecting);
        assert_eq!(v.icon, IconKind::Idle);
        assert_eq!(v.status, "Connecting to relay.example.com…");
        assert!(v.pause_enabled && !v.resume_enabled);
    }

    #[test]
    fn online_and_idle() {
        let v = show(Phase::Online);
        assert_eq!(v.icon, IconKind::Idle);
        assert_eq!(v.status, "Connected to relay.example.com · 128 links today");
        assert_eq!(
            v.tooltip,
            "Link Peeler — Connected to relay.example.com · 128 links today"
        );
        assert!(v.pause_enabled && !v.resume_enabled);
        assert_eq!(v.prompt, None);
    }

    #[test]
    fn online_and_working() {
        let mut s = at(Phase::Online);
        s.agent.in_flight = 2;
        s.agent.links_today = 1;
        let v = view(&s, now());
        assert_eq!(v.icon, IconKind::Working);
        assert_eq!(v.status, "Resolving 2 links · 1 link today");
        s.agent.in_flight = 1;
        assert_eq!(view(&s, now()).status, "Resolving 1 link · 1 link today");
    }

    #[test]
    fn retrying_counts_down_in_whole_seconds() {
        let v = show(Phase::Retrying {
            retry_at: now() + Duration::from_millis(19_200),
        });
        assert_eq!(v.icon, IconKind::Offline);
        assert_eq!(v.status, "Offline — retrying in 20 s");
        assert_eq!(v.tooltip, "Link Peeler — Offline — retrying in 20 s");
        assert!(v.pause_enabled && !v.resume_enabled);
        let due = show(Phase::Retrying { retry_at: now() });
        assert_eq!(due.status, "Offline — retrying now");
        let past = show(Phase::Retrying {
            retry_at: now() - Duration::from_secs(3),
        });
        assert_eq!(past.status, "Offline — retrying now");
    }

    #[test]
    fn sign_in_required_needs_attention_and_offers_enrollment() {
        let v = show(Phase::SignInRequired);
        assert_eq!(v.icon, IconKind::Attention);
        assert_eq!(v.status, "Sign-in required — enroll this computer again");
        assert_eq!(v.prompt, Some(ENROLL));
        assert!(!v.pause_enabled);
    }

    #[test]
    fn a_failed_managed_code_offers_enrolling_by_hand() {
        let v = show(Phase::ManagedCodeFailed);
        assert_eq!(v.icon, IconKind::Attention);
        assert_eq!(
            v.status,
            "Not enrolled — the code from your admin did not work"
        );
        assert_eq!(v.prompt, Some(ENROLL));
        assert!(!v.pause_enabled);
    }

    #[test]
    fn paused_names_every_reason_and_offers_resume_only_for_the_users_own() {
        let mut s = at(Phase::Online);
        s.agent.paused = vec!["by you until 15:00".into()];
        s.agent.user_paused = true;
        let v = view(&s, now());
        assert_eq!(v.icon, IconKind::Paused);
        assert_eq!(v.status, "Paused — by you until 15:00 · 128 links today");
        assert!(v.resume_enabled && !v.pause_enabled);
        // Automatic pauses: the user can still add their own.
        s.agent.paused = vec!["metered network".into(), "on battery".into()];
        s.agent.user_paused = false;
        s.agent.in_flight = 2;
        let v = view(&s, now());
        assert_eq!(
            v.status,
            "Paused — metered network, on battery · finishing 2 links"
        );
        assert!(v.pause_enabled && !v.resume_enabled);
        // Paused while the relay is unreachable still says paused.
        s.agent.phase = Phase::Retrying { retry_at: now() };
        assert_eq!(view(&s, now()).icon, IconKind::Paused);
    }

    #[test]
    fn consent_needed_asks_before_any_work() {
        let v = show(Phase::ConsentNeeded);
        assert_eq!(v.icon, IconKind::Attention);
        assert_eq!(v.status, "Waiting for your permission to start");
        assert_eq!(v.prompt, Some(ALLOW));
        assert!(!v.pause_enabled && !v.resume_enabled && v.recent_enabled);
    }

    #[test]
    fn problem_needs_attention() {
        let v = show(Phase::Problem {
            summary: "the keychain is locked".into(),
        });
        assert_eq!(v.icon, IconKind::Attention);
        assert_eq!(v.status, "Needs attention: the keychain is locked");
        assert!(v.prompt.is_none() && !v.pause_enabled);
    }

    #[test]
    fn quitting_disables_everything_but_says_why() {
        let mut s = at(Phase::Quitting);
        s.agent.in_flight = 1;
        let v = view(&s, now());
        assert_eq!(v.icon, IconKind::Paused);
        assert_eq!(v.status, "Quitting — finishing 1 link…");
        assert!(!v.pause_enabled && !v.quit_enabled && !v.open_logs_enabled);
        assert!(!v.start_at_login_enabled && v.prompt.is_none() && !v.recent_enabled);
    }

    #[test]
    fn every_phase_has_a_distinct_status_and_a_fitting_tooltip() {
        let phases = [
            Phase::Starting,
            Phase::NotEnrolled,
            Phase::Enrolling,
            Phase::Connecting,
            Phase::Online,
            Phase::Retrying { retry_at: now() },
            Phase::SignInRequired,
            Phase::ManagedCodeFailed,
            Phase::ConsentNeeded,
            Phase::Problem {
                summary: "x".repeat(300),
            },
            Phase::Quitting,
        ];
        let views: Vec<View> = phases.into_iter().map(show).collect();
        for (i, v) in views.iter().enumerate() {
            assert!(v.tooltip.chars().count() <= TOOLTIP_MAX_CHARS, "{v:?}");
            assert!(v.tooltip.starts_with("Link Peeler — "));
            for w in &views[i + 1..] {
                assert_ne!(v.status, w.status);
            }
        }
        assert!(views[9].tooltip.ends_with('…'));
    }

    #[test]
    fn start_at_login_reflects_what_was_read_back() {
        let mut s = at(Phase::Online);
        s.start_at_login = Some(true);
        let v = view(&s, now());
        assert!(v.start_at_login_checked && v.start_at_login_enabled);
        s.start_at_login = None;
        let v = view(&s, now());
        assert!(!v.start_at_login_checked && !v.start_at_login_enabled);
        // An installer's machine-wide entry: checked, and not the user's to change.
        s.start_at_login = Some(true);
        s.start_at_login_locked = true;
        let v = view(&s, now());
        assert!(v.start_at_login_checked && !v.start_at_login_enabled);
    }

    #[test]
    fn managed_settings_get_their_own_line() {
        let mut s = at(Phase::Online);
        assert_eq!(view(&s, now()).managed, None);
        s.agent.managed = vec!["relay", "enrollment_code"];
        let v = view(&s, now());
        assert_eq!(
            v.managed.as_deref(),
            Some("Managed by your organization: relay, enrollment code")
        );
        s.agent.organization = Some("Acme".into());
        assert_eq!(
            view(&s, now()).managed.as_deref(),
            Some("Managed by Acme: relay, enrollment code")
        );
        // The status line and the tooltip stay about the agent's state.
        assert_eq!(v.status, "Connected to relay.example.com · 128 links today");
        s.agent.managed = vec!["capacity"];
        assert_eq!(
            view(&s, now()).managed.as_deref(),
            Some("Managed by Acme: capacity")
        );
    }

    #[test]
    fn unknown_relay_still_reads_well() {
        let mut s = at(Phase::Connecting);
        s.agent.relay = None;
        assert_eq!(view(&s, now()).status, "Connecting to the relay…");
    }

    #[test]
    fn only_the_countdown_schedules_a_redraw() {
        let s = at(Phase::Retrying {
            retry_at: now() + Duration::from_millis(2_500),
        });
        assert_eq!(
            next_change(&s, now()),
            Some(now() + Duration::from_millis(500))
        );
        let s = at(Phase::Retrying {
            retry_at: now() + Duration::from_secs(2),
        });
        assert_eq!(next_change(&s, now()), Some(now() + Duration::from_secs(1)));
        assert_eq!(next_change(&at(Phase::Online), now()), None);
        let s = at(Phase::Retrying { retry_at: now() });
        assert_eq!(next_change(&s, now()), None);
    }
}
