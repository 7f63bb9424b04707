//! "Start at login", per platform, always read back from the system so the
//! check mark shows what will really happen at the next login.
//!
//! - Windows: `HKCU\Software\Microsoft\Windows\CurrentVersion\Run`, via the
//!   `auto-launch` crate, whose read-back also honours the Task Manager
//!   "Startup apps" switch.
//! - macOS: a LaunchAgent plist in `~/Library/LaunchAgents`, via `auto-launch`.
//! - Linux and other freedesktop systems: an XDG autostart entry written
//!   here, not by `auto-launch`: its Linux backend ignores
//!   `$XDG_CONFIG_HOME`, does not quote the `Exec` path, and reads a
//!   disabled entry (`Hidden=true`, GNOME's `X-GNOME-Autostart-enabled=false`)
//!   as enabled. Those are the details that make a check mark lie.

use std::io;

/// The name the entry is registered under.
pub const APP_NAME: &str = "link-peeler";

/// Whether the app starts at login.
pub fn is_enabled() -> io::Result<bool> {
    imp::is_enabled()
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

    pub fn is_enabled() -> io::Result<bool> {
        entry()?.is_enabled().map_err(io::Error::other)
    }

    pub fn set(enabled: bool) -> io::Result<()> {
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

    pub fn is_enabled() -> io::Result<bool> {
        match std::fs::read_to_string(desktop_file()?) {
            Ok(text) => Ok(entry_is_enabled(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn set(enabled: bool) -> io::Result<()> {
        let file = desktop_file()?;
        if enabled {
            let dir = file.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::fs::write(tmp.path(), desktop_entry(&super::program()?))?;
            tmp.persist(&file).map_err(|e| e.error)?;
            Ok(())
        } else {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
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
