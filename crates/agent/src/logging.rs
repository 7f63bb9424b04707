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
//!
//! Private files: logs name the links this computer resolved, so the log
//! dir is 0700 and every log file 0600 on Unix, whatever the umask.
//! tracing-appender opens its files with the default mode (0644 under the
//! usual umask 022), so [`PrivateFiles`] re-tightens the directory after the
//! first write of every UTC day, which is when the appender rolls to a new
//! file. The file is never readable by others in between: its directory is
//! 0700.

use std::io::{self, IsTerminal, Write};
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
    crate::files::private_dir(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create the log directory {}: {e}", dir.display()))?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("agent")
        .filename_suffix("log")
        .max_log_files(KEPT_FILES)
        .build(&dir)
        .map_err(|e| anyhow::anyhow!("cannot open a log file in {}: {e}", dir.display()))?;
    // Today's file was just opened: make it (and older ones) private now.
    let not_private = crate::files::make_tree_private(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot make the log directory {} private: {e}",
            dir.display()
        )
    })?;
    let appender = PrivateFiles::new(appender, dir.clone(), utc_day);
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
    for problem in not_private {
        tracing::warn!(%problem, "a log file could not be made private");
    }
    Ok(LogGuard { _guard: guard, dir })
}

/// The current UTC day (days since the Unix epoch): tracing-appender rolls
/// its daily file at UTC midnight.
fn utc_day() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// A log writer that keeps the files in `dir` private: after the first write
/// of each new `day()` (the appender's roll-over), every file in `dir` is
/// set to 0600.
struct PrivateFiles<W> {
    inner: W,
    dir: PathBuf,
    day: fn() -> u64,
    checked: u64,
}

impl<W> PrivateFiles<W> {
    fn new(inner: W, dir: PathBuf, day: fn() -> u64) -> Self {
        PrivateFiles {
            inner,
            dir,
            day,
            checked: day(),
        }
    }

    fn tighten_after_roll_over(&mut self) {
        let today = (self.day)();
        if today != self.checked {
            self.checked = today;
            // Best effort: failing to chmod must not stop logging; the dir is 0700 anyway.
            let _ = crate::files::make_tree_private(&self.dir);
        }
    }
}

impl<W: Write> Write for PrivateFiles<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.tighten_after_roll_over();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    static DAY: AtomicU64 = AtomicU64::new(100);

    fn test_day() -> u64 {
        DAY.load(Ordering::SeqCst)
    }

    /// Stands in for the appender: opens `name` the way tracing-appender does
    /// (default mode) on every write.
    struct Opener {
        dir: PathBuf,
        name: &'static str,
    }

    impl Write for Opener {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.dir.join(self.name))?;
            std::fs::set_permissions(
                self.dir.join(self.name),
                std::fs::Permissions::from_mode(0o644),
            )?;
            f.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_file_opened_at_roll_over_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |n: &str| {
            std::fs::metadata(dir.path().join(n))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        let opener = Opener {
            dir: dir.path().to_path_buf(),
            name: "agent.day1.log",
        };
        let mut w = PrivateFiles::new(opener, dir.path().to_path_buf(), test_day);
        w.write_all(b"same day\n").unwrap();
        assert_eq!(
            mode("agent.day1.log"),
            0o644,
            "no roll-over yet: nothing to do"
        );
        DAY.fetch_add(1, Ordering::SeqCst);
        w.inner.name = "agent.day2.log";
        w.write_all(b"next day\n").unwrap();
        assert_eq!(mode("agent.day2.log"), 0o600);
        assert_eq!(mode("agent.day1.log"), 0o600);
    }
}
