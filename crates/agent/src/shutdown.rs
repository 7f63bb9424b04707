//! Signals: the first SIGTERM/Ctrl-C drains, the second exits at once.
//!
//! Why two stages: an agent stopped by a service manager or a laptop lid
//! should not throw away resolutions it is halfway through, so the first
//! signal only stops polling and lets in-flight work finish (the runner caps
//! that at 30 s) and post or park its results. An operator who really wants
//! it gone presses Ctrl-C again and gets an immediate exit; the outbox and
//! lease expiry make that safe too.

use tokio_util::sync::CancellationToken;

/// Exit code after a second signal (128 + SIGINT, the shell convention).
pub const FORCED_EXIT_CODE: i32 = 130;

/// Listens for SIGINT/SIGTERM (Ctrl-C/Ctrl-Break on Windows). The first cancels `stop`;
/// the second ends the process. Handlers are registered before this returns.
pub fn install(stop: CancellationToken) -> std::io::Result<()> {
    let mut signals = Signals::new()?;
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!(
            "stopping: no new tasks; in-flight resolutions get up to 30 s (signal again to exit at once)"
        );
        stop.cancel();
        signals.recv().await;
        tracing::warn!("second signal: exiting at once; unsent results stay in the outbox");
        std::process::exit(FORCED_EXIT_CODE);
    });
    Ok(())
}

#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

#[cfg(windows)]
struct Signals {
    c: tokio::signal::windows::CtrlC,
    brk: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
}

#[cfg(windows)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
        Ok(Signals {
            c: ctrl_c()?,
            brk: ctrl_break()?,
            close: ctrl_close()?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.c.recv() => {}
            _ = self.brk.recv() => {}
            _ = self.close.recv() => {}
        }
    }
}
