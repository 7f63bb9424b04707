//! Device credentials: where the device id and secret come from.
//!
//! Two sources, both outside any file the agent writes (protocol.md §4.5):
//!
//! 1. the **OS keychain** (service `link-peeler`): Credential Manager on
//!    Windows, Keychain on macOS, the Secret Service (GNOME Keyring, KWallet,
//!    KeePassXC) elsewhere — via `keyring-core` and one native store crate per
//!    platform, chosen in Cargo.toml by target;
//! 2. the environment variables `LINK_PEELER_DEVICE_ID` and
//!    `LINK_PEELER_DEVICE_SECRET`, for containers and servers without a
//!    keychain. They are read, never written anywhere.
//!
//! There is deliberately no plaintext fallback: when no keychain answers, the
//! error says how to get one (or to use the environment variables).
//!
//! Keychain calls are blocking D-Bus/OS calls that may wait on an unlock
//! prompt nobody will answer on a headless box, so each runs on its own thread
//! with a deadline.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use link_peeler_wire::signing::Signer;

/// Keychain service name (protocol.md §4.5).
pub const KEYCHAIN_SERVICE: &str = "link-peeler";
/// Environment variable holding the device id on keychain-less hosts.
pub const ENV_DEVICE_ID: &str = "LINK_PEELER_DEVICE_ID";
/// Environment variable holding the device secret on keychain-less hosts.
pub const ENV_DEVICE_SECRET: &str = "LINK_PEELER_DEVICE_SECRET";
/// Environment variable choosing a credential profile (keychain account), default `default`.
pub const ENV_PROFILE: &str = "LINK_PEELER_PROFILE";

/// How long one keychain call may take before we give up (a locked keyring may prompt forever).
const KEYCHAIN_DEADLINE: Duration = Duration::from_secs(20);

/// A device's identity at one relay.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCredentials {
    pub device_id: String,
    pub device_secret: String,
    /// The relay this device was enrolled with (absent for environment credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

impl std::fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("device_id", &self.device_id)
            .field("device_secret", &"<redacted>")
            .field("relay", &self.relay)
            .finish()
    }
}

impl DeviceCredentials {
    /// A request signer for these credentials.
    pub fn signer(&self) -> Signer {
        Signer::new(self.device_id.clone(), self.device_secret.as_bytes())
    }
}

/// Where credentials were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Keychain,
    Environment,
    /// Held only in memory (the `demo`).
    Memory,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Keychain => "OS keychain",
            Source::Environment => "environment variables",
            Source::Memory => "memory",
        })
    }
}

/// Why credentials could not be read or stored. One line each, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("no OS keychain is reachable ({detail}). {}", no_keychain_hint())]
    NoKeychain { detail: String },
    #[error(
        "the OS keychain refused access ({detail}); unlock your keyring (or login keychain) and try again"
    )]
    Locked { detail: String },
    #[error(
        "the OS keychain did not answer within {} s; it may be waiting for an unlock prompt: unlock it and try again",
        KEYCHAIN_DEADLINE.as_secs()
    )]
    Timeout,
    #[error("keychain error: {0}")]
    Other(String),
    #[error(
        "the keychain entry for this device is unreadable ({0}); run `link-peeler sign-out` and enroll again"
    )]
    Corrupt(String),
    #[error("{set} is set but {unset} is not: set both or neither")]
    PartialEnv {
        set: &'static str,
        unset: &'static str,
    },
    #[error(
        "this computer is not enrolled: run `link-peeler enroll --relay URL --code CODE` (or set {ENV_DEVICE_ID} and {ENV_DEVICE_SECRET})"
    )]
    NotEnrolled,
}

impl CredentialError {
    /// The message without the how-to-fix advice (for `doctor`, which prints hints separately).
    pub fn summary(&self) -> String {
        match self {
            CredentialError::NoKeychain { detail } => {
                format!("no OS keychain is reachable ({detail})")
            }
            other => other.to_string(),
        }
    }
}

/// What to do when there is no keychain, per platform.
pub fn no_keychain_hint() -> &'static str {
    if cfg!(target_os = "macos") {
        "Sign in to a macOS user session so the login keychain is available"
    } else if cfg!(target_os = "windows") {
        "Run the agent in a Windows user session so Credential Manager is available"
    } else {
        "Install and unlock a Secret Service keyring on the session D-Bus (e.g. gnome-keyring, KWallet or KeePassXC); on a server without one, set LINK_PEELER_DEVICE_ID and LINK_PEELER_DEVICE_SECRET instead"
    }
}

/// The keychain account for `profile` (the default profile is `default`).
pub fn account(profile: Option<&str>) -> String {
    let p = profile
        .map(str::to_owned)
        .or_else(|| std::env::var(ENV_PROFILE).ok())
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "default".into());
    format!("device:{p}")
}

type Store = Arc<keyring_core::CredentialStore>;

/// The OS keychain, opened for one account.
pub struct Keychain {
    store: Store,
    account: String,
}

impl std::fmt::Debug for Keychain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keychain")
            .field("account", &self.account)
            .finish()
    }
}

/// Runs a blocking keychain call on its own thread with a deadline.
fn with_deadline<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CredentialError> + Send + 'static,
) -> Result<T, CredentialError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("keychain".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| CredentialError::Other(format!("cannot start keychain thread: {e}")))?;
    rx.recv_timeout(KEYCHAIN_DEADLINE)
        .map_err(|_| CredentialError::Timeout)?
}

fn platform_store() -> Result<Store, CredentialError> {
    #[cfg(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))]
    let store = zbus_secret_service_keyring_store::Store::new();
    #[cfg(target_os = "macos")]
    let store = apple_native_keyring_store::keychain::Store::new();
    #[cfg(target_os = "windows")]
    let store = windows_native_keyring_store::Store::new();
    #[cfg(any(
        target_os = "windows",
        target_os = "macos",
        all(
            unix,
            not(any(target_os = "macos", target_os = "ios", target_os = "android"))
        )
    ))]
    {
        let store = store.map_err(|e| CredentialError::NoKeychain {
            detail: one_line(&e.to_string()),
        })?;
        Ok(store as Store)
    }
    #[cfg(not(any(
        target_os = "windows",
        target_os = "macos",
        all(
            unix,
            not(any(target_os = "macos", target_os = "ios", target_os = "android"))
        )
    )))]
    Err(CredentialError::NoKeychain {
        detail: "this platform has no supported keychain".into(),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn map_err(e: keyring_core::Error) -> CredentialError {
    use keyring_core::Error as E;
    match e {
        E::NoStorageAccess(p) => CredentialError::Locked {
            detail: one_line(&p.to_string()),
        },
        E::NoDefaultStore => CredentialError::NoKeychain {
            detail: "no credential store".into(),
        },
        E::PlatformFailure(p) => {
            let detail = one_line(&p.to_string());
            if detail.to_ascii_lowercase().contains("locked") {
                CredentialError::Locked { detail }
            } else {
                CredentialError::Other(detail)
            }
        }
        E::BadEncoding(_) => CredentialError::Corrupt("not UTF-8".into()),
        other => CredentialError::Other(one_line(&other.to_string())),
    }
}

impl Keychain {
    /// Connects to the platform keychain. Fails with [`CredentialError::NoKeychain`] when none answers.
    pub fn open(profile: Option<&str>) -> Result<Keychain, CredentialError> {
        let account = account(profile);
        let store = with_deadline(platform_store)?;
        Ok(Keychain { store, account })
    }

    /// The keychain account in use (`device:<profile>`).
    pub fn account(&self) -> &str {
        &self.account
    }

    fn entry(store: &Store, account: &str) -> Result<keyring_core::Entry, CredentialError> {
        #[cfg(all(
            unix,
            not(any(target_os = "macos", target_os = "ios", target_os = "android"))
        ))]
        {
            let label = format!("Link Peeler device credentials ({account})");
            let mods = std::collections::HashMap::from([("label", label.as_str())]);
            keyring_core::Entry::new_in_store_with_modifiers(
                store,
                KEYCHAIN_SERVICE,
                account,
                &mods,
            )
            .map_err(map_err)
        }
        #[cfg(not(all(
            unix,
            not(any(target_os = "macos", target_os = "ios", target_os = "android"))
        )))]
        keyring_core::Entry::new_in_store(store, KEYCHAIN_SERVICE, account).map_err(map_err)
    }

    /// The stored credentials, or `None` when this account has none.
    ///
    /// Reading also proves the keychain is unlocked and usable.
    pub fn load(&self) -> Result<Option<DeviceCredentials>, CredentialError> {
        let (store, account) = (self.store.clone(), self.account.clone());
        with_deadline(move || {
            let entry = Self::entry(&store, &account)?;
            match entry.get_password() {
                Ok(text) => serde_json::from_str::<DeviceCredentials>(&text)
                    .map(Some)
                    .map_err(|_| CredentialError::Corrupt("not a Link Peeler credential".into())),
                Err(keyring_core::Error::NoEntry) => Ok(None),
                Err(e) => Err(map_err(e)),
            }
        })
    }

    /// Stores `creds`, replacing any previous ones, and reads them back to be sure.
    pub fn save(&self, creds: &DeviceCredentials) -> Result<(), CredentialError> {
        let text = serde_json::to_string(creds)
            .map_err(|e| CredentialError::Other(format!("cannot encode credentials: {e}")))?;
        let (store, account) = (self.store.clone(), self.account.clone());
        with_deadline(move || {
            let entry = Self::entry(&store, &account)?;
            entry.set_password(&text).map_err(map_err)?;
            match entry.get_password() {
                Ok(back) if back == text => Ok(()),
                Ok(_) => Err(CredentialError::Other(
                    "the keychain returned different credentials than were stored".into(),
                )),
                Err(e) => Err(map_err(e)),
            }
        })
    }

    /// Removes the stored credentials; `Ok(false)` when there were none.
    pub fn delete(&self) -> Result<bool, CredentialError> {
        let (store, account) = (self.store.clone(), self.account.clone());
        with_deadline(move || {
            let entry = Self::entry(&store, &account)?;
            match entry.delete_credential() {
                Ok(()) => Ok(true),
                Err(keyring_core::Error::NoEntry) => Ok(false),
                Err(e) => Err(map_err(e)),
            }
        })
    }
}

/// Credentials from `LINK_PEELER_DEVICE_ID` + `LINK_PEELER_DEVICE_SECRET`, if set.
pub fn from_env() -> Result<Option<DeviceCredentials>, CredentialError> {
    let get = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
    match (get(ENV_DEVICE_ID), get(ENV_DEVICE_SECRET)) {
        (Some(device_id), Some(device_secret)) => Ok(Some(DeviceCredentials {
            device_id,
            device_secret,
            relay: None,
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(CredentialError::PartialEnv {
            set: ENV_DEVICE_ID,
            unset: ENV_DEVICE_SECRET,
        }),
        (None, Some(_)) => Err(CredentialError::PartialEnv {
            set: ENV_DEVICE_SECRET,
            unset: ENV_DEVICE_ID,
        }),
    }
}

/// The credentials the agent runs with: the environment first, then the keychain.
pub fn load(profile: Option<&str>) -> Result<(DeviceCredentials, Source), CredentialError> {
    if let Some(c) = from_env()? {
        return Ok((c, Source::Environment));
    }
    match Keychain::open(profile)?.load()? {
        Some(c) => Ok((c, Source::Keychain)),
        None => Err(CredentialError::NotEnrolled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let c = DeviceCredentials {
            device_id: "dev_1".into(),
            device_secret: "very-secret-value".into(),
            relay: None,
        };
        assert!(!format!("{c:?}").contains("very-secret-value"));
        assert!(!format!("{:?}", c.signer()).contains("very-secret-value"));
    }

    #[test]
    fn stored_form_round_trips() {
        let c = DeviceCredentials {
            device_id: "dev_1".into(),
            device_secret: "s".into(),
            relay: Some("https://r.example/".into()),
        };
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"deviceId\""));
        assert_eq!(serde_json::from_str::<DeviceCredentials>(&text).unwrap(), c);
    }

    #[test]
    fn account_names_profiles() {
        assert_eq!(account(Some("lab")), "device:lab");
        assert_eq!(account(Some(" ")), account(None));
    }

    #[test]
    fn no_keychain_message_says_how_to_get_one() {
        let e = CredentialError::NoKeychain { detail: "x".into() }.to_string();
        assert!(
            e.contains(ENV_DEVICE_SECRET) || !cfg!(target_os = "linux"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }
}
