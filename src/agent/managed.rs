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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::client::{RelayClient, RelayError};
use super::config::{self, ConfigError, FileConfig, Overrides};
use super::credentials::{self, DeviceCredentials, Keychain};
use crate::protocol::EnrollRequest;

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
}

impl Managed {
    /// Names of the managed settings, as `config.toml` spells them (for status and the tray).
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
        keys
    }

    /// True when `key` (a `config.toml` key name) is managed.
    pub fn is_managed(&self, key: &str) -> bool {
        self.keys().contains(&key)
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
        out
    }
}

/// One value from a keyed source (property list or registry), before validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    List(Vec<String>),
    /// Any other type (date, data, dictionary, real, …): always an error for a known key.
    Other(&'static str),
}

/// The managed-config file format, as TOML (`/etc/link-peeler/config.toml`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedFile {
    pub relay: Option<String>,
    pub enrollment_code: Option<String>,
    pub capacity: Option<u32>,
    pub user_agent: Option<String>,
    pub allow_networks: Option<Vec<String>>,
    pub poll_wait_seconds: Option<u32>,
}

fn invalid(source: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("managed configuration {source}: {message}"))
}

impl ManagedFile {
    /// Checks every value and turns the file into [`Managed`]; errors name `source`.
    pub fn validate(self, source: &str) -> Result<Managed, ConfigError> {
        let err = |m: String| invalid(source, m);
        let text = |key: &str, v: Option<String>| -> Result<Option<String>, ConfigError> {
            match v.map(|s| s.trim().to_owned()) {
                Some(s) if s.is_empty() => Ok(None),
                Some(s) if s.len() > 512 || s.chars().any(char::is_control) => Err(err(format!(
                    "{key} must be at most 512 characters without control characters"
                ))),
                other => Ok(other),
            }
        };
        let relay = match text("relay", self.relay)? {
            Some(r) => Some(config::relay_url(&r).map_err(|e| err(e.to_string()))?),
            None => None,
        };
        let enrollment_code = text("enrollment_code", self.enrollment_code)?;
        if let Some(c) = &enrollment_code {
            let probe = EnrollRequest {
                code: c.clone(),
                name: None,
                platform: None,
                version: None,
            };
            probe
                .validate()
                .map_err(|e| err(format!("enrollment_code: {}", e.message)))?;
        }
        if let Some(c) = self.capacity
            && !(1..=crate::protocol::MAX_POLL_CAPACITY).contains(&c)
        {
            return Err(err(format!(
                "capacity must be between 1 and {}, not {c}",
                crate::protocol::MAX_POLL_CAPACITY
            )));
        }
        if let Some(w) = self.poll_wait_seconds
            && w > crate::protocol::MAX_POLL_WAIT_SECONDS
        {
            return Err(err(format!(
                "poll_wait_seconds must be between 0 and {}, not {w}",
                crate::protocol::MAX_POLL_WAIT_SECONDS
            )));
        }
        let user_agent = text("user_agent", self.user_agent)?;
        let allow_networks = match self.allow_networks {
            Some(list) => Some(
                list.iter()
                    .map(|s| {
                        s.trim().parse::<IpNet>().map_err(|_| {
                            err(format!(
                                "allow_networks: {s:?} is not a CIDR such as 10.20.0.0/16"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let m = Managed {
            source: None,
            relay,
            enrollment_code,
            capacity: self.capacity,
            user_agent,
            allow_networks,
            poll_wait_seconds: self.poll_wait_seconds,
        };
        let source = (!m.keys().is_empty()).then(|| source.to_owned());
        Ok(Managed { source, ..m })
    }
}

/// Parses the TOML form. Unknown keys are errors (a typo must not be silently ignored).
pub fn parse_toml(text: &str, source: &str) -> Result<Managed, ConfigError> {
    let file = config::parse_toml_as::<ManagedFile>(text).map_err(|m| invalid(source, m))?;
    file.validate(source)
}

/// The key names of the property-list and registry forms, and their TOML twins.
const KEYED: [(&str, &str); 6] = [
    ("RelayUrl", "relay"),
    ("EnrollmentCode", "enrollment_code"),
    ("Capacity", "capacity"),
    ("UserAgent", "user_agent"),
    ("AllowNetworks", "allow_networks"),
    ("PollWaitSeconds", "poll_wait_seconds"),
];

/// Builds [`Managed`] from keyed values (a property list's dictionary, a registry key's values).
///
/// Unknown keys are ignored with a log line: MDM tools and GPO editors add
/// their own (`PayloadUUID`, …). A known key with the wrong type is an error.
pub fn from_keyed(values: &BTreeMap<String, Value>, source: &str) -> Result<Managed, ConfigError> {
    let mut file = ManagedFile::default();
    for (key, value) in values {
        let Some((_, toml_key)) = KEYED.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) else {
            tracing::debug!(key, source, "ignoring unknown managed setting");
            continue;
        };
        let wrong = |want: &str| {
            let got = match value {
                Value::Str(_) => "a string",
                Value::Int(_) => "an integer",
                Value::List(_) => "an array",
                Value::Other(t) => t,
            };
            invalid(source, format!("{key} must be {want}, not {got}"))
        };
        let string = || match value {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(wrong("a string")),
        };
        let number = || match value {
            Value::Int(i) => u32::try_from(*i).map_err(|_| {
                invalid(
                    source,
                    format!("{key} must be a small positive number, not {i}"),
                )
            }),
            // Registry editors and plist tools often store numbers as text.
            Value::Str(s) => s.trim().parse::<u32>().map_err(|_| wrong("an integer")),
            _ => Err(wrong("an integer")),
        };
        match *toml_key {
            "relay" => file.relay = Some(string()?),
            "enrollment_code" => file.enrollment_code = Some(string()?),
            "user_agent" => file.user_agent = Some(string()?),
            "capacity" => file.capacity = Some(number()?),
            "poll_wait_seconds" => file.poll_wait_seconds = Some(number()?),
            "allow_networks" => {
                file.allow_networks = Some(match value {
                    Value::List(l) => l.clone(),
                    // A single CIDR, or several separated by commas or spaces.
                    Value::Str(s) => s
                        .split([',', ' ', ';'])
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    _ => return Err(wrong("an array of CIDR strings")),
                })
            }
            _ => unreachable!("every KEYED entry is handled"),
        }
    }
    file.validate(source)
}

/// Parses a property list (XML or binary) — the macOS managed-preferences form.
/// A pure function over bytes, so it is tested on every OS.
pub fn parse_plist(bytes: &[u8], source: &str) -> Result<Managed, ConfigError> {
    let root = plist::Value::from_reader(std::io::Cursor::new(bytes))
        .map_err(|e| invalid(source, format!("not a property list: {e}")))?;
    let dict = root
        .into_dictionary()
        .ok_or_else(|| invalid(source, "the property list is not a dictionary"))?;
    let mut values = BTreeMap::new();
    for (k, v) in dict {
        let v = match v {
            plist::Value::String(s) => Value::Str(s),
            plist::Value::Integer(i) => match i.as_signed() {
                Some(i) => Value::Int(i),
                None => Value::Other("an out-of-range integer"),
            },
            plist::Value::Array(items) => {
                let mut list = vec![];
                for item in items {
                    match item {
                        plist::Value::String(s) => list.push(s),
                        _ => {
                            return Err(invalid(
                                source,
                                format!("{k} must be an array of strings"),
                            ));
                        }
                    }
                }
                Value::List(list)
            }
            plist::Value::Boolean(_) => Value::Other("a boolean"),
            plist::Value::Real(_) => Value::Other("a real number"),
            plist::Value::Dictionary(_) => Value::Other("a dictionary"),
            plist::Value::Data(_) => Value::Other("data"),
            plist::Value::Date(_) => Value::Other("a date"),
            _ => Value::Other("an unsupported type"),
        };
        values.insert(k, v);
    }
    from_keyed(&values, source)
}

/// Reads a managed-config file: `.plist` as a property list, anything else as TOML.
/// A missing file means nothing is managed.
pub fn load_file(path: &Path) -> Result<Managed, ConfigError> {
    let source = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Managed::default()),
        Err(e) => return Err(invalid(&source, format!("cannot read it: {e}"))),
    };
    if path
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("plist"))
    {
        parse_plist(&bytes, &source)
    } else {
        let text = String::from_utf8(bytes).map_err(|_| invalid(&source, "not UTF-8 text"))?;
        parse_toml(&text, &source)
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

/// Reading `HKLM\SOFTWARE\Policies\Link Peeler`: only the Win32 calls live
/// here; what the values mean is [`from_keyed`]'s job (tested on every OS).
#[cfg(windows)]
mod windows_registry {
    use std::collections::BTreeMap;

    use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_NO_MORE_ITEMS};
    use windows_sys::Win32::System::Registry::{
        HKEY, HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_64KEY, REG_DWORD, REG_EXPAND_SZ,
        REG_MULTI_SZ, REG_QWORD, REG_SZ, RegCloseKey, RegEnumValueW, RegOpenKeyExW,
    };

    use super::Value;

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    fn text(units: &[u16]) -> String {
        let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
        String::from_utf16_lossy(&units[..end])
    }

    /// All values of `HKLM\key` (64-bit view); a missing key is an empty map.
    pub fn read(key: &str) -> Result<BTreeMap<String, Value>, String> {
        let mut out = BTreeMap::new();
        let mut hkey: HKEY = std::ptr::null_mut();
        let name = wide(key);
        // SAFETY: valid NUL-terminated name and out-pointer.
        let rc = unsafe {
            RegOpenKeyExW(
                HKEY_LOCAL_MACHINE,
                name.as_ptr(),
                0,
                KEY_READ | KEY_WOW64_64KEY,
                &mut hkey,
            )
        };
        if rc == ERROR_FILE_NOT_FOUND {
            return Ok(out);
        }
        if rc != 0 {
            return Err(format!("cannot open the registry key (error {rc})"));
        }
        let mut index = 0u32;
        let result = loop {
            let mut name_buf = vec![0u16; 16_384];
            let mut name_len = name_buf.len() as u32;
            let mut data = vec![0u8; 64 * 1024];
            let mut data_len = data.len() as u32;
            let mut kind = 0u32;
            // SAFETY: buffers and lengths match; hkey is open.
            let rc = unsafe {
                RegEnumValueW(
                    hkey,
                    index,
                    name_buf.as_mut_ptr(),
                    &mut name_len,
                    std::ptr::null(),
                    &mut kind,
                    data.as_mut_ptr(),
                    &mut data_len,
                )
            };
            if rc == ERROR_NO_MORE_ITEMS {
                break Ok(());
            }
            if rc != 0 {
                break Err(format!("cannot read the registry key (error {rc})"));
            }
            index += 1;
            let vname = text(&name_buf[..name_len as usize]);
            let bytes = &data[..data_len as usize];
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let value = match kind {
                REG_SZ | REG_EXPAND_SZ => Value::Str(text(&units)),
                REG_DWORD if bytes.len() >= 4 => Value::Int(i64::from(u32::from_le_bytes([
                    bytes[0], bytes[1], bytes[2], bytes[3],
                ]))),
                REG_QWORD if bytes.len() >= 8 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&bytes[..8]);
                    Value::Int(i64::from_le_bytes(b))
                }
                REG_MULTI_SZ => Value::List(
                    units
                        .split(|&u| u == 0)
                        .filter(|s| !s.is_empty())
                        .map(String::from_utf16_lossy)
                        .collect(),
                ),
                _ => Value::Other("an unsupported registry type"),
            };
            out.insert(vname, value);
        };
        // SAFETY: hkey was opened above.
        unsafe { RegCloseKey(hkey) };
        result.map(|()| out)
    }
}

// ---------------------------------------------------------------------------
// Self-enrollment
// ---------------------------------------------------------------------------

/// What [`enroll_if_needed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoEnroll {
    /// No managed relay URL + code: nothing to do.
    NotConfigured,
    /// Credentials already exist (keychain or environment): the code is not used.
    AlreadyEnrolled,
    /// Enrolled now; the credentials are in the keychain.
    Enrolled { device_id: String },
    /// Stopped (signal, tray quit) while waiting to retry.
    Stopped,
}

/// Why self-enrollment did not happen. One line each, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum AutoEnrollError {
    #[error(
        "the managed enrollment code from {origin} was already used on this computer (device {device_id}) and is not sent again; sign in with `link-peeler enroll`, or ask your admin for a new code"
    )]
    AlreadyUsed { origin: String, device_id: String },
    #[error(
        "the relay refused the managed enrollment code from {origin} ({message}); it will not be tried again: ask your admin for a new code"
    )]
    Refused { origin: String, message: String },
    #[error("cannot enroll from the managed configuration: {0}")]
    Keychain(#[from] credentials::CredentialError),
    #[error(
        "enrolled as {device_id} from the managed configuration but could not store the credentials ({detail}); ask your admin to revoke {device_id} and deploy a new code"
    )]
    NotStored { device_id: String, detail: String },
    #[error(
        "cannot record the managed enrollment attempt in {path} ({detail}); the code was not sent"
    )]
    Record { path: String, detail: String },
    #[error("cannot enroll from the managed configuration: {0}")]
    Other(String),
}

/// The remembered attempts, keyed by the hash of (relay, code).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Attempts {
    pub attempts: BTreeMap<String, Attempt>,
}

/// One (relay, code) pair's history. The code itself is never stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Attempt {
    pub relay: String,
    /// Requests sent (or about to be sent) with this pair.
    pub tries: u32,
    /// Unix seconds of the last try.
    pub last_try: i64,
    /// Unix seconds before which the next try must not start (the relay's `Retry-After`).
    pub not_before: i64,
    pub outcome: Outcome,
    pub device_id: Option<String>,
    pub message: Option<String>,
}

/// Where a pair stands. `Enrolled`, `Refused` and `NotStored` are final.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Sent (or about to be) without a final answer yet: may be retried after a backoff.
    #[default]
    Pending,
    Enrolled,
    Refused,
    NotStored,
}

/// The attempt key: SHA-256 over the relay URL and the code (the code is not recoverable from it).
pub fn attempt_key(relay: &Url, code: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"link-peeler managed enrollment\0");
    h.update(relay.as_str().as_bytes());
    h.update(b"\0");
    h.update(code.trim().as_bytes());
    hex::encode(h.finalize())
}

/// The attempts file of a data dir.
pub fn attempts_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ATTEMPTS_FILE)
}

/// Reads the attempts file; a missing file is empty. An unreadable one is an
/// error: forgetting it could replay a code.
pub fn load_attempts(data_dir: &Path) -> Result<Attempts, String> {
    let path = attempts_path(data_dir);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("unreadable: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Attempts::default()),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes the attempts file atomically (temporary file, fsync, rename).
pub fn save_attempts(data_dir: &Path, attempts: &Attempts) -> Result<(), String> {
    std::fs::create_dir_all(data_dir).map_err(|e| e.to_string())?;
    let text = serde_json::to_vec_pretty(attempts).map_err(|e| e.to_string())?;
    let mut tmp = tempfile::NamedTempFile::new_in(data_dir).map_err(|e| e.to_string())?;
    tmp.write_all(&text).map_err(|e| e.to_string())?;
    tmp.as_file().sync_all().map_err(|e| e.to_string())?;
    tmp.persist(attempts_path(data_dir))
        .map_err(|e| e.error.to_string())?;
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// How long to wait before try number `tries + 1` of a pending pair: `min(60 s, 2^(tries-1) s)`
/// after the last try, so even a crash-looping agent sends at most one request a minute.
pub fn retry_wait(tries: u32, last_try: i64, now: i64) -> Duration {
    if tries == 0 {
        return Duration::ZERO;
    }
    let step = 1u64
        .checked_shl(tries.saturating_sub(1).min(31))
        .unwrap_or(u64::MAX)
        .min(super::backoff::CAP.as_secs());
    let elapsed = u64::try_from(now.saturating_sub(last_try)).unwrap_or(0);
    Duration::from_secs(step.saturating_sub(elapsed))
}

/// True for relay answers that say the code will never work (as opposed to "try later").
fn is_refusal(e: &RelayError) -> bool {
    matches!(e.status(), Some(s) if (400..500).contains(&s) && s != 408 && s != 429)
}

/// Enrolls this user from the managed relay URL + code when not enrolled yet.
///
/// Runs before the agent loop (`run --headless`, the tray). Never sends a
/// (relay, code) pair that already enrolled or was refused; retries
/// transient failures with backoff until `stop` is cancelled.
pub async fn enroll_if_needed(
    managed: &Managed,
    data_dir: &Path,
    profile: Option<&str>,
    stop: &CancellationToken,
) -> Result<AutoEnroll, AutoEnrollError> {
    let (Some(relay), Some(code)) = (&managed.relay, &managed.enrollment_code) else {
        return Ok(AutoEnroll::NotConfigured);
    };
    let source = managed.source.clone().unwrap_or_else(location);
    if credentials::from_env()?.is_some() {
        return Ok(AutoEnroll::AlreadyEnrolled);
    }
    let keychain = Keychain::open(profile)?;
    if keychain.load()?.is_some() {
        return Ok(AutoEnroll::AlreadyEnrolled);
    }
    let key = attempt_key(relay, code);
    let record_err = |detail: String| AutoEnrollError::Record {
        path: attempts_path(data_dir).display().to_string(),
        detail,
    };
    let request = EnrollRequest {
        code: code.trim().to_owned(),
        name: Some(super::host_name()),
        platform: Some(super::platform().to_owned()),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    };
    let client = RelayClient::new(relay.clone(), None)
        .map_err(|e| AutoEnrollError::Other(format!("cannot build the HTTP client: {e}")))?;
    loop {
        let mut all = load_attempts(data_dir).map_err(record_err)?;
        let mut attempt = all.attempts.get(&key).cloned().unwrap_or_else(|| Attempt {
            relay: relay.to_string(),
            ..Attempt::default()
        });
        match attempt.outcome {
            Outcome::Pending => {}
            Outcome::Enrolled | Outcome::NotStored => {
                return Err(AutoEnrollError::AlreadyUsed {
                    origin: source,
                    device_id: attempt.device_id.unwrap_or_else(|| "?".into()),
                });
            }
            Outcome::Refused => {
                return Err(AutoEnrollError::Refused {
                    origin: source,
                    message: format!(
                        "refused earlier: {}",
                        attempt.message.as_deref().unwrap_or("no reason given")
                    ),
                });
            }
        }
        let now = crate::signing::unix_now();
        let wait = retry_wait(attempt.tries, attempt.last_try, now).max(Duration::from_secs(
            u64::try_from(attempt.not_before - now).unwrap_or(0),
        ));
        if !wait.is_zero() {
            tracing::info!(
                wait_seconds = wait.as_secs(),
                "waiting before retrying managed enrollment"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return Ok(AutoEnroll::Stopped),
            }
        }
        // Remember the try before the code leaves this machine.
        attempt.tries = attempt.tries.saturating_add(1);
        attempt.last_try = crate::signing::unix_now();
        all.attempts.insert(key.clone(), attempt.clone());
        save_attempts(data_dir, &all).map_err(record_err)?;
        tracing::info!(relay = %relay, source = %source, try_number = attempt.tries, "enrolling from the managed configuration");

        let answer = tokio::select! {
            r = client.enroll(&request) => r,
            _ = stop.cancelled() => return Ok(AutoEnroll::Stopped),
        };
        let mut finish = |attempt: &mut Attempt,
                          outcome: Outcome,
                          device_id: Option<String>,
                          message: Option<String>| {
            attempt.outcome = outcome;
            attempt.device_id = device_id;
            attempt.message = message;
            all.attempts.insert(key.clone(), attempt.clone());
            save_attempts(data_dir, &all)
        };
        match answer {
            Ok(answer) => {
                let creds = DeviceCredentials {
                    device_id: answer.device_id.clone(),
                    device_secret: answer.device_secret,
                    relay: Some(relay.to_string()),
                };
                if let Err(e) = keychain.save(&creds) {
                    let _ = finish(
                        &mut attempt,
                        Outcome::NotStored,
                        Some(creds.device_id.clone()),
                        Some(e.to_string()),
                    );
                    return Err(AutoEnrollError::NotStored {
                        device_id: creds.device_id,
                        detail: e.to_string(),
                    });
                }
                finish(
                    &mut attempt,
                    Outcome::Enrolled,
                    Some(creds.device_id.clone()),
                    None,
                )
                .map_err(record_err)?;
                tracing::info!(device = %creds.device_id, relay = %relay, "enrolled from the managed configuration");
                return Ok(AutoEnroll::Enrolled {
                    device_id: creds.device_id,
                });
            }
            Err(e) if is_refusal(&e) => {
                let message = match &e {
                    RelayError::Api { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                finish(&mut attempt, Outcome::Refused, None, Some(message.clone()))
                    .map_err(record_err)?;
                tracing::error!(error = %e, "the relay refused the managed enrollment code");
                return Err(AutoEnrollError::Refused {
                    origin: source,
                    message,
                });
            }
            Err(e) => {
                // The code may or may not have been spent; the next try will tell (a
                // spent code is refused, and then never sent again).
                let floor = e
                    .retry_after()
                    .map(|d| d.min(super::backoff::MAX_RETRY_AFTER));
                attempt.not_before = attempt.last_try + floor.map_or(0, |d| d.as_secs() as i64);
                finish(&mut attempt, Outcome::Pending, None, Some(e.to_string()))
                    .map_err(record_err)?;
                tracing::warn!(error = %e, "managed enrollment failed; will retry with backoff");
            }
        }
    }
}

/// [`enroll_if_needed`] for a caller without a runtime (`run --headless`),
/// before the agent loop starts. A signal while it waits ends the process
/// (nothing is in flight yet), so no stop token is needed.
pub fn enroll_at_start(managed: &Managed, data_dir: &Path) -> Result<AutoEnroll, AutoEnrollError> {
    if !managed.can_enroll() {
        return Ok(AutoEnroll::NotConfigured);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AutoEnrollError::Other(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(enroll_if_needed(
        managed,
        data_dir,
        None,
        &CancellationToken::new(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "/etc/link-peeler/config.toml";

    #[test]
    fn toml_form_parses_and_validates() {
        let m = parse_toml(
            "relay = \"https://relay.example.com\"\nenrollment_code = \" K7Q2-ABCD \"\ncapacity = 8\nallow_networks = [\"10.20.0.0/16\"]\npoll_wait_seconds = 20\nuser_agent = \"UA\"\n",
            SRC,
        )
        .unwrap();
        assert_eq!(m.source.as_deref(), Some(SRC));
        assert_eq!(
            m.relay.as_ref().unwrap().as_str(),
            "https://relay.example.com/"
        );
        assert_eq!(m.enrollment_code.as_deref(), Some("K7Q2-ABCD"));
        assert_eq!(m.capacity, Some(8));
        assert_eq!(m.poll_wait_seconds, Some(20));
        assert_eq!(
            m.allow_networks,
            Some(vec!["10.20.0.0/16".parse().unwrap()])
        );
        assert!(m.can_enroll());
        assert_eq!(
            m.keys(),
            [
                "relay",
                "enrollment_code",
                "capacity",
                "user_agent",
                "allow_networks",
                "poll_wait_seconds"
            ]
        );
    }

    #[test]
    fn the_shipped_template_manages_nothing() {
        let template = include_str!("../../installer/linux/config.toml");
        let m = parse_toml(template, SRC).unwrap();
        assert_eq!(m, Managed::default());
        assert!(m.source.is_none() && m.keys().is_empty());
        // Empty strings count as "not managed" (an MSI property left empty, a blank template line).
        let m = parse_toml("relay = \"\"\nenrollment_code = \"  \"\n", SRC).unwrap();
        assert_eq!(m, Managed::default());
    }

    #[test]
    fn malformed_toml_names_the_source_in_one_line() {
        for (bad, needle) in [
            ("relay = ", "line 1"),
            ("relay = \"http://relay.example.com\"", "https://"),
            ("capacity = 0", "capacity"),
            ("capacity = 65", "capacity"),
            ("poll_wait_seconds = 31", "poll_wait_seconds"),
            ("allow_networks = [\"nope\"]", "allow_networks"),
            ("device_secret = \"s3cr3t\"", "unknown field"),
            ("enrollment_code = \"a\\u0007b\"", "enrollment_code"),
            ("[[[", "line 1"),
        ] {
            let e = parse_toml(bad, SRC).unwrap_err().to_string();
            assert!(e.contains(SRC), "{e}");
            assert!(e.contains(needle), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    const PLIST_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>PayloadUUID</key><string>added-by-the-mdm</string>
    <key>RelayUrl</key><string>https://relay.example.com/lp</string>
    <key>EnrollmentCode</key><string>K7Q2-ABCD</string>
    <key>Capacity</key><integer>6</integer>
    <key>AllowNetworks</key><array><string>10.1.0.0/16</string><string>fd00::/8</string></array>
    <key>PollWaitSeconds</key><integer>0</integer>
</dict>
</plist>"#;

    #[test]
    fn plist_form_xml_and_binary() {
        let m = parse_plist(PLIST_XML.as_bytes(), MACOS_PATH).unwrap();
        assert_eq!(
            m.relay.as_ref().unwrap().as_str(),
            "https://relay.example.com/lp/"
        );
        assert_eq!(m.enrollment_code.as_deref(), Some("K7Q2-ABCD"));
        assert_eq!(m.capacity, Some(6));
        assert_eq!(m.poll_wait_seconds, Some(0));
        assert_eq!(m.allow_networks.as_ref().unwrap().len(), 2);
        assert_eq!(m.source.as_deref(), Some(MACOS_PATH));

        // cfprefsd writes managed preferences as binary property lists.
        let value = plist::Value::from_reader_xml(PLIST_XML.as_bytes()).unwrap();
        let mut binary = vec![];
        value.to_writer_binary(&mut binary).unwrap();
        assert!(binary.starts_with(b"bplist00"));
        assert_eq!(parse_plist(&binary, MACOS_PATH).unwrap(), m);
    }

    #[test]
    fn the_example_mobileconfig_payload_parses() {
        // The shipped MDM profile's payload dictionary is what lands in Managed Preferences.
        let profile = include_bytes!("../../installer/macos/link-peeler.mobileconfig");
        let v = plist::Value::from_reader_xml(&profile[..]).unwrap();
        let content = v.as_dictionary().unwrap()["PayloadContent"]
            .as_array()
            .unwrap();
        let payload = content[0].as_dictionary().unwrap();
        assert_eq!(payload["PayloadType"].as_string(), Some(MACOS_BUNDLE_ID));
        let mut bytes = vec![];
        plist::Value::Dictionary(payload.clone())
            .to_writer_xml(&mut bytes)
            .unwrap();
        let m = parse_plist(&bytes, MACOS_PATH).unwrap();
        assert!(m.can_enroll(), "{m:?}");
    }

    #[test]
    fn malformed_plists_are_one_line_errors() {
        let cases: [(&[u8], &str); 5] = [
            (b"not a plist", "not a property list"),
            (
                b"<plist version=\"1.0\"><array/></plist>",
                "not a dictionary",
            ),
            (
                b"<plist version=\"1.0\"><dict><key>Capacity</key><true/></dict></plist>",
                "Capacity must be an integer, not a boolean",
            ),
            (
                b"<plist version=\"1.0\"><dict><key>RelayUrl</key><integer>1</integer></dict></plist>",
                "RelayUrl must be a string",
            ),
            (
                b"<plist version=\"1.0\"><dict><key>AllowNetworks</key><array><integer>1</integer></array></dict></plist>",
                "AllowNetworks must be an array of strings",
            ),
        ];
        for (bytes, needle) in cases {
            let e = parse_plist(bytes, MACOS_PATH).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
            assert!(e.contains(MACOS_PATH) && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn registry_shaped_values() {
        // What HKLM\SOFTWARE\Policies\Link Peeler yields: REG_SZ, REG_DWORD, REG_MULTI_SZ.
        let mut v = BTreeMap::new();
        v.insert("RelayUrl".into(), Value::Str("https://r.example".into()));
        v.insert("EnrollmentCode".into(), Value::Str("CODE-1".into()));
        v.insert("Capacity".into(), Value::Int(3));
        v.insert("PollWaitSeconds".into(), Value::Str("10".into()));
        v.insert(
            "AllowNetworks".into(),
            Value::List(vec!["10.0.0.0/8".into()]),
        );
        v.insert("SomethingElse".into(), Value::Other("binary"));
        let m = from_keyed(&v, "HKLM").unwrap();
        assert_eq!(m.capacity, Some(3));
        assert_eq!(m.poll_wait_seconds, Some(10));
        assert!(m.can_enroll());
        // An MSI installed without ENROLLMENT_CODE writes no value; an empty one is unmanaged too.
        v.insert("EnrollmentCode".into(), Value::Str(String::new()));
        v.insert(
            "AllowNetworks".into(),
            Value::Str("10.0.0.0/8, 192.168.0.0/16".into()),
        );
        let m = from_keyed(&v, "HKLM").unwrap();
        assert!(!m.can_enroll());
        assert_eq!(m.allow_networks.unwrap().len(), 2);
        v.insert("Capacity".into(), Value::Int(-1));
        assert!(from_keyed(&v, "HKLM").is_err());
    }

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
        assert!(m.is_managed("capacity") && !m.is_managed("user_agent"));
    }

    #[test]
    fn the_env_override_reads_a_file_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load_file(&dir.path().join("missing.toml")).unwrap(),
            Managed::default()
        );
        let p = dir.path().join("managed.plist");
        std::fs::write(&p, PLIST_XML).unwrap();
        assert!(load_file(&p).unwrap().can_enroll());
        let p = dir.path().join("managed.toml");
        std::fs::write(&p, "capacity = 3\n").unwrap();
        assert_eq!(load_file(&p).unwrap().capacity, Some(3));
    }

    #[test]
    fn attempt_keys_hide_the_code_and_differ_per_relay() {
        let a = relay_url_for_test("https://a.example");
        let b = relay_url_for_test("https://b.example");
        let k = attempt_key(&a, "K7Q2-ABCD");
        assert_eq!(k.len(), 64);
        assert!(!k.contains("K7Q2"));
        assert_eq!(k, attempt_key(&a, " K7Q2-ABCD "));
        assert_ne!(k, attempt_key(&b, "K7Q2-ABCD"));
        assert_ne!(k, attempt_key(&a, "K7Q2-ABCE"));
    }

    fn relay_url_for_test(s: &str) -> Url {
        config::relay_url(s).unwrap()
    }

    #[test]
    fn retry_waits_grow_to_a_minute_and_count_from_the_last_try() {
        assert_eq!(retry_wait(0, 0, 1000), Duration::ZERO);
        assert_eq!(retry_wait(1, 1000, 1000), Duration::from_secs(1));
        assert_eq!(retry_wait(3, 1000, 1000), Duration::from_secs(4));
        assert_eq!(retry_wait(30, 1000, 1000), Duration::from_secs(60));
        assert_eq!(retry_wait(30, 1000, 1030), Duration::from_secs(30));
        assert_eq!(retry_wait(30, 1000, 5000), Duration::ZERO);
    }

    #[test]
    fn attempts_file_round_trips_and_never_holds_the_code() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_attempts(dir.path()).unwrap(), Attempts::default());
        let mut all = Attempts::default();
        all.attempts.insert(
            "k".into(),
            Attempt {
                relay: "https://r.example/".into(),
                tries: 2,
                last_try: 5,
                not_before: 0,
                outcome: Outcome::Refused,
                device_id: None,
                message: Some("enrollment code was already used".into()),
            },
        );
        save_attempts(dir.path(), &all).unwrap();
        assert_eq!(load_attempts(dir.path()).unwrap(), all);
        std::fs::write(attempts_path(dir.path()), "{").unwrap();
        assert!(
            load_attempts(dir.path()).is_err(),
            "a corrupt record is an error, not a reset"
        );
    }
}
