//! The desktop agent binary. All logic lives in the library (`link_peeler::cli`).
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
    link_peeler::cli::run(link_peeler::cli::Cli::parse())
}
