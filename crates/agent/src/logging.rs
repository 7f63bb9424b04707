//! Agent logs: daily-rolling files in the data dir (14 kept) plus stderr.
//!
//! Why files: the agent runs unattended for weeks; when an admin asks "what
//! happened on Tuesday", the answer is `<data>/logs/agent.YYYY-MM-DD.log`,
//! which the tray can open. Why stderr too in headless mode: under systemd,
//! a container runtime or a terminal, stderr is where operators look first.
//!
//! Nothing secret reaches a log: the device secret lives only inside
//! `Signer` and `DeviceCredentials`, whose `Debug` output redacts it, and no
//! log line formats request headers or bodies. `LINK_PEELER_LOG` takes an
//! `EnvFilter` directive (default `info` for the agent, `warn` for libraries,
//! so a chatty D-Bus or HTTP crate cannot leak protocol dumps by default).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Environment variable with an `EnvFilter` directive for the agent's logs.
pub const ENV_LOG: &str = "LINK_PEELER_LOG";
/// Daily files kept.
pub const KEPT_FILES: usize = 14;
const DEFAULT_FILTER: &str = "warn,link_peeler=info";

/// Keeps the background log writer alive; drop it last to flush.
#[must_use = "dropping the guard stops file logging"]
pub struct LogGuard {
    _guard: WorkerGuard,
    pub dir: PathBuf,
}

/// The log directory of a data dir.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// Installs the global subscriber: rolling files in `<data_dir>/logs`, plus stderr when `stderr`.
pub fn init(data_dir: &Path, stderr: bool) -> anyhow::Result<LogGuard> {
    let dir = log_dir(data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create the log directory {}: {e}", dir.display()))?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("agent")
        .filename_suffix("log")
        .max_log_files(KEPT_FILES)
        .build(&dir)
        .map_err(|e| anyhow::anyhow!("cannot open a log file in {}: {e}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter =
        EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let file_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .with_writer(writer);
    let stderr_layer = stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stderr_layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(LogGuard { _guard: guard, dir })
}

/// Stderr-only logging for short commands (`status`, `doctor`, `demo`); quiet by default.
pub fn init_stderr(default: &str) {
    let filter = EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
