//! The one place that turns settings and credentials into a running agent.
//!
//! Why: `run --headless`, the tray, `status` and `doctor` must agree on which
//! relay this computer talks to and on how the agent is put together, and
//! four hand-written copies had started to disagree (one silently dropped a
//! malformed relay URL). [`load`] decides the effective settings — managed >
//! flags > `config.toml` > defaults, a bad value an error, never skipped — so
//! neither [`super::config`] (the file and its rules) nor [`super::managed`]
//! (the admin's sources) needs the other's merge; when none names a relay,
//! the one stored with the credentials at enrollment is used. A stored URL
//! that is not valid is an error, never skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use url::Url;

use super::client::RelayClient;
use super::config::{self, ConfigError, FileConfig, Overrides, Settings};
use super::control::{Controller, sensors};
use super::credentials::DeviceCredentials;
use super::history::History;
use super::managed::{self, Managed};
use super::outbox::Outbox;
use super::resolve;
use super::runner::{Runner, RunnerConfig};

/// A config file that was found (or not) and the settings made from it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    /// Whether the file exists (a missing file means defaults).
    pub present: bool,
    pub file: FileConfig,
    pub settings: Settings,
    /// What the admin manages on this machine (overrides `file` and flags):
    /// `managed.keys()` names the settings a user interface shows as managed.
    pub managed: Managed,
}

/// Finds, reads and merges the config with `flags`, the admin's managed settings on top.
pub fn load(explicit: Option<&Path>, flags: &Overrides) -> Result<Loaded, ConfigError> {
    let path = config::config_path(explicit)?;
    let present = path.exists();
    let file = config::load_file(&path)?;
    let managed = managed::load()?;
    let mut merged = file.clone();
    config::anchor_relay_ca_file(&mut merged, &path);
    let flags = managed.apply(&mut merged, flags);
    let settings = config::resolve(&merged, &flags).map_err(|e| match e {
        // Name the file the bad value came from (a flag's names itself).
        ConfigError::RelayCa(message) if flags.relay_ca_file.is_none() => ConfigError::Malformed {
            path: path.clone(),
            message,
        },
        other => other,
    })?;
    Ok(Loaded {
        path,
        present,
        file,
        settings,
        managed,
    })
}

/// The relay this computer talks to: `configured` (the effective settings'
/// relay), else the one stored with `creds`. `config_path` is named in the
/// error when there is none.
pub fn relay(
    configured: Option<&Url>,
    creds: Option<&DeviceCredentials>,
    config_path: &Path,
) -> Result<Url, ConfigError> {
    if let Some(url) = configured {
        return Ok(url.clone());
    }
    match creds.and_then(|c| c.relay.as_deref()) {
        Some(stored) => config::relay_url(stored),
        None => Err(ConfigError::NoRelay {
            path: config_path.to_path_buf(),
        }),
    }
}

/// Why the agent could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    #[error("cannot set up the resolver: {0}")]
    Resolver(String),
    #[error("cannot open the outbox in {dir}: {detail}")]
    Outbox { dir: String, detail: String },
    #[error("cannot set up the relay client: {0}")]
    Client(#[from] link_peeler_wire::client::RelayError),
}

/// Builds the agent — resolver, outbox, signed relay client, runner — for
/// `relay` with `creds`, from `settings`. `stop` ends it (first signal,
/// Pause in the tray). `clock_offset` starts the signer's clock correction
/// (0 unless a test skews the clock).
pub fn build(
    settings: &Settings,
    creds: &DeviceCredentials,
    relay: Url,
    data_dir: &Path,
    clock_offset: i64,
    stop: CancellationToken,
) -> Result<Runner<link_peeler_resolver::Resolver>, AssemblyError> {
    let resolver = resolve::build(settings.user_agent.as_deref(), &settings.allow_networks)
        .map_err(|e| AssemblyError::Resolver(e.to_string()))?;
    let outbox = Outbox::in_data_dir(data_dir).map_err(|e| AssemblyError::Outbox {
        dir: data_dir.display().to_string(),
        detail: e.to_string(),
    })?;
    let client = RelayClient::with_roots(relay, Some(creds.signer()), settings.relay_roots())?;
    if clock_offset != 0 {
        client.set_clock_offset(clock_offset);
    }
    // Metered network and battery: D-Bus on Linux, "unknown" elsewhere for now.
    let control = Controller::open(settings.policy.clone(), sensors::spawn(), data_dir);
    let history = History::new(data_dir, settings.policy.activity_retention_days.value);
    Ok(Runner::new(
        Arc::new(client),
        resolver,
        outbox,
        RunnerConfig::from_settings(settings),
        stop,
    )
    .with_control(control)
    .with_history(Arc::new(history)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(relay: Option<&str>) -> DeviceCredentials {
        DeviceCredentials {
            device_id: "dev_x".into(),
            device_secret: "s".into(),
            relay: relay.map(str::to_owned),
        }
    }

    #[test]
    fn settings_win_then_the_stored_relay_and_a_bad_one_is_an_error() {
        let path = Path::new("/etc/x/config.toml");
        let stored = creds(Some("http://127.0.0.1:9/"));
        assert_eq!(
            relay(None, Some(&stored), path).unwrap().as_str(),
            "http://127.0.0.1:9/"
        );
        let configured = config::relay_url("https://relay.example/").unwrap();
        assert_eq!(
            relay(Some(&configured), Some(&stored), path)
                .unwrap()
                .as_str(),
            "https://relay.example/"
        );
        let bad = creds(Some("http://relay.example/"));
        let e = relay(None, Some(&bad), path).unwrap_err();
        assert!(matches!(e, ConfigError::RelayUrl { .. }), "{e:?}");
        let e = relay(None, Some(&creds(None)), path).unwrap_err();
        assert!(e.to_string().contains("/etc/x/config.toml"), "{e}");
        assert!(relay(None, None, path).is_err());
    }
}
