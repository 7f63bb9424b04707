//! "Open logs folder" and "Recent activity…": hand a directory to the
//! desktop's file manager, or a page to the browser.
//!
//! Each platform has one blessed opener (`xdg-open`, `open`, `explorer`);
//! calling it directly is a few lines and adds no dependency. The child is
//! reaped on a short-lived thread so no zombie is left behind.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

#[cfg(target_os = "windows")]
const OPENER: &str = "explorer";
#[cfg(target_os = "macos")]
const OPENER: &str = "open";
#[cfg(not(any(target_os = "windows", target_os = "macos")))]
const OPENER: &str = "xdg-open";

/// Opens `path` with the desktop's handler (a folder in the file manager,
/// an `.html` file in the browser).
pub fn path(path: &Path) -> io::Result<()> {
    let mut child = Command::new(OPENER)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {OPENER}: {e}")))?;
    std::thread::Builder::new()
        .name("open-folder".into())
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(())
}
