//! "Start at login", per platform, always read back from the system so the
//! check mark shows what will really happen at the next login — including the
//! machine-wide entry an installer made for every user.
//!
//! - Windows: `HKCU\Software\Microsoft\Windows\CurrentVersion\Run`, via the
//!   `auto-launch` crate, whose read-back also honours the Task Manager
//!   "Startup apps" switch. When the MSI's machine-wide `HKLM\…\Run` value
//!   "Link Peeler" exists, the app starts for every user: the item shows
//!   checked and locked (only an administrator can change it), and no second,
//!   per-user entry is ever added (two entries would start two copies).
//! - macOS: a LaunchAgent plist in `~/Library/LaunchAgents`, via `auto-launch`;
//!   the pkg's `/Library/LaunchAgents/com.linkpeeler.agent.plist` locks it on
//!   the same way.
//! - Linux and other freedesktop systems: an XDG autostart entry written
//!   here, not by `auto-launch`: its Linux backend ignores
//!   `$XDG_CONFIG_HOME`, does not quote the `Exec` path, and reads a
//!   disabled entry (`Hidden=true`, GNOME's `X-GNOME-Autostart-enabled=false`)
//!   as enabled. Those are the details that make a check mark lie. The .deb's
//!   system-wide `/etc/xdg/autostart/link-peeler.desktop` (any
//!   `$XDG_CONFIG_DIRS`) can be overridden per user, as the XDG autostart
//!   spec says: unchecking writes a `Hidden=true` entry of the same name in
//!   the user's autostart folder, checking again removes that override.

use std::io;

/// The name the entry is registered under.
pub const APP_NAME: &str = "link-peeler";

/// Whether the app starts at login.
pub fn is_enabled() -> io::Result<bool> {
    imp::is_enabled()
}

/// True when an installer turned start-at-login on for every user in a way
/// only an administrator can change (Windows, macOS): the item is locked.
pub fn locked_by_admin() -> bool {
    imp::locked_by_admin()
}

/// Turns start-at-login on or off, then reads it back.
pub fn set(enabled: bool) -> io::Result<bool> {
    imp::set(enabled)?;
    is_enabled()
}

/// The program to start: the AppImage when running from one (its mount
/// point changes at every start), else this executable.
fn program() -> io::Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("APPIMAGE").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    std::env::current_exe()
}

#[cfg(any(target_os = "windows", target_os = "macos"))]
mod imp {
    use std::io;

    use auto_launch::{AutoLaunch, AutoLaunchBuilder};

    fn entry() -> io::Result<AutoLaunch> {
        let path = super::program()?;
        let mut b = AutoLaunchBuilder::new();
        b.set_app_name(super::APP_NAME)
            .set_app_path(&path.to_string_lossy());
        #[cfg(target_os = "macos")]
        b.set_macos_launch_mode(auto_launch::MacOSLaunchMode::LaunchAgent);
        #[cfg(target_os = "windows")]
        b.set_windows_enable_mode(auto_launch::WindowsEnableMode::CurrentUser);
        b.build().map_err(io::Error::other)
    }

    /// The installer's machine-wide entry: the MSI's `HKLM\…\Run` value.
    #[cfg(target_os = "windows")]
    pub fn locked_by_admin() -> bool {
        const RUN: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Run";
        link_peeler_agent::managed::read_machine_key(RUN)
            .is_ok_and(|values| values.keys().any(|k| k.eq_ignore_ascii_case("Link Peeler")))
    }

    /// The installer's machine-wide entry: the pkg's LaunchAgent for every user.
    #[cfg(target_os = "macos")]
    pub fn locked_by_admin() -> bool {
        std::path::Path::new("/Library/LaunchAgents/com.linkpeeler.agent.plist").exists()
    }

    pub fn is_enabled() -> io::Result<bool> {
        if locked_by_admin() {
            return Ok(true);
        }
        entry()?.is_enabled().map_err(io::Error::other)
    }

    pub fn set(enabled: bool) -> io::Result<()> {
        if locked_by_admin() {
            return Err(io::Error::other(
                "Link Peeler starts at login for every user of this computer; only an administrator can change that",
            ));
        }
        let e = entry()?;
        if enabled { e.enable() } else { e.disable() }.map_err(io::Error::other)
    }
}

#[cfg(not(any(target_os = "windows", target_os = "macos")))]
mod imp {
    use std::io;
    use std::path::{Path, PathBuf};

    /// `$XDG_CONFIG_HOME/autostart/link-peeler.desktop` (default `~/.config`).
    pub fn desktop_file() -> io::Result<PathBuf> {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no home directory"))?;
        Ok(config
            .join("autostart")
            .join(format!("{}.desktop", super::APP_NAME)))
    }

    /// The first `<dir>/autostart/link-peeler.desktop` of `$XDG_CONFIG_DIRS`
    /// (default `/etc/xdg`): the entry the .deb installs for every user.
    pub fn system_file() -> Option<PathBuf> {
        let dirs = std::env::var_os("XDG_CONFIG_DIRS")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "/etc/xdg".into());
        std::env::split_paths(&dirs)
            .filter(|d| d.is_absolute())
            .map(|d| {
                d.join("autostart")
                    .join(format!("{}.desktop", super::APP_NAME))
            })
            .find(|f| f.is_file())
    }

    /// On Linux every user can override the system-wide entry: nothing is locked.
    pub fn locked_by_admin() -> bool {
        false
    }

    pub fn is_enabled() -> io::Result<bool> {
        is_enabled_at(&desktop_file()?, system_file().as_deref())
    }

    pub fn set(enabled: bool) -> io::Result<()> {
        set_at(
            &desktop_file()?,
            system_file().as_deref(),
            enabled,
            &super::program()?,
        )
    }

    /// The user's entry wins over the system's (same file name), as desktops do.
    pub fn is_enabled_at(user: &Path, system: Option<&Path>) -> io::Result<bool> {
        for file in std::iter::once(user).chain(system) {
            match std::fs::read_to_string(file) {
                Ok(text) => return Ok(entry_is_enabled(&text)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Makes the next login start the app (or not) with the fewest files:
    /// with an enabled system entry, "on" is no user file and "off" is a
    /// `Hidden=true` override; without one, "on" is a user entry and "off"
    /// is none.
    pub fn set_at(
        user: &Path,
        system: Option<&Path>,
        enabled: bool,
        program: &Path,
    ) -> io::Result<()> {
        let system_on = match system {
            Some(s) => is_enabled_at(s, None)?,
            None => false,
        };
        let wanted = match (enabled, system_on) {
            (true, true) | (false, false) => None,
            (true, false) => Some(desktop_entry(program)),
            (false, true) => Some(hidden_entry()),
        };
        match wanted {
            Some(text) => link_peeler_agent::files::write_atomic(user, text.as_bytes()),
            None => match std::fs::remove_file(user) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// A per-user override that switches the system-wide entry off.
    pub fn hidden_entry() -> String {
        "[Desktop Entry]\n\
         Type=Application\n\
         Name=Link Peeler\n\
         Hidden=true\n\
         X-GNOME-Autostart-enabled=false\n"
            .to_owned()
    }

    /// A desktop entry that starts the tray app (no arguments).
    pub fn desktop_entry(program: &Path) -> String {
        format!(
            "[Desktop Entry]\n\
             Type=Application\n\
             Name=Link Peeler\n\
             Comment=Resolve tracking links for your team's relay\n\
             Exec={}\n\
             Terminal=false\n\
             StartupNotify=false\n\
             X-GNOME-Autostart-enabled=true\n",
            exec_quote(&program.to_string_lossy())
        )
    }

    /// Quotes a path for `Exec=` per the Desktop Entry spec: inside double
    /// quotes, `"`, `` ` ``, `$` and `\` are escaped with a backslash, and
    /// the key's own `\` escaping doubles every backslash again; `%` is `%%`.
    pub fn exec_quote(path: &str) -> String {
        let mut quoted = String::from("\"");
        for c in path.chars() {
            match c {
                '"' | '`' | '$' => {
                    quoted.push_str("\\\\");
                    quoted.push(c);
                }
                '\\' => quoted.push_str("\\\\\\\\"),
                '%' => quoted.push_str("%%"),
                c => quoted.push(c),
            }
        }
        quoted.push('"');
        quoted
    }

    /// False when the entry is hidden or switched off by the desktop's settings app.
    pub fn entry_is_enabled(text: &str) -> bool {
        let mut in_main = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_main = line == "[Desktop Entry]";
                continue;
            }
            if !in_main {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let off = v.trim().eq_ignore_ascii_case("false");
            match k.trim() {
                "Hidden" if v.trim().eq_ignore_ascii_case("true") => return false,
                "X-GNOME-Autostart-enabled" if off => return false,
                _ => {}
            }
        }
        true
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn exec_paths_are_quoted_per_the_desktop_entry_spec() {
            assert_eq!(
                exec_quote("/usr/bin/link-peeler"),
                "\"/usr/bin/link-peeler\""
            );
            assert_eq!(
                exec_quote("/opt/My Apps/lp$1 100%"),
                "\"/opt/My Apps/lp\\\\$1 100%%\""
            );
            let entry = desktop_entry(Path::new("/opt/lp"));
            assert!(entry.contains("Exec=\"/opt/lp\"\n"));
            assert!(entry_is_enabled(&entry));
        }

        #[test]
        fn the_user_entry_overrides_the_system_entry_both_ways() {
            let dir = tempfile::tempdir().unwrap();
            let user = dir.path().join("home/autostart/link-peeler.desktop");
            let system = dir.path().join("etc/xdg/autostart/link-peeler.desktop");
            let program = Path::new("/usr/bin/link-peeler");
            // No entry anywhere: off; on writes a user entry; off removes it.
            assert!(!is_enabled_at(&user, None).unwrap());
            set_at(&user, None, true, program).unwrap();
            assert!(is_enabled_at(&user, None).unwrap());
            set_at(&user, None, false, program).unwrap();
            assert!(!user.exists());
            // The .deb's system entry: on with no user file at all.
            std::fs::create_dir_all(system.parent().unwrap()).unwrap();
            std::fs::write(&system, desktop_entry(program)).unwrap();
            assert!(is_enabled_at(&user, Some(&system)).unwrap());
            // Off is a Hidden=true override of the same name …
            set_at(&user, Some(&system), false, program).unwrap();
            assert!(!is_enabled_at(&user, Some(&system)).unwrap());
            assert!(
                std::fs::read_to_string(&user)
                    .unwrap()
                    .contains("Hidden=true")
            );
            // … and on again removes the override instead of adding a second entry.
            set_at(&user, Some(&system), true, program).unwrap();
            assert!(!user.exists());
            assert!(is_enabled_at(&user, Some(&system)).unwrap());
            // A system entry the admin disabled: on needs a user entry.
            std::fs::write(&system, hidden_entry()).unwrap();
            assert!(!is_enabled_at(&user, Some(&system)).unwrap());
            set_at(&user, Some(&system), true, program).unwrap();
            assert!(is_enabled_at(&user, Some(&system)).unwrap());
            assert!(entry_is_enabled(&std::fs::read_to_string(&user).unwrap()));
        }

        #[test]
        fn disabled_entries_read_as_off() {
            assert!(!entry_is_enabled("[Desktop Entry]\nHidden=true\n"));
            assert!(!entry_is_enabled(
                "[Desktop Entry]\nX-GNOME-Autostart-enabled=false\n"
            ));
            assert!(entry_is_enabled(
                "[Desktop Entry]\nExec=x\n[Desktop Action a]\nHidden=true\n"
            ));
        }
    }
}
