//! The tray menu: builds the widgets once and copies each [`View`] onto them.
//!
//! All decisions live in the pure [`view`](super::view) function; this file
//! only sets texts, enabled flags and the check mark, and inserts or removes
//! the "Managed by your organization" line and "Enroll this computer…"
//! (menus cannot hide an item on every platform).
//! Widgets are updated in place, so an open menu changes live.

use tray_icon::menu::{
    CheckMenuItem, IsMenuItem, Menu, MenuEvent, MenuId, MenuItem, PredefinedMenuItem,
};

use super::view::{self, View};

/// What a click asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PauseOrResume,
    Enroll,
    OpenLogs,
    ToggleStartAtLogin,
    About,
    Quit,
}

const IDS: [(&str, Action); 6] = [
    ("pause", Action::PauseOrResume),
    ("enroll", Action::Enroll),
    ("logs", Action::OpenLogs),
    ("start-at-login", Action::ToggleStartAtLogin),
    ("about", Action::About),
    ("quit", Action::Quit),
];

/// Where the "Managed by your organization" line goes: right under the status line.
const MANAGED_POSITION: usize = 1;
/// Where "Enroll this computer…" goes: after status, separator, Pause
/// (one further down while the managed line is shown).
const ENROLL_POSITION: usize = 3;

/// The menu and handles to its items.
pub struct TrayMenu {
    pub menu: Menu,
    status: MenuItem,
    managed: MenuItem,
    pause: MenuItem,
    enroll: MenuItem,
    logs: MenuItem,
    start_at_login: CheckMenuItem,
    about: MenuItem,
    quit: MenuItem,
    managed_shown: bool,
    enroll_shown: bool,
}

impl TrayMenu {
    /// Builds the menu for `first`.
    pub fn new(first: &View) -> tray_icon::menu::Result<TrayMenu> {
        let status = MenuItem::with_id("status", &first.status, false, None);
        let managed = MenuItem::with_id("managed", "", false, None);
        let pause = MenuItem::with_id("pause", first.pause.label(), first.pause_enabled, None);
        let enroll = MenuItem::with_id("enroll", view::ENROLL, true, None);
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
        let items: [&dyn IsMenuItem; 10] = [
            &status,
            &PredefinedMenuItem::separator(),
            &pause,
            &PredefinedMenuItem::separator(),
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
            enroll,
            logs,
            start_at_login,
            about,
            quit,
            managed_shown: false,
            enroll_shown: false,
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
        set_text(&self.pause, v.pause.label());
        self.pause.set_enabled(v.pause_enabled);
        if managed_shown != self.managed_shown {
            // The enroll item's position moved with the managed line: re-seat it.
            show(&self.menu, &self.enroll, 0, false, &mut self.enroll_shown);
        }
        let enroll_at = ENROLL_POSITION + usize::from(self.managed_shown);
        show(
            &self.menu,
            &self.enroll,
            enroll_at,
            v.enroll,
            &mut self.enroll_shown,
        );
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
