//! Enrollment as a library call, for callers without a terminal (the tray):
//! trade a one-time code for device credentials and keep them in the OS
//! keychain, with errors written for the person who typed the code.
//!
//! The order matches `link-peeler enroll`: the relay URL is checked before
//! any connection, the keychain is opened and read before the single-use
//! code is spent, and nothing is written unless the relay returned
//! credentials.

use url::Url;

use super::client::{RelayClient, RelayError};
use super::credentials::{CredentialError, DeviceCredentials, Keychain};
use link_peeler_wire::protocol::EnrollRequest;

/// A completed enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub device_id: String,
    pub relay: Url,
    /// The device these credentials replaced, which the admin should revoke.
    pub replaced: Option<String>,
}

/// Why enrollment failed; each message is a plain sentence for a dialog.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("The enrollment code is empty or too long. Copy it again from your admin's message.")]
    BadCode,
    #[error("{0}")]
    Keychain(#[from] CredentialError),
    #[error(
        "The relay did not accept this code ({0}). Codes work once and expire; ask your admin for a new one."
    )]
    Refused(String),
    #[error(
        "Could not reach the relay at {relay}. Check the address and your connection. ({detail})"
    )]
    Unreachable { relay: Url, detail: String },
    #[error("The relay answered with an error ({0}). Try again later or tell your admin.")]
    Relay(String),
    #[error(
        "Enrolled as {device_id}, but the keychain could not store the credentials ({detail}). Ask your admin to revoke {device_id}, then enroll again."
    )]
    NotStored { device_id: String, detail: String },
}

/// Enrolls this computer with `relay` using `code`, under keychain `profile`.
///
/// Blocking keychain calls run on their own threads (see [`Keychain`]), so
/// this is safe to await on a runtime worker.
pub async fn enroll(
    relay: Url,
    code: &str,
    name: Option<String>,
    profile: Option<String>,
) -> Result<Enrolled, EnrollError> {
    let request = EnrollRequest {
        code: code.trim().to_owned(),
        name: Some(name.unwrap_or_else(super::host_name)),
        platform: Some(super::platform().to_owned()),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    };
    request.validate().map_err(|_| EnrollError::BadCode)?;

    let (keychain, previous) = blocking(move || {
        let keychain = Keychain::open(profile.as_deref())?;
        let previous = keychain.load()?;
        Ok((keychain, previous))
    })
    .await?;

    let client = RelayClient::new(relay.clone(), None).map_err(|e| EnrollError::Unreachable {
        relay: relay.clone(),
        detail: format!("{e:#}"),
    })?;
    let answer = client.enroll(&request).await.map_err(|e| match e {
        RelayError::Api {
            status, message, ..
        } if (400..500).contains(&status) => EnrollError::Refused(message),
        RelayError::Api { message, .. } => EnrollError::Relay(message),
        RelayError::Unreachable { detail, .. } => EnrollError::Unreachable {
            relay: relay.clone(),
            detail,
        },
    })?;
    let creds = DeviceCredentials {
        device_id: answer.device_id.clone(),
        device_secret: answer.device_secret,
        relay: Some(relay.to_string()),
    };
    let device_id = creds.device_id.clone();
    blocking(move || keychain.save(&creds))
        .await
        .map_err(|e| EnrollError::NotStored {
            device_id: device_id.clone(),
            detail: e.to_string(),
        })?;
    Ok(Enrolled {
        replaced: previous
            .map(|p| p.device_id)
            .filter(|old| *old != device_id),
        device_id,
        relay,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CredentialError> + Send + 'static,
) -> Result<T, CredentialError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CredentialError::Other(format!("keychain task failed: {e}")))?
}
