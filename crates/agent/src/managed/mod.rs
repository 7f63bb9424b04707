//! Managed configuration: settings an admin deploys machine-wide with the
//! installer or a management tool, which override the user's own settings —
//! and a relay URL + one-time enrollment code the agent enrolls itself with.
//!
//! Sources (one per platform; the first that exists is used):
//!
//! | platform | location | written by |
//! |---|---|---|
//! | Windows | `HKLM\SOFTWARE\Policies\Link Peeler` (values `RelayUrl`, `EnrollmentCode`, …) | the MSI (`RELAY_URL`, `ENROLLMENT_CODE`), GPO, Intune |
//! | macOS | `/Library/Managed Preferences/com.linkpeeler.agent.plist` (keys `RelayUrl`, `EnrollmentCode`, …) | an MDM configuration profile |
//! | Linux | `/etc/link-peeler/config.toml` (keys `relay`, `enrollment_code`, …) | the .deb (a commented template), config management |
//!
//! `LINK_PEELER_MANAGED_CONFIG` (test/admin override) names a file to read
//! instead, on every platform: a `.plist` file is read as a property list,
//! anything else as TOML. A missing file means "nothing is managed".
//!
//! Precedence: managed > command-line flags > the user's `config.toml` >
//! defaults. A malformed managed source is an error that names the source:
//! the agent refuses to start rather than silently ignore what the admin set.
//!
//! Self-enrollment ([`enroll_if_needed`]): on start, when this user has no
//! credentials and both a managed relay URL and code exist, the agent trades
//! the code once and stores the credentials in the user's keychain. Each
//! (relay, code) pair is remembered by hash in `<data dir>/managed-enrollment.json`
//! *before* the request is sent; a pair that enrolled or was refused is never
//! sent again (a restart, a crash loop or a sign-out cannot replay it), and
//! transient failures (relay unreachable, 5xx, 429) are retried with backoff
//! that survives restarts. A new code (or relay) from the admin is a new pair.
//!
//! Files: `source.rs` turns each source's form (TOML, property list, registry
//! values) into one validated [`Managed`]; `windows_registry.rs` holds the
//! Win32 calls; `enroll.rs` is self-enrollment and its attempts record.

mod enroll;
mod source;
#[cfg(windows)]
mod windows_registry;

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use url::Url;

use super::config::{ConfigError, FileConfig, Overrides, RelayCa};
use super::control::Layer;

pub use enroll::{
    Attempt, Attempts, AutoEnroll, AutoEnrollError, Outcome, attempt_key, attempts_path,
    enroll_at_start, enroll_if_needed, load_attempts, retry_wait, save_attempts,
};
#[cfg(windows)]
use source::invalid;
pub use source::{ManagedFile, Value, from_keyed, load_file, parse_plist, parse_toml};

/// Test/admin override: a managed-config file to read instead of the platform source.
pub const ENV_MANAGED_CONFIG: &str = "LINK_PEELER_MANAGED_CONFIG";
/// The Linux (and other Unix) managed-config file; the .deb ships a commented template.
pub const LINUX_PATH: &str = "/etc/link-peeler/config.toml";
/// The macOS bundle identifier; MDM profiles target this preference domain.
pub const MACOS_BUNDLE_ID: &str = "com.linkpeeler.agent";
/// Where macOS puts managed preferences for [`MACOS_BUNDLE_ID`].
pub const MACOS_PATH: &str = "/Library/Managed Preferences/com.linkpeeler.agent.plist";
/// The Windows registry key (under HKEY_LOCAL_MACHINE) the MSI and GPO write.
pub const WINDOWS_KEY: &str = r"SOFTWARE\Policies\Link Peeler";
/// File in the data dir remembering managed enrollment attempts.
pub const ATTEMPTS_FILE: &str = "managed-enrollment.json";

/// Settings an admin manages. `None`/empty: not managed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Managed {
    /// Where the settings came from (a path or a registry key); `None` when nothing is managed.
    pub source: Option<String>,
    pub relay: Option<Url>,
    pub enrollment_code: Option<String>,
    pub capacity: Option<u32>,
    pub user_agent: Option<String>,
    pub allow_networks: Option<Vec<IpNet>>,
    pub poll_wait_seconds: Option<u32>,
    /// The relay's private CA(s), read and checked when the source was.
    /// Self-enrollment from the managed relay trusts it too.
    pub relay_ca: Option<RelayCa>,
    /// Policy values the admin locked: the user's own values are ignored.
    pub policy: Layer,
    /// Policy defaults the admin set (`default_…` keys): the user may change them.
    pub policy_defaults: Layer,
    /// The organisation's name, shown as "Managed by <organization>".
    pub organization: Option<String>,
    /// The organisation gave consent for its users: the tray informs, not asks.
    pub consent_given: bool,
}

impl Managed {
    /// Names of the managed settings that override the user's (locked), as
    /// `config.toml` spells them (for status and the tray). Policy defaults
    /// (`policy_defaults`) are not among them: the user may change those.
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys = vec![];
        let mut add = |on: bool, k| {
            if on {
                keys.push(k)
            }
        };
        add(self.relay.is_some(), "relay");
        add(self.enrollment_code.is_some(), "enrollment_code");
        add(self.capacity.is_some(), "capacity");
        add(self.user_agent.is_some(), "user_agent");
        add(self.allow_networks.is_some(), "allow_networks");
        add(self.poll_wait_seconds.is_some(), "poll_wait_seconds");
        add(self.relay_ca.is_some(), "relay_ca_file");
        add(self.consent_given, "consent_given");
        keys.extend(self.policy.keys());
        keys
    }

    /// True when the agent can enroll itself: a relay URL and a code are both managed.
    pub fn can_enroll(&self) -> bool {
        self.relay.is_some() && self.enrollment_code.is_some()
    }

    /// Lays the managed settings over the user's file and flags: managed values win.
    pub fn apply(&self, file: &mut FileConfig, flags: &Overrides) -> Overrides {
        let mut out = flags.clone();
        if let Some(r) = &self.relay {
            if flags.relay.as_ref().is_some_and(|f| f != r.as_str()) {
                tracing::warn!("--relay ignored: the relay URL is managed by your admin");
            }
            out.relay = Some(r.to_string());
        }
        if let Some(c) = self.capacity {
            out.capacity = Some(c);
        }
        if let Some(ua) = &self.user_agent {
            out.user_agent = Some(ua.clone());
        }
        if let Some(nets) = &self.allow_networks {
            out.allow_networks = nets.clone();
            // An explicitly empty managed list must win over a user's file too.
            file.allow_networks.clear();
        }
        if let Some(w) = self.poll_wait_seconds {
            file.poll_wait_seconds = Some(w);
        }
        if let Some(ca) = &self.relay_ca {
            out.relay_ca_file = Some(ca.path.clone());
            out.relay_ca = Some(ca.clone());
        }
        out.policy_locked = self.policy.clone();
        out.policy_defaults = self.policy_defaults.clone();
        out
    }
}

/// Where managed settings are read from on this machine (for messages and `doctor`).
pub fn location() -> String {
    if let Some(p) = std::env::var_os(ENV_MANAGED_CONFIG).filter(|v| !v.is_empty()) {
        return PathBuf::from(p).display().to_string();
    }
    if cfg!(windows) {
        format!(r"HKEY_LOCAL_MACHINE\{WINDOWS_KEY}")
    } else if cfg!(target_os = "macos") {
        MACOS_PATH.to_owned()
    } else {
        LINUX_PATH.to_owned()
    }
}

/// Reads this machine's managed settings (see the module docs for where).
pub fn load() -> Result<Managed, ConfigError> {
    if let Some(p) = std::env::var_os(ENV_MANAGED_CONFIG).filter(|v| !v.is_empty()) {
        return load_file(Path::new(&p));
    }
    load_platform()
}

/// All values of `HKEY_LOCAL_MACHINE\<key>` (64-bit view); a missing key is empty.
/// The tray uses it to see the MSI's machine-wide Run entry.
#[cfg(windows)]
pub fn read_machine_key(key: &str) -> Result<std::collections::BTreeMap<String, Value>, String> {
    windows_registry::read(key)
}

#[cfg(windows)]
fn load_platform() -> Result<Managed, ConfigError> {
    let source = location();
    let values = windows_registry::read(WINDOWS_KEY).map_err(|e| invalid(&source, e))?;
    from_keyed(&values, &source)
}

#[cfg(target_os = "macos")]
fn load_platform() -> Result<Managed, ConfigError> {
    load_file(Path::new(MACOS_PATH))
}

#[cfg(not(any(windows, target_os = "macos")))]
fn load_platform() -> Result<Managed, ConfigError> {
    load_file(Path::new(LINUX_PATH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const SRC: &str = "/etc/link-peeler/config.toml";

    #[test]
    fn managed_settings_override_file_and_flags() {
        let m = parse_toml(
            "relay = \"https://managed.example\"\ncapacity = 2\nallow_networks = []\npoll_wait_seconds = 5\n",
            SRC,
        )
        .unwrap();
        let mut file = config::parse_file(
            "relay = \"https://user.example\"\ncapacity = 9\nallow_networks = [\"10.0.0.0/8\"]\nuser_agent = \"mine\"\n",
        )
        .unwrap();
        let flags = Overrides {
            relay: Some("https://flag.example".into()),
            capacity: Some(16),
            ..Default::default()
        };
        let merged = m.apply(&mut file, &flags);
        let s = config::resolve(&file, &merged).unwrap();
        assert_eq!(s.relay.unwrap().as_str(), "https://managed.example/");
        assert_eq!(s.capacity, 2);
        assert!(s.allow_networks.is_empty(), "an empty managed list wins");
        assert_eq!(s.poll_wait_seconds, 5);
        assert_eq!(
            s.user_agent.as_deref(),
            Some("mine"),
            "unmanaged settings stay the user's"
        );
        assert!(m.keys().contains(&"capacity") && !m.keys().contains(&"user_agent"));
    }
}
