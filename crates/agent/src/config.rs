//! Agent settings: `config.toml` in the user's config dir, overridden by flags.
//!
//! Why a file and flags: an admin deploys one `config.toml` (relay URL,
//! capacity, allowed lab networks), a developer overrides one value on the
//! command line. Precedence is flag > file > built-in default; the relay URL
//! may also come from the credentials saved at enrollment, so `enroll` then
//! `run --headless` works with no file at all.
//!
//! Secrets never live here (protocol.md §4.5): unknown keys are refused, so a
//! `device_secret = "…"` line is an error rather than a silently kept secret.
//!
//! Paths can be redirected with `LINK_PEELER_CONFIG` (the file) and
//! `LINK_PEELER_DATA_DIR` (outbox, logs, lock) so tests and several agents on
//! one account stay apart.
//!
//! `relay_ca_file` names a PEM file of certificate authorities trusted for
//! the relay's certificate on top of the OS trust store (a relay with a
//! certificate from an organisation's internal CA). It is read and checked
//! when the settings are made, so a missing or malformed file stops the
//! agent with one line naming it; it is used for the relay connection only,
//! never by the resolver.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use link_peeler_wire::client::{ExtraRoots, is_loopback_host};
use link_peeler_wire::protocol::{USER_AGENT_RULE, is_valid_user_agent};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::control::keys;
use crate::control::{Layer, Policy};

/// Environment variable naming the config file (overrides the default location).
pub const ENV_CONFIG: &str = "LINK_PEELER_CONFIG";
/// Environment variable naming the data dir (outbox, logs, instance lock).
pub const ENV_DATA_DIR: &str = "LINK_PEELER_DATA_DIR";

/// Resolutions run at once unless configured.
pub const DEFAULT_CAPACITY: u32 = 4;
/// Longest a long-poll is held open by the relay (protocol.md §4 allows 0–30).
pub const DEFAULT_POLL_WAIT_SECONDS: u32 = 30;
/// Largest `relay_ca_file` read (a bundle of a few hundred CAs is far below).
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why settings could not be assembled. Every message fits on one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid relay URL {url:?}: {why}")]
    RelayUrl { url: String, why: String },
    #[error(
        "no relay URL: pass --relay URL, set `relay` in {path}, or enroll with `link-peeler enroll --relay URL --code CODE`"
    )]
    NoRelay { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    /// `relay_ca_file` cannot be used (missing, not PEM, no certificate).
    #[error("{0}")]
    RelayCa(String),
    #[error(
        "cannot find a home directory for the config and data dirs; set {ENV_CONFIG} and {ENV_DATA_DIR}"
    )]
    NoHome,
}

/// The contents of `config.toml`. Every key is optional.
///
/// Unknown keys are refused by [`parse_file`] (so are secrets); the policy
/// keys ([`crate::control::keys`]) are read and checked into `policy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileConfig {
    /// Relay base URL (`https://…`; `http://` only for loopback).
    pub relay: Option<String>,
    /// Resolutions run at once (1–64, default 4).
    pub capacity: Option<u32>,
    /// User-Agent the resolver sends (default: the resolver's own).
    pub user_agent: Option<String>,
    /// Extra networks the resolver may fetch, e.g. `["127.0.0.0/8"]` for a lab.
    #[serde(default)]
    pub allow_networks: Vec<String>,
    /// How long the relay may hold a poll open (0–30 s, default 30).
    pub poll_wait_seconds: Option<u32>,
    /// PEM file of CAs trusted for the relay's certificate, besides the OS
    /// trust store; a relative path is relative to the config file.
    pub relay_ca_file: Option<String>,
    /// The user's policy settings (pauses, hours, quotas, destinations, retention).
    #[serde(skip)]
    pub policy: Layer,
}

/// The keys of [`FileConfig`] besides the policy keys.
const FILE_KEYS: [&str; 6] = [
    "relay",
    "capacity",
    "user_agent",
    "allow_networks",
    "poll_wait_seconds",
    "relay_ca_file",
];

/// Command-line overrides; `None`/empty means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub relay: Option<String>,
    pub capacity: Option<u32>,
    pub allow_networks: Vec<IpNet>,
    pub user_agent: Option<String>,
    /// `--relay-ca-file` (or the managed `relay_ca_file`).
    pub relay_ca_file: Option<PathBuf>,
    /// The managed CA file, already read and checked while the managed source
    /// was validated: used as it is instead of reading the file again.
    pub relay_ca: Option<RelayCa>,
    /// Policy values the admin locked (the managed source's plain keys).
    pub policy_locked: Layer,
    /// Policy defaults the admin set (the managed source's `default_…` keys).
    pub policy_defaults: Layer,
}

/// The private CA(s) trusted for the relay: `relay_ca_file` and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayCa {
    pub path: PathBuf,
    pub roots: ExtraRoots,
}

impl RelayCa {
    /// Reads and checks a PEM file of CA certificates. The error is one line
    /// naming the file: missing or unreadable, not PEM, no certificate.
    pub fn load(path: &Path) -> Result<RelayCa, String> {
        let bad = |why: String| format!("relay_ca_file {}: {why}", path.display());
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        if !meta.is_file() {
            return Err(bad("not a file".into()));
        }
        if meta.len() > MAX_CA_FILE_BYTES {
            return Err(bad(format!(
                "larger than {} MiB; it should hold a few PEM certificates",
                MAX_CA_FILE_BYTES / (1024 * 1024)
            )));
        }
        let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let roots = ExtraRoots::from_pem(&pem).map_err(bad)?;
        Ok(RelayCa {
            path: path.to_path_buf(),
            roots,
        })
    }
}

/// The settings the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `None` until a relay is known (flag, file, or enrolled credentials).
    pub relay: Option<Url>,
    pub capacity: u32,
    pub user_agent: Option<String>,
    pub allow_networks: Vec<IpNet>,
    pub poll_wait_seconds: u32,
    /// CAs trusted for the relay besides the OS trust store (`relay_ca_file`).
    pub relay_ca: Option<RelayCa>,
    /// The effective policy, each value with its source.
    pub policy: Policy,
}

impl Settings {
    /// The extra CAs for the relay connection, if any.
    pub fn relay_roots(&self) -> Option<&ExtraRoots> {
        self.relay_ca.as_ref().map(|c| &c.roots)
    }
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "link-peeler")
}

/// Where `config.toml` is read from: `explicit` > `$LINK_PEELER_CONFIG` > the user's config dir.
pub fn config_path(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(ENV_CONFIG).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    project_dirs()
        .map(|d| d.config_dir().join("config.toml"))
        .ok_or(ConfigError::NoHome)
}

/// Where the outbox, logs and instance lock live: `$LINK_PEELER_DATA_DIR` > the user's local data dir.
pub fn data_dir() -> Result<PathBuf, ConfigError> {
    if let Some(p) = std::env::var_os(ENV_DATA_DIR).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    project_dirs()
        .map(|d| d.data_local_dir().to_path_buf())
        .ok_or(ConfigError::NoHome)
}

/// Reads `path`; a missing file is an empty config, a malformed one an error.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(source) => {
            return Err(ConfigError::Unreadable {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    parse_file(&text).map_err(|message| ConfigError::Malformed {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses config text; the error is one line (toml's own message spans several).
pub fn parse_file(text: &str) -> Result<FileConfig, String> {
    let table = parse_toml_as::<toml::Table>(text)?;
    let mut policy = BTreeMap::new();
    for (k, v) in &table {
        if FILE_KEYS.contains(&k.as_str()) {
            continue;
        }
        if !keys::is_key(k) {
            return Err(format!("unknown field `{k}`"));
        }
        policy.insert(k.clone(), keys::from_toml(v));
    }
    let mut file = parse_toml_as::<FileConfig>(text)?;
    file.policy = keys::parse_layer(&policy)?;
    Ok(file)
}

/// Parses TOML into `T`; the error is one line with the line number.
pub fn parse_toml_as<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str::<T>(text).map_err(|e| {
        let location = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: ")
            })
            .unwrap_or_default();
        format!("{location}{}", e.message().trim().replace('\n', " "))
    })
}

/// Merges file and flags into [`Settings`], validating every value. A
/// relative `relay_ca_file` in `file` is taken as it is (relative to the
/// working directory); [`load`] makes it relative to the config file.
pub fn resolve(file: &FileConfig, flags: &Overrides) -> Result<Settings, ConfigError> {
    let relay = match flags.relay.as_deref().or(file.relay.as_deref()) {
        Some(raw) => Some(relay_url(raw)?),
        None => None,
    };
    let capacity = flags.capacity.or(file.capacity).unwrap_or(DEFAULT_CAPACITY);
    if !(1..=link_peeler_wire::protocol::MAX_POLL_CAPACITY).contains(&capacity) {
        return Err(ConfigError::Invalid(format!(
            "capacity must be between 1 and {}, not {capacity}",
            link_peeler_wire::protocol::MAX_POLL_CAPACITY
        )));
    }
    let poll_wait_seconds = file.poll_wait_seconds.unwrap_or(DEFAULT_POLL_WAIT_SECONDS);
    if poll_wait_seconds > link_peeler_wire::protocol::MAX_POLL_WAIT_SECONDS {
        return Err(ConfigError::Invalid(format!(
            "poll_wait_seconds must be between 0 and {}, not {poll_wait_seconds}",
            link_peeler_wire::protocol::MAX_POLL_WAIT_SECONDS
        )));
    }
    let allow_networks = if flags.allow_networks.is_empty() {
        file.allow_networks
            .iter()
            .map(|s| {
                s.parse::<IpNet>().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "allow_networks: {s:?} is not a CIDR such as 127.0.0.0/8"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        flags.allow_networks.clone()
    };
    let user_agent = flags.user_agent.clone().or_else(|| file.user_agent.clone());
    if let Some(ua) = &user_agent
        && !is_valid_user_agent(ua)
    {
        return Err(ConfigError::Invalid(format!(
            "user agent must be {USER_AGENT_RULE}"
        )));
    }
    let relay_ca_file = match &flags.relay_ca_file {
        Some(p) => Some(p.clone()),
        None => file
            .relay_ca_file
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    };
    let relay_ca = match (&flags.relay_ca, relay_ca_file) {
        (Some(loaded), _) => Some(loaded.clone()),
        (None, Some(p)) => Some(RelayCa::load(&p).map_err(ConfigError::RelayCa)?),
        (None, None) => None,
    };
    let policy = Policy::merge(&file.policy, &flags.policy_locked, &flags.policy_defaults);
    Ok(Settings {
        relay,
        capacity,
        user_agent,
        allow_networks,
        poll_wait_seconds,
        relay_ca,
        policy,
    })
}

/// A relative `relay_ca_file` in `config_path` is relative to that file's
/// directory, not to wherever the agent was started.
pub fn anchor_relay_ca_file(file: &mut FileConfig, config_path: &Path) {
    if let (Some(ca), Some(dir)) = (&file.relay_ca_file, config_path.parent()) {
        let ca = ca.trim();
        if !ca.is_empty() && Path::new(ca).is_relative() {
            file.relay_ca_file = Some(dir.join(ca).display().to_string());
        }
    }
}

/// Parses and checks a relay base URL without touching the network.
///
/// `https://` always; `http://` only when the host is loopback (`127.0.0.0/8`,
/// `::1`, `localhost`), so a relay secret never crosses a network in clear
/// text. The check looks only at the URL text: no name is resolved, no
/// connection is made, so a refused URL is never contacted.
pub fn relay_url(raw: &str) -> Result<Url, ConfigError> {
    let bad = |why: &str| ConfigError::RelayUrl {
        url: raw.to_owned(),
        why: why.to_owned(),
    };
    let mut url = Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not contain a query or fragment"));
    }
    let host = url.host().ok_or_else(|| bad("must have a host"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => {
            return Err(bad(
                "plain http:// is allowed only for a loopback relay (127.0.0.1, ::1, localhost); use https://",
            ));
        }
        other => return Err(bad(&format!("scheme {other}: must be https://"))),
    }
    // A relay behind a path prefix (https://host/lp/) keeps it when paths are joined.
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// The loopback ranges (`127.0.0.0/8`, `::1/128`): what `demo` and tests let the resolver reach.
pub fn loopback_networks() -> Vec<IpNet> {
    vec![
        IpNet::new_assert(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0)), 8),
        IpNet::new_assert(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 128),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_url_rules() {
        for ok in [
            "https://relay.example.com",
            "https://relay.example.com/lp",
            "http://127.0.0.1:8787",
            "http://127.5.6.7/",
            "http://[::1]:9/",
            "http://localhost:8787",
        ] {
            let u = relay_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(u.path().ends_with('/'), "{u}");
        }
        for bad in [
            "http://relay.example.com",
            "http://10.0.0.1/",
            "http://[::2]/",
            "http://localhost.example.com/",
            "ftp://relay.example.com",
            "relay.example.com",
            "https://user:pw@relay.example.com",
            "https://relay.example.com/?x=1",
            "",
        ] {
            assert!(relay_url(bad).is_err(), "{bad} must be refused");
        }
        let e = relay_url("http://relay.example.com")
            .unwrap_err()
            .to_string();
        assert!(e.contains("https://"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn path_prefix_is_kept_when_joining() {
        let u = relay_url("https://h.example/lp").unwrap();
        assert_eq!(
            u.join("api/agent/poll").unwrap().as_str(),
            "https://h.example/lp/api/agent/poll"
        );
    }

    #[test]
    fn flags_override_file() {
        let file = parse_file(
            "relay = \"https://a.example\"\ncapacity = 8\nallow_networks = [\"10.1.0.0/16\"]\nuser_agent = \"file\"\n",
        )
        .unwrap();
        let s = resolve(&file, &Overrides::default()).unwrap();
        assert_eq!(s.capacity, 8);
        assert_eq!(s.relay.unwrap().as_str(), "https://a.example/");
        assert_eq!(s.allow_networks, vec!["10.1.0.0/16".parse().unwrap()]);
        let flags = Overrides {
            relay: Some("http://127.0.0.1:1".into()),
            capacity: Some(32),
            allow_networks: vec!["127.0.0.0/8".parse().unwrap()],
            user_agent: Some("flag".into()),
            ..Default::default()
        };
        let s = resolve(&file, &flags).unwrap();
        assert_eq!(s.capacity, 32);
        assert_eq!(s.user_agent.as_deref(), Some("flag"));
        assert_eq!(s.relay.unwrap().as_str(), "http://127.0.0.1:1/");
        assert_eq!(s.allow_networks, vec!["127.0.0.0/8".parse().unwrap()]);
    }

    #[test]
    fn defaults_and_bounds() {
        let s = resolve(&FileConfig::default(), &Overrides::default()).unwrap();
        assert_eq!(s.capacity, DEFAULT_CAPACITY);
        assert_eq!(s.poll_wait_seconds, DEFAULT_POLL_WAIT_SECONDS);
        assert!(s.relay.is_none());
        for cap in [0, 65] {
            let flags = Overrides {
                capacity: Some(cap),
                ..Default::default()
            };
            assert!(resolve(&FileConfig::default(), &flags).is_err());
        }
        let file = FileConfig {
            poll_wait_seconds: Some(31),
            ..Default::default()
        };
        assert!(resolve(&file, &Overrides::default()).is_err());
        let file = FileConfig {
            allow_networks: vec!["not-a-net".into()],
            ..Default::default()
        };
        assert!(resolve(&file, &Overrides::default()).is_err());
    }

    #[test]
    fn malformed_or_secret_bearing_files_are_refused_in_one_line() {
        for bad in [
            "relay = ",
            "capacity = \"four\"",
            "device_secret = \"s3cr3t\"",
            "[[[",
        ] {
            let e = parse_file(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
            assert!(!e.is_empty());
        }
        assert!(
            parse_file("capacity = \"four\"")
                .unwrap_err()
                .contains("line 1")
        );
        assert_eq!(parse_file("").unwrap(), FileConfig::default());
    }

    #[test]
    fn missing_file_is_empty_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = load_file(&dir.path().join("nope.toml")).unwrap();
        assert_eq!(cfg, FileConfig::default());
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "capacity = [").unwrap();
        let e = load_file(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && !e.contains('\n'), "{e}");
    }

    /// A PEM file holding one freshly made CA certificate.
    fn ca_file(dir: &Path, name: &str) -> PathBuf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let path = dir.join(name);
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        path
    }

    #[test]
    fn relay_ca_file_flag_wins_over_the_file_and_is_read_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let from_file = ca_file(dir.path(), "file-ca.pem");
        let from_flag = ca_file(dir.path(), "flag-ca.pem");
        let file = FileConfig {
            relay_ca_file: Some(from_file.display().to_string()),
            ..Default::default()
        };
        let s = resolve(&file, &Overrides::default()).unwrap();
        let ca = s.relay_ca.as_ref().unwrap();
        assert_eq!(ca.path, from_file);
        assert_eq!(ca.roots.len(), 1);
        assert!(s.relay_roots().is_some());
        let flags = Overrides {
            relay_ca_file: Some(from_flag.clone()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&file, &flags).unwrap().relay_ca.unwrap().path,
            from_flag
        );
        // Unset (or blank) means the OS trust store only.
        let s = resolve(
            &parse_file("relay_ca_file = \"  \"\n").unwrap(),
            &Overrides::default(),
        );
        assert!(s.unwrap().relay_ca.is_none());
    }

    #[test]
    fn relay_ca_file_in_config_toml_is_relative_to_the_file() {
        let mut file = parse_file("relay_ca_file = \"certs/ca.pem\"\n").unwrap();
        anchor_relay_ca_file(
            &mut file,
            Path::new("/home/u/.config/link-peeler/config.toml"),
        );
        assert_eq!(
            file.relay_ca_file.as_deref(),
            Some(
                Path::new("/home/u/.config/link-peeler/certs/ca.pem")
                    .display()
                    .to_string()
                    .as_str()
            )
        );
        let mut file = parse_file("relay_ca_file = \"/etc/ca.pem\"\n").unwrap();
        anchor_relay_ca_file(&mut file, Path::new("/x/config.toml"));
        assert_eq!(file.relay_ca_file.as_deref(), Some("/etc/ca.pem"));
    }

    #[test]
    fn a_bad_relay_ca_file_is_a_one_line_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("not-pem.pem");
        std::fs::write(&not_pem, b"\x30\x82 binary DER, not PEM").unwrap();
        let key_only = dir.path().join("key.pem");
        std::fs::write(
            &key_only,
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        for (path, needle) in [
            (dir.path().join("missing.pem"), "cannot read it"),
            (dir.path().to_path_buf(), "not a file"),
            (not_pem, "not a PEM file"),
            (key_only, "contains no certificate"),
        ] {
            let flags = Overrides {
                relay_ca_file: Some(path.clone()),
                ..Default::default()
            };
            let e = resolve(&FileConfig::default(), &flags)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(
                e.contains("relay_ca_file") && e.contains(&path.display().to_string()),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn loopback_networks_cover_both_families() {
        let nets = loopback_networks();
        assert!(
            nets.iter()
                .any(|n| n.contains(&IpAddr::from([127, 0, 0, 9])))
        );
        assert!(
            nets.iter()
                .any(|n| n.contains(&IpAddr::from(std::net::Ipv6Addr::LOCALHOST)))
        );
    }

    #[test]
    fn a_relay_ca_file_over_the_size_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pem");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_CA_FILE_BYTES + 1).unwrap();
        let e = RelayCa::load(&big).unwrap_err();
        assert!(e.contains("larger than") && e.contains("big.pem"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn policy_keys_in_the_users_file() {
        let file = parse_file(
            "relay = \"https://a.example\"\npause_on_metered = false\nallowed_hours = \"09:00-17:00\"\nmax_bytes_per_month = \"1GiB\"\ndeny_domains = [\"ads.example\"]\n",
        )
        .unwrap();
        let s = resolve(&file, &Overrides::default()).unwrap();
        let p = &s.policy;
        assert!(!p.pause_on_metered.value);
        assert_eq!(p.pause_on_metered.source, crate::control::Source::User);
        assert_eq!(p.allowed_hours.value.to_string(), "09:00-17:00");
        assert_eq!(p.max_bytes_per_month.value, 1 << 30);
        assert!(!p.destination_allowed("x.ads.example"));
        assert!(p.pause_on_battery.value);
        assert_eq!(p.pause_on_battery.source, crate::control::Source::BuiltIn);
        // An admin's lock wins over the user's value; an admin's default does not.
        let flags = Overrides {
            policy_locked: Layer {
                pause_on_metered: Some(true),
                ..Default::default()
            },
            policy_defaults: Layer {
                allowed_hours: Some(crate::control::schedule::Hours::always()),
                max_links_per_day: Some(7),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = resolve(&file, &flags).unwrap().policy;
        assert!(p.pause_on_metered.value);
        assert_eq!(
            p.pause_on_metered.source,
            crate::control::Source::ManagedLocked
        );
        assert_eq!(p.allowed_hours.source, crate::control::Source::User);
        assert_eq!(p.max_links_per_day.value, 7);
        assert_eq!(
            p.max_links_per_day.source,
            crate::control::Source::ManagedDefault
        );
    }

    /// A malformed policy value in the user's file names the key and the file.
    #[test]
    fn malformed_policy_values_in_the_users_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        for (text, key) in [
            ("pause_on_metered = \"yes please\"", "pause_on_metered"),
            ("pause_on_battery = 2", "pause_on_battery"),
            ("allowed_hours = \"9-5\"", "allowed_hours"),
            ("allowed_days = []", "allowed_days"),
            ("max_links_per_hour = 0", "max_links_per_hour"),
            ("max_links_per_day = \"many\"", "max_links_per_day"),
            ("max_bytes_per_day = -1", "max_bytes_per_day"),
            (
                "max_bytes_per_month = \"2 furlongs\"",
                "max_bytes_per_month",
            ),
            ("allow_domains = [\"*\"]", "allow_domains"),
            ("deny_domains = \"https://ads.example/\"", "deny_domains"),
            ("activity_retention_days = 99999", "activity_retention_days"),
            // Managed-only spellings are not the user's.
            (
                "default_pause_on_metered = true",
                "default_pause_on_metered",
            ),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = load_file(&p).unwrap_err().to_string();
            assert!(e.contains("config.toml") && e.contains(key), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
