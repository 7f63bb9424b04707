//! `link-peeler run --headless`: the agent without a tray icon, for servers,
//! containers and service managers.
//!
//! Start-up order matters: settings first (a bad config fails before
//! anything else), then the per-user lock (a second instance says so and
//! exits without touching logs or the outbox), then logging, credentials and
//! the relay URL; only then the runtime and the loop.
//!
//! Exit codes: 0 stopped cleanly, 1 could not start, 2 usage, 3 sign-in
//! required (the relay revoked or does not know this device), 130 second signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use link_peeler_agent::config::{self, Overrides};
use link_peeler_agent::runner::Exit;
use link_peeler_agent::{assembly, credentials, lock, logging, managed, shutdown};

/// Hidden, test-only: pretend the local clock is off by this many seconds.
pub const ENV_TEST_CLOCK_SKEW: &str = "LINK_PEELER_TEST_CLOCK_SKEW_SECS";

/// Exit code when the relay no longer accepts this device.
pub const EXIT_SIGN_IN_REQUIRED: u8 = 3;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run without the tray icon (servers, containers, service managers)
    #[arg(long)]
    headless: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

/// Flags that override config.toml (shared by run, status and doctor).
#[derive(Debug, Args, Clone, Default)]
pub struct SettingsArgs {
    /// Relay base URL (https://…; http:// only for a loopback relay)
    #[arg(long, value_name = "URL")]
    pub relay: Option<String>,
    /// Resolutions run at once (1–64, default 4)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub capacity: Option<u32>,
    /// Network the resolver may fetch despite the SSRF rules, e.g. 127.0.0.0/8 (repeatable)
    #[arg(long = "allow-network", value_name = "CIDR")]
    pub allow_networks: Vec<IpNet>,
    /// User-Agent the resolver sends
    #[arg(long, value_name = "UA")]
    pub user_agent: Option<String>,
    /// PEM file of CA certificates trusted for the relay besides the OS trust store
    #[arg(long, value_name = "PATH")]
    pub relay_ca_file: Option<PathBuf>,
    /// config.toml to use instead of the one in the user's config dir
    #[arg(long, value_name = "PATH", env = config::ENV_CONFIG)]
    pub config: Option<PathBuf>,
}

/// The flags `status` and `doctor` take: which config, and which relay.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// Relay base URL to check instead of the configured one
    #[arg(long, value_name = "URL")]
    pub relay: Option<String>,
    /// PEM file of CA certificates trusted for the relay besides the OS trust store
    #[arg(long, value_name = "PATH")]
    pub relay_ca_file: Option<PathBuf>,
    /// config.toml to use instead of the one in the user's config dir
    #[arg(long, value_name = "PATH", env = config::ENV_CONFIG)]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            relay: self.relay.clone(),
            relay_ca_file: self.relay_ca_file.clone(),
            ..Default::default()
        }
    }
}

impl SettingsArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            relay: self.relay.clone(),
            capacity: self.capacity,
            allow_networks: self.allow_networks.clone(),
            user_agent: self.user_agent.clone(),
            relay_ca_file: self.relay_ca_file.clone(),
            ..Default::default()
        }
    }
}

pub fn run(args: RunArgs, tray: super::TrayStart) -> ExitCode {
    if !args.headless {
        return tray(args.settings);
    }
    match start(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("link-peeler: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Starts the tray app in this process (`link-peeler-tray`; `link-peeler` on
/// Windows and macOS).
#[cfg(feature = "tray")]
pub fn tray_in_process(settings: SettingsArgs) -> ExitCode {
    crate::tray::run(crate::tray::Options {
        overrides: settings.overrides(),
        config_file: settings.config,
    })
}

/// This build has no tray (`--no-default-features`).
#[cfg(not(feature = "tray"))]
pub fn tray_in_process(_settings: SettingsArgs) -> ExitCode {
    no_tray("this build has no tray app (built without the `tray` feature)")
}

/// The name of the tray app's binary, installed beside `link-peeler`.
pub const TRAY_BINARY: &str = "link-peeler-tray";

/// Hands the tray to `link-peeler-tray` beside this binary, with this
/// process's own arguments (Linux). The command-line binary then links no GUI
/// library: on Linux GTK brings ~65 shared libraries, which cost every
/// `resolve`, `status` or `run --headless` several milliseconds to load.
/// On Unix the process is replaced (same PID, same signals, same lock).
pub fn tray_in_companion(_settings: SettingsArgs) -> ExitCode {
    let name = format!("{TRAY_BINARY}{}", std::env::consts::EXE_SUFFIX);
    let tray = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(&name),
        Err(e) => return no_tray(&format!("cannot find this program's own path ({e})")),
    };
    if !tray.is_file() {
        return no_tray(&format!(
            "this installation has no tray app ({} is missing)",
            tray.display()
        ));
    }
    let mut command = std::process::Command::new(&tray);
    command.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = command.exec();
        eprintln!("link-peeler: cannot start {}: {e}", tray.display());
        ExitCode::from(1)
    }
    #[cfg(not(unix))]
    match command.status() {
        Ok(status) => ExitCode::from(
            status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1),
        ),
        Err(e) => {
            eprintln!("link-peeler: cannot start {}: {e}", tray.display());
            ExitCode::from(1)
        }
    }
}

fn no_tray(why: &str) -> ExitCode {
    eprintln!("link-peeler: {why}; use `link-peeler run --headless`, or see `link-peeler --help`");
    ExitCode::from(2)
}

fn start(args: RunArgs) -> anyhow::Result<ExitCode> {
    let loaded = assembly::load(args.settings.config.as_deref(), &args.settings.overrides())?;
    let data_dir = config::data_dir()?;
    let lock = lock::acquire(&data_dir)?;
    let _logs = logging::init(&data_dir, true)?;
    for problem in lock.not_private() {
        tracing::warn!(%problem, "could not make a file in the data dir private");
    }
    if managed::enroll_at_start(&loaded.managed, &data_dir)? == managed::AutoEnroll::Stopped {
        return Ok(ExitCode::SUCCESS);
    }
    let (creds, source) = credentials::load(None)?;
    let relay = assembly::relay(loaded.settings.relay.as_ref(), Some(&creds), &loaded.path)?;
    let skew: i64 = match std::env::var(ENV_TEST_CLOCK_SKEW) {
        Ok(v) => v.trim().parse().map_err(|_| {
            anyhow::anyhow!("{ENV_TEST_CLOCK_SKEW} must be a whole number of seconds")
        })?,
        Err(_) => 0,
    };
    let settings = loaded.settings;
    tracing::info!(
        device = %creds.device_id,
        credentials = %source,
        data_dir = %data_dir.display(),
        "starting headless agent"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("link-peeler-agent")
        .enable_all()
        .build()?;
    let device_id = creds.device_id.clone();
    let exit = runtime.block_on(async move {
        if skew != 0 {
            tracing::warn!(
                skew_seconds = skew,
                "test clock skew in effect ({ENV_TEST_CLOCK_SKEW})"
            );
        }
        let stop = CancellationToken::new();
        shutdown::install(stop.clone())?;
        let runner = assembly::build(&settings, &creds, relay, &data_dir, skew, stop)?;
        anyhow::Ok(runner.run().await)
    })?;
    // Do not wait for blocking threads (e.g. a keychain call) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(match exit {
        Exit::Stopped { .. } => ExitCode::SUCCESS,
        Exit::SignInRequired { reason, .. } => {
            eprintln!(
                "link-peeler: sign-in required: the relay no longer accepts device {device_id} ({reason}). Polling stopped; run `link-peeler sign-out` and enroll again with a new code."
            );
            ExitCode::from(EXIT_SIGN_IN_REQUIRED)
        }
    })
}
