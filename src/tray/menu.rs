//! The tray menu: builds the widgets once and copies each [`View`] onto them.
//!
//! All decisions live in the pure [`view`](super::view) function; this file
//! only sets texts, enabled flags and the check mark, and inserts or removes
//! the "Managed by …" line and the prompt ("Enroll this computer…" or
//! "Allow Link Peeler to start…") — menus cannot hide an item on every
//! platform. Pause is a submenu of durations; Resume sits beside it, enabled
//! while the user's own pause holds.
//! Widgets are updated in place, so an open menu changes live.

use tray_icon::menu::{
    CheckMenuItem, IsMenuItem, Menu, MenuEvent, MenuId, MenuItem, PredefinedMenuItem, Submenu,
};

use super::view::{self, View};

/// What a click asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PauseForAnHour,
    PauseUntilTomorrow,
    PauseUntilResumed,
    Resume,
    /// The prompt item: enroll, or allow the agent to start.
    Prompt,
    RecentActivity,
    OpenLogs,
    ToggleStartAtLogin,
    About,
    Quit,
}

const IDS: [(&str, Action); 10] = [
    ("pause-hour", Action::PauseForAnHour),
    ("pause-tomorrow", Action::PauseUntilTomorrow),
    ("pause-until-resumed", Action::PauseUntilResumed),
    ("resume", Action::Resume),
    ("prompt", Action::Prompt),
    ("recent", Action::RecentActivity),
    ("logs", Action::OpenLogs),
    ("start-at-login", Action::ToggleStartAtLogin),
    ("about", Action::About),
    ("quit", Action::Quit),
];

/// Where the "Managed by your organization" line goes: right under the status line.
const MANAGED_POSITION: usize = 1;
/// Where the prompt goes: after status, separator, Pause, Resume
/// (one further down while the managed line is shown).
const PROMPT_POSITION: usize = 4;

/// The menu and handles to its items.
pub struct TrayMenu {
    pub menu: Menu,
    status: MenuItem,
    managed: MenuItem,
    pause: Submenu,
    resume: MenuItem,
    prompt: MenuItem,
    recent: MenuItem,
    logs: MenuItem,
    start_at_login: CheckMenuItem,
    about: MenuItem,
    quit: MenuItem,
    managed_shown: bool,
    prompt_shown: bool,
}

impl TrayMenu {
    /// Builds the menu for `first`.
    pub fn new(first: &View) -> tray_icon::menu::Result<TrayMenu> {
        let status = MenuItem::with_id("status", &first.status, false, None);
        let managed = MenuItem::with_id("managed", "", false, None);
        let pause = Submenu::with_id_and_items(
            "pause",
            view::PAUSE,
            first.pause_enabled,
            &[
                &MenuItem::with_id("pause-hour", view::PAUSE_HOUR, true, None),
                &MenuItem::with_id("pause-tomorrow", view::PAUSE_TOMORROW, true, None),
                &MenuItem::with_id("pause-until-resumed", view::PAUSE_UNTIL_RESUMED, true, None),
            ],
        )?;
        let resume = MenuItem::with_id("resume", view::RESUME, first.resume_enabled, None);
        let prompt = MenuItem::with_id("prompt", view::ENROLL, true, None);
        let recent = MenuItem::with_id("recent", view::RECENT, first.recent_enabled, None);
        let logs = MenuItem::with_id("logs", view::OPEN_LOGS, true, None);
        let start_at_login = CheckMenuItem::with_id(
            "start-at-login",
            view::START_AT_LOGIN,
            first.start_at_login_enabled,
            first.start_at_login_checked,
            None,
        );
        let about = MenuItem::with_id("about", view::ABOUT, true, None);
        let quit = MenuItem::with_id("quit", view::QUIT, true, None);
        let items: [&dyn IsMenuItem; 12] = [
            &status,
            &PredefinedMenuItem::separator(),
            &pause,
            &resume,
            &PredefinedMenuItem::separator(),
            &recent,
            &logs,
            &start_at_login,
            &PredefinedMenuItem::separator(),
            &about,
            &PredefinedMenuItem::separator(),
            &quit,
        ];
        let menu = Menu::with_items(&items)?;
        let mut m = TrayMenu {
            menu,
            status,
            managed,
            pause,
            resume,
            prompt,
            recent,
            logs,
            start_at_login,
            about,
            quit,
            managed_shown: false,
            prompt_shown: false,
        };
        m.apply(first);
        Ok(m)
    }

    /// Copies `v` onto the widgets.
    pub fn apply(&mut self, v: &View) {
        set_text(&self.status, &v.status);
        if let Some(text) = &v.managed {
            set_text(&self.managed, text);
        }
        let managed_shown = self.managed_shown;
        show(
            &self.menu,
            &self.managed,
            MANAGED_POSITION,
            v.managed.is_some(),
            &mut self.managed_shown,
        );
        if self.pause.is_enabled() != v.pause_enabled {
            self.pause.set_enabled(v.pause_enabled);
        }
        self.resume.set_enabled(v.resume_enabled);
        if managed_shown != self.managed_shown {
            // The prompt's position moved with the managed line: re-seat it.
            show(&self.menu, &self.prompt, 0, false, &mut self.prompt_shown);
        }
        if let Some(text) = v.prompt {
            set_text(&self.prompt, text);
        }
        let prompt_at = PROMPT_POSITION + usize::from(self.managed_shown);
        show(
            &self.menu,
            &self.prompt,
            prompt_at,
            v.prompt.is_some(),
            &mut self.prompt_shown,
        );
        self.recent.set_enabled(v.recent_enabled);
        self.logs.set_enabled(v.open_logs_enabled);
        self.start_at_login.set_enabled(v.start_at_login_enabled);
        if self.start_at_login.is_checked() != v.start_at_login_checked {
            self.start_at_login.set_checked(v.start_at_login_checked);
        }
        self.about.set_enabled(true);
        self.quit.set_enabled(v.quit_enabled);
    }

    /// The action behind a menu event, if it is one of ours.
    pub fn action(event: &MenuEvent) -> Option<Action> {
        action_for(&event.id)
    }
}

/// Inserts `item` at `position` or removes it, so that it is shown exactly when `wanted`.
fn show(menu: &Menu, item: &MenuItem, position: usize, wanted: bool, shown: &mut bool) {
    if wanted == *shown {
        return;
    }
    let done = if wanted {
        menu.insert(item, position)
    } else {
        menu.remove(item)
    };
    match done {
        Ok(()) => *shown = wanted,
        Err(e) => tracing::error!(error = %e, item = item.text(), "cannot update the menu"),
    }
}

fn action_for(id: &MenuId) -> Option<Action> {
    IDS.iter().find(|(k, _)| id == *k).map(|(_, a)| *a)
}

/// Setting a label re-lays-out the menu on some platforms: skip no-op updates.
fn set_text(item: &MenuItem, text: &str) {
    if item.text() != text {
        item.set_text(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clickable_id_maps_to_one_action() {
        for (id, action) in IDS {
            assert_eq!(action_for(&MenuId::new(id)), Some(action));
        }
        assert_eq!(action_for(&MenuId::new("status")), None);
    }
}
