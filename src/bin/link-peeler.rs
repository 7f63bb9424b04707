//! The desktop agent binary. All logic lives in the library (`link_peeler::cli`).
//!
//! Linux: this binary links no GUI library. Without a subcommand (the menu
//! entry, XDG autostart) it hands over to `link-peeler-tray`, installed
//! beside it, which is the same command line with the tray linked in. So
//! `resolve`, `status` and `run --headless` start as fast as any small CLI.
//! Windows and macOS keep one binary with the tray in process (the MSI and
//! the .app ship one executable; their GUI frameworks are system libraries).
//!
//! Windows: release builds with the tray use the GUI subsystem, so starting
//! the tray app from the Start menu or at login opens no console window. The
//! command-line subcommands stay usable from a terminal: when started with
//! arguments, the process attaches to its parent's console (if any) before
//! printing. Output redirected to a file or pipe works as usual because
//! inherited handles are kept. The one wart of this common approach: cmd.exe
//! does not wait for GUI-subsystem programs, so its prompt may print before
//! the output; scripts should use `start /wait` or PowerShell, which waits.
#![cfg_attr(
    all(windows, feature = "tray", not(debug_assertions)),
    windows_subsystem = "windows"
)]

use clap::Parser;

/// Counts the bytes each thread holds, so that the resolver's script sandbox
/// can enforce its per-page memory budget (otherwise the system allocator).
#[global_allocator]
static ALLOC: link_peeler_resolver::sandbox::MeteredAlloc =
    link_peeler_resolver::sandbox::MeteredAlloc;

fn main() -> std::process::ExitCode {
    #[cfg(all(windows, feature = "tray", not(debug_assertions)))]
    if std::env::args_os().len() > 1 {
        // SAFETY: plain Win32 call without pointers; failure (no parent console) is harmless.
        unsafe {
            windows_sys::Win32::System::Console::AttachConsole(
                windows_sys::Win32::System::Console::ATTACH_PARENT_PROCESS,
            );
        }
    }
    #[cfg(any(windows, target_os = "macos"))]
    let tray = link_peeler::cli::tray_in_process;
    #[cfg(not(any(windows, target_os = "macos")))]
    let tray = link_peeler::cli::tray_in_companion;
    link_peeler::cli::run(link_peeler::cli::Cli::parse(), tray)
}
