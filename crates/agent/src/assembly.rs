//! The one place that turns settings and credentials into a running agent.
//!
//! Why: `run --headless`, the tray, `status` and `doctor` must agree on which
//! relay this computer talks to and on how the agent is put together, and
//! four hand-written copies had started to disagree (one silently dropped a
//! malformed relay URL). The precedence is [`super::config`]'s — managed >
//! flags > `config.toml` > defaults — and when none of those names a relay,
//! the one stored with the credentials at enrollment is used. A stored URL
//! that is not valid is an error, never skipped.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use url::Url;

use super::client::RelayClient;
use super::config::{self, ConfigError, Settings};
use super::credentials::DeviceCredentials;
use super::outbox::Outbox;
use super::resolve;
use super::runner::{Runner, RunnerConfig};

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
    Ok(Runner::new(
        Arc::new(client),
        resolver,
        outbox,
        RunnerConfig::from_settings(settings),
        stop,
    ))
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
