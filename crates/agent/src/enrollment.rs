//! The one enrollment core: trade a one-time code for device credentials and
//! keep them in the OS keychain. `link-peeler enroll`, the tray's dialog and
//! managed self-enrollment ([`super::managed::enroll`]) all call it.
//!
//! The order makes a failure leave nothing behind and waste no code: the
//! relay URL is checked by the caller before any connection ([`prepare`]
//! takes a checked URL), the keychain is opened and read before the
//! single-use code is spent, and nothing is written unless the relay returned
//! credentials. Which relay answers are final (the code will never work) and
//! which are worth another try is decided by [`super::policy`]'s table
//! (`Op::Enroll`), not here.
//!
//! Keychain calls block (Secret Service over D-Bus can take seconds, a locked
//! keychain until the user answers), so they run on blocking threads: these
//! functions are safe to await on any runtime worker, the tray's included.

use std::sync::Arc;

use url::Url;

use super::client::{RelayClient, RelayErrorExt};
use super::credentials::{CredentialError, DeviceCredentials, Keychain};
use super::policy::{Op, Verdict};
use link_peeler_wire::client::{ExtraRoots, RelayError};
use link_peeler_wire::protocol::EnrollRequest;

/// A completed enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub device_id: String,
    pub relay: Url,
    /// The device these credentials replaced, which the admin should revoke.
    pub replaced: Option<String>,
}

/// Why enrollment failed; each message is a plain sentence, fit for a dialog
/// and for one line on a terminal. None contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("The enrollment code is empty or too long. Copy it again from your admin's message.")]
    BadCode,
    #[error("{0}")]
    Keychain(#[from] CredentialError),
    /// The relay said the code will never work (policy: final).
    #[error(
        "The relay refused the enrollment code ({0}). Codes work once and expire; ask your admin for a new one."
    )]
    Refused(String),
    /// No answer: worth another try.
    #[error(
        "Could not reach the relay at {relay}. Check the address and your connection. ({detail})"
    )]
    Unreachable { relay: Url, detail: String },
    /// The TLS handshake failed (the certificate is not trusted, or not for
    /// this name): worth another try once the admin fixed it.
    #[error(
        "Could not connect securely to the relay at {relay} ({detail}). Its certificate must be valid for its name and issued by a CA this computer trusts; for an internal CA, set relay_ca_file (or --relay-ca-file) to that CA's PEM file."
    )]
    Tls { relay: Url, detail: String },
    /// An answer that says "not now" (408, 429, 5xx): worth another try.
    #[error("The relay answered with an error ({message}). Try again later or tell your admin.")]
    Relay {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    #[error(
        "Enrolled as {device_id}, but the keychain could not store the credentials ({detail}). Ask your admin to revoke {device_id}, then enroll again."
    )]
    NotStored { device_id: String, detail: String },
}

impl EnrollError {
    /// True when the same code may be sent again later (no answer, 408, 429,
    /// 5xx): the code may or may not have been spent, and a spent one is
    /// refused next time.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EnrollError::Unreachable { .. } | EnrollError::Tls { .. } | EnrollError::Relay { .. }
        )
    }
}

/// An enrollment ready to send: the request checked, the keychain open, the
/// credentials it would replace read.
pub struct Prepared {
    request: EnrollRequest,
    keychain: Arc<Keychain>,
    /// Credentials already in the keychain for this profile.
    pub previous: Option<DeviceCredentials>,
}

impl Prepared {
    /// The keychain account the credentials go to.
    pub fn account(&self) -> &str {
        self.keychain.account()
    }
}

/// Checks `code` and opens the keychain for `profile`, before anything is sent.
pub async fn prepare(
    code: &str,
    name: Option<String>,
    profile: Option<String>,
) -> Result<Prepared, EnrollError> {
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
    Ok(Prepared {
        request,
        keychain: Arc::new(keychain),
        previous,
    })
}

/// Spends the code at `relay` and stores the credentials it returns. After a
/// transient failure the same `prepared` may be sent again. `roots` are the
/// private CAs trusted for the relay (`relay_ca_file`) besides the OS's.
pub async fn send(
    prepared: &Prepared,
    relay: &Url,
    roots: Option<&ExtraRoots>,
) -> Result<Enrolled, EnrollError> {
    let unreachable = |detail: String| EnrollError::Unreachable {
        relay: relay.clone(),
        detail,
    };
    let client = RelayClient::with_roots(relay.clone(), None, roots)
        .map_err(|e| unreachable(e.to_string()))?;
    let answer = client
        .enroll(&prepared.request)
        .await
        .map_err(|e| classify(e, relay))?;
    let creds = DeviceCredentials {
        device_id: answer.device_id.clone(),
        device_secret: answer.device_secret,
        relay: Some(relay.to_string()),
    };
    let device_id = creds.device_id.clone();
    let keychain = prepared.keychain.clone();
    blocking(move || keychain.save(&creds))
        .await
        .map_err(|e| EnrollError::NotStored {
            device_id: device_id.clone(),
            detail: e.to_string(),
        })?;
    Ok(Enrolled {
        replaced: prepared
            .previous
            .as_ref()
            .map(|p| p.device_id.clone())
            .filter(|old| *old != device_id),
        device_id,
        relay: relay.clone(),
    })
}

/// Enrolls this computer with `relay` using `code`, under keychain `profile`:
/// [`prepare`], then [`send`]. `roots` are the relay's private CAs from the
/// caller's effective settings (`None`: the OS trust store only).
pub async fn enroll(
    relay: Url,
    code: &str,
    name: Option<String>,
    profile: Option<String>,
    roots: Option<&ExtraRoots>,
) -> Result<Enrolled, EnrollError> {
    let prepared = prepare(code, name, profile).await?;
    send(&prepared, &relay, roots).await
}

/// A failed enrollment request, read through the policy table.
fn classify(e: RelayError, relay: &Url) -> EnrollError {
    match (e.verdict(Op::Enroll), e) {
        (Verdict::Refused, RelayError::Api { message, .. }) => EnrollError::Refused(message),
        (
            _,
            RelayError::Unreachable {
                detail, tls: true, ..
            },
        ) => EnrollError::Tls {
            relay: relay.clone(),
            detail,
        },
        (_, RelayError::Unreachable { detail, .. }) => EnrollError::Unreachable {
            relay: relay.clone(),
            detail,
        },
        (
            _,
            RelayError::Api {
                message,
                retry_after,
                ..
            },
        ) => EnrollError::Relay {
            message,
            retry_after,
        },
    }
}

/// Runs a keychain call on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CredentialError> + Send + 'static,
) -> Result<T, CredentialError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CredentialError::Other(format!("keychain task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> RelayError {
        RelayError::Api {
            status,
            code: None,
            message: format!("status {status}"),
            retry_after: None,
            server_time: None,
        }
    }

    #[test]
    fn only_final_answers_refuse_the_code() {
        let relay = Url::parse("http://127.0.0.1:9/").unwrap();
        for status in [400, 401, 403, 404, 409, 410, 422] {
            let e = classify(api(status), &relay);
            assert!(matches!(e, EnrollError::Refused(_)), "{status}: {e:?}");
            assert!(!e.is_transient());
        }
        for status in [408, 429, 500, 502, 503] {
            let e = classify(api(status), &relay);
            assert!(matches!(e, EnrollError::Relay { .. }), "{status}: {e:?}");
            assert!(e.is_transient());
        }
        let e = classify(
            RelayError::Unreachable {
                url: relay.to_string(),
                detail: "refused".into(),
                tls: false,
            },
            &relay,
        );
        assert!(e.is_transient());
        let e = classify(
            RelayError::Unreachable {
                url: relay.to_string(),
                detail: "invalid peer certificate: UnknownIssuer".into(),
                tls: true,
            },
            &relay,
        );
        assert!(matches!(e, EnrollError::Tls { .. }), "{e:?}");
        assert!(e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("UnknownIssuer") && text.contains("relay_ca_file"),
            "{text}"
        );
    }
}
