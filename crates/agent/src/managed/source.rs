//! The three forms an admin writes managed settings in — TOML
//! (`/etc/link-peeler/config.toml`), a property list (macOS managed
//! preferences) and registry values (Windows policies) — parsed and validated
//! into one [`Managed`]. Pure functions over bytes and maps, so every form is
//! tested on every OS.

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::Managed;
use crate::config::{self, ConfigError, RelayCa};
use crate::control::keys::{self, Layer};
use link_peeler_wire::protocol::EnrollRequest;

/// One value from a keyed source (property list or registry), before validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    /// A property list's boolean (the registry has none: a DWORD 0/1 is read as [`Value::Int`]).
    Bool(bool),
    List(Vec<String>),
    /// Any other type (date, data, dictionary, real, …): always an error for a known key.
    Other(&'static str),
}

/// The managed-config file format, as TOML (`/etc/link-peeler/config.toml`).
///
/// Unknown keys are refused by [`parse_toml`] (a typo must not be silently
/// ignored); the policy keys ([`crate::control::keys`]) are read from the
/// same table into `policy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ManagedFile {
    pub relay: Option<String>,
    pub enrollment_code: Option<String>,
    pub capacity: Option<u32>,
    pub user_agent: Option<String>,
    pub allow_networks: Option<Vec<String>>,
    pub poll_wait_seconds: Option<u32>,
    /// An absolute path to a PEM file of CAs trusted for the relay.
    pub relay_ca_file: Option<String>,
    /// The organisation's name, for "Managed by <organization>" in the tray.
    pub organization: Option<String>,
    /// The organisation agrees, for its users, to let the agent use this
    /// computer's connection: the tray does not ask, it says so.
    pub consent_given: Option<bool>,
    /// The policy keys, locked (`pause_on_metered`) and defaults
    /// (`default_pause_on_metered`), as read, before validation.
    #[serde(skip)]
    pub policy: BTreeMap<String, Value>,
}

pub(super) fn invalid(source: &str, message: impl std::fmt::Display) -> ConfigError {
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
            && !(1..=link_peeler_wire::protocol::MAX_POLL_CAPACITY).contains(&c)
        {
            return Err(err(format!(
                "capacity must be between 1 and {}, not {c}",
                link_peeler_wire::protocol::MAX_POLL_CAPACITY
            )));
        }
        if let Some(w) = self.poll_wait_seconds
            && w > link_peeler_wire::protocol::MAX_POLL_WAIT_SECONDS
        {
            return Err(err(format!(
                "poll_wait_seconds must be between 0 and {}, not {w}",
                link_peeler_wire::protocol::MAX_POLL_WAIT_SECONDS
            )));
        }
        let organization = text("organization", self.organization)?;
        let user_agent = text("user_agent", self.user_agent)?;
        if let Some(ua) = &user_agent
            && !link_peeler_wire::protocol::is_valid_user_agent(ua)
        {
            return Err(err(format!(
                "user_agent must be {}",
                link_peeler_wire::protocol::USER_AGENT_RULE
            )));
        }
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
        let relay_ca = match text("relay_ca_file", self.relay_ca_file)? {
            // Relative to what? The registry and a plist have no directory; say it plainly.
            Some(p) if !Path::new(&p).is_absolute() => {
                return Err(err(format!(
                    "relay_ca_file must be an absolute path, not {p:?}"
                )));
            }
            Some(p) => Some(RelayCa::load(Path::new(&p)).map_err(err)?),
            None => None,
        };
        let (policy, policy_defaults) = keys::parse_managed(&self.policy).map_err(err)?;
        let m = Managed {
            source: None,
            policy,
            policy_defaults,
            relay,
            enrollment_code,
            capacity: self.capacity,
            user_agent,
            allow_networks,
            poll_wait_seconds: self.poll_wait_seconds,
            relay_ca,
            organization,
            consent_given: self.consent_given.unwrap_or(false),
        };
        let managed = !m.keys().is_empty()
            || m.policy_defaults != Layer::default()
            || m.organization.is_some();
        let source = managed.then(|| source.to_owned());
        Ok(Managed { source, ..m })
    }
}

/// Parses the TOML form. Unknown keys are errors (a typo must not be silently ignored).
pub fn parse_toml(text: &str, source: &str) -> Result<Managed, ConfigError> {
    let table = config::parse_toml_as::<toml::Table>(text).map_err(|m| invalid(source, m))?;
    let mut policy = BTreeMap::new();
    for (k, v) in &table {
        if KEYED.iter().any(|(_, t)| t == k) {
            continue;
        }
        let base = k.strip_prefix(keys::DEFAULT_PREFIX).unwrap_or(k);
        if !keys::is_key(base) {
            return Err(invalid(source, format!("unknown field `{k}`")));
        }
        policy.insert(k.clone(), keys::from_toml(v));
    }
    let mut file = config::parse_toml_as::<ManagedFile>(text).map_err(|m| invalid(source, m))?;
    file.policy = policy;
    file.validate(source)
}

/// The key names of the property-list and registry forms, and their TOML twins.
const KEYED: [(&str, &str); 9] = [
    ("RelayUrl", "relay"),
    ("EnrollmentCode", "enrollment_code"),
    ("Capacity", "capacity"),
    ("UserAgent", "user_agent"),
    ("AllowNetworks", "allow_networks"),
    ("PollWaitSeconds", "poll_wait_seconds"),
    ("RelayCaFile", "relay_ca_file"),
    ("Organization", "organization"),
    ("ConsentGiven", "consent_given"),
];

/// Builds [`Managed`] from keyed values (a property list's dictionary, a registry key's values).
///
/// Unknown keys are ignored with a log line: MDM tools and GPO editors add
/// their own (`PayloadUUID`, …). A known key with the wrong type is an error.
pub fn from_keyed(values: &BTreeMap<String, Value>, source: &str) -> Result<Managed, ConfigError> {
    let mut file = ManagedFile::default();
    for (key, value) in values {
        let Some((_, toml_key)) = KEYED.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) else {
            if let Some(name) = keys::toml_name(key) {
                file.policy.insert(name, value.clone());
                continue;
            }
            tracing::debug!(key, source, "ignoring unknown managed setting");
            continue;
        };
        let wrong = |want: &str| {
            let got = match value {
                Value::Str(_) => "a string",
                Value::Int(_) => "an integer",
                Value::Bool(_) => "a boolean",
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
            "relay_ca_file" => file.relay_ca_file = Some(string()?),
            "organization" => file.organization = Some(string()?),
            "consent_given" => {
                file.consent_given = Some(match value {
                    Value::Bool(b) => *b,
                    // A registry DWORD.
                    Value::Int(0) => false,
                    Value::Int(1) => true,
                    Value::Str(s) if s.trim().eq_ignore_ascii_case("true") => true,
                    Value::Str(s) if s.trim().eq_ignore_ascii_case("false") => false,
                    _ => return Err(wrong("true or false (or a DWORD 0 or 1)")),
                })
            }
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
            plist::Value::Boolean(b) => Value::Bool(b),
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

#[cfg(test)]
mod tests {
    use super::super::{MACOS_BUNDLE_ID, MACOS_PATH};
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
        let template = include_str!("../../../../installer/linux/config.toml");
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
            ("organization = \"Acme\\u0007\"", "organization"),
            ("consent_given = \"yes\"", "expected a boolean"),
            ("consent_given = 1", "expected a boolean"),
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
        let profile = include_bytes!("../../../../installer/macos/link-peeler.mobileconfig");
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

    /// A PEM file holding one freshly made CA certificate, and one holding only a key.
    fn ca_files(dir: &Path) -> (String, String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = dir.join("relay-ca.pem");
        std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
        let key_only = dir.join("key.pem");
        std::fs::write(&key_only, key.serialize_pem()).unwrap();
        let not_pem = dir.join("ca.der");
        std::fs::write(&not_pem, b"\x30\x82\x01\x0a not PEM").unwrap();
        let s = |p: std::path::PathBuf| p.display().to_string();
        (s(ca), s(key_only), s(not_pem))
    }

    #[test]
    fn relay_ca_file_in_all_three_forms() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _, _) = ca_files(dir.path());
        let toml = parse_toml(&format!("relay_ca_file = {ca:?}\n"), SRC).unwrap();
        let plist = format!(
            "<plist version=\"1.0\"><dict><key>RelayCaFile</key><string>{ca}</string></dict></plist>"
        );
        let plist = parse_plist(plist.as_bytes(), MACOS_PATH).unwrap();
        let mut reg = BTreeMap::new();
        reg.insert("RelayCaFile".to_owned(), Value::Str(ca.clone()));
        let reg = from_keyed(&reg, "HKLM").unwrap();
        for m in [&toml, &plist, &reg] {
            let got = m.relay_ca.as_ref().unwrap();
            assert_eq!(got.path.display().to_string(), ca);
            assert_eq!(got.roots.len(), 1);
            assert_eq!(m.keys(), ["relay_ca_file"]);
        }
        // The managed file wins over the user's flag and file.
        let mut file = config::FileConfig {
            relay_ca_file: Some("/somewhere/else.pem".into()),
            ..Default::default()
        };
        let flags = toml.apply(&mut file, &config::Overrides::default());
        assert_eq!(flags.relay_ca_file.unwrap().display().to_string(), ca);
    }

    #[test]
    fn a_malformed_relay_ca_file_names_the_source_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key_only, not_pem) = ca_files(dir.path());
        let missing = dir.path().join("missing.pem").display().to_string();
        let cases = [
            (missing.as_str(), "cannot read it"),
            (not_pem.as_str(), "not a PEM file"),
            (key_only.as_str(), "contains no certificate"),
            ("relative/ca.pem", "absolute path"),
        ];
        for (path, needle) in cases {
            let toml = parse_toml(&format!("relay_ca_file = {path:?}\n"), SRC);
            let plist = format!(
                "<plist version=\"1.0\"><dict><key>RelayCaFile</key><string>{path}</string></dict></plist>"
            );
            let plist = parse_plist(plist.as_bytes(), MACOS_PATH);
            let mut reg = BTreeMap::new();
            reg.insert("RelayCaFile".to_owned(), Value::Str(path.to_owned()));
            let reg = from_keyed(&reg, r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Link Peeler");
            for (result, source) in [
                (toml, SRC),
                (plist, MACOS_PATH),
                (reg, r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Link Peeler"),
            ] {
                let e = result.unwrap_err().to_string();
                assert!(e.contains(source), "{e}");
                assert!(e.contains("relay_ca_file"), "{e}");
                assert!(e.contains(needle), "{path}: {e}");
                assert!(!e.contains('\n'), "{e}");
                assert!(!e.contains("PRIVATE KEY-----"), "{e}");
            }
        }
        // A registry value of the wrong type is named as such.
        let mut reg = BTreeMap::new();
        reg.insert("RelayCaFile".to_owned(), Value::Int(1));
        let e = from_keyed(&reg, "HKLM").unwrap_err().to_string();
        assert!(e.contains("RelayCaFile must be a string"), "{e}");
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

    /// Every policy key, in all three managed forms, locked and default.
    #[test]
    fn policy_keys_in_toml_plist_and_registry_forms() {
        let toml = parse_toml(
            "pause_on_metered = true\ndefault_pause_on_battery = false\nallowed_hours = \"22:00-06:00\"\nallowed_days = [\"mon-fri\"]\nmax_links_per_hour = 50\ndefault_max_links_per_day = 400\nmax_bytes_per_day = \"50MB\"\nmax_bytes_per_month = 1000000000\nallow_domains = [\"example.com\"]\ndeny_domains = [\"ads.example.com\"]\ndefault_activity_retention_days = 7\n",
            SRC,
        )
        .unwrap();
        let plist = parse_plist(
            br#"<plist version="1.0"><dict>
            <key>PauseOnMetered</key><true/>
            <key>DefaultPauseOnBattery</key><false/>
            <key>AllowedHours</key><string>22:00-06:00</string>
            <key>AllowedDays</key><array><string>mon-fri</string></array>
            <key>MaxLinksPerHour</key><integer>50</integer>
            <key>DefaultMaxLinksPerDay</key><integer>400</integer>
            <key>MaxBytesPerDay</key><string>50MB</string>
            <key>MaxBytesPerMonth</key><integer>1000000000</integer>
            <key>AllowDomains</key><array><string>example.com</string></array>
            <key>DenyDomains</key><array><string>ads.example.com</string></array>
            <key>DefaultActivityRetentionDays</key><integer>7</integer>
            </dict></plist>"#,
            MACOS_PATH,
        )
        .unwrap();
        // The registry: DWORDs for booleans and numbers, REG_SZ and REG_MULTI_SZ for the rest.
        let mut v = BTreeMap::new();
        let mut put = |k: &str, val: Value| {
            v.insert(k.to_owned(), val);
        };
        put("PauseOnMetered", Value::Int(1));
        put("DefaultPauseOnBattery", Value::Int(0));
        put("AllowedHours", Value::Str("22:00-06:00".into()));
        put("AllowedDays", Value::Str("mon-fri".into()));
        put("MaxLinksPerHour", Value::Int(50));
        put("DefaultMaxLinksPerDay", Value::Str("400".into()));
        put("MaxBytesPerDay", Value::Str("50MB".into()));
        put("MaxBytesPerMonth", Value::Int(1_000_000_000));
        put("AllowDomains", Value::List(vec!["example.com".into()]));
        put("DenyDomains", Value::Str("ads.example.com".into()));
        put("DefaultActivityRetentionDays", Value::Int(7));
        let reg = from_keyed(&v, "HKLM").unwrap();
        for m in [&toml, &plist, &reg] {
            assert_eq!(toml.policy, m.policy);
            assert_eq!(toml.policy_defaults, m.policy_defaults);
            assert!(m.source.is_some());
        }
        assert_eq!(toml.policy.pause_on_metered, Some(true));
        assert_eq!(toml.policy.max_bytes_per_day, Some(50_000_000));
        assert_eq!(toml.policy_defaults.pause_on_battery, Some(false));
        assert_eq!(toml.policy_defaults.activity_retention_days, Some(7));
        assert!(toml.keys().contains(&"pause_on_metered"));
        assert!(
            !toml.keys().contains(&"pause_on_battery"),
            "a default is not a lock"
        );
        // Only defaults managed: the source is still named.
        let m = parse_toml("default_max_links_per_hour = 9\n", SRC).unwrap();
        assert_eq!(m.source.as_deref(), Some(SRC));
        assert!(m.keys().is_empty());
    }

    /// A malformed policy value is a one-line error naming the key and the
    /// source, in every form, locked or default.
    #[test]
    fn malformed_policy_values_in_every_managed_form() {
        let toml_cases = [
            ("pause_on_metered = \"sometimes\"", "pause_on_metered"),
            ("default_pause_on_battery = 3", "default_pause_on_battery"),
            ("allowed_hours = \"nine to five\"", "allowed_hours"),
            ("allowed_days = [\"someday\"]", "allowed_days"),
            ("max_links_per_hour = 0", "max_links_per_hour"),
            (
                "default_max_links_per_day = -1",
                "default_max_links_per_day",
            ),
            ("max_bytes_per_day = \"lots\"", "max_bytes_per_day"),
            ("max_bytes_per_month = 1.5", "max_bytes_per_month"),
            ("allow_domains = [\"http://x\"]", "allow_domains"),
            ("deny_domains = [1, 2]", "deny_domains"),
            ("activity_retention_days = 0", "activity_retention_days"),
            (
                "max_links_per_day = 5\ndefault_max_links_per_day = 6",
                "both set",
            ),
            ("default_relay = \"x\"", "unknown field"),
        ];
        for (text, needle) in toml_cases {
            let e = parse_toml(text, SRC).unwrap_err().to_string();
            assert!(e.contains(SRC) && e.contains(needle), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let plist_cases: [(&str, &str); 4] = [
            (
                "<key>PauseOnMetered</key><string>nah</string>",
                "pause_on_metered",
            ),
            (
                "<key>DefaultMaxBytesPerMonth</key><integer>0</integer>",
                "default_max_bytes_per_month",
            ),
            (
                "<key>AllowedHours</key><date>2026-01-01T00:00:00Z</date>",
                "allowed_hours",
            ),
            (
                "<key>DenyDomains</key><array><integer>1</integer></array>",
                "DenyDomains",
            ),
        ];
        for (body, needle) in plist_cases {
            let doc = format!("<plist version=\"1.0\"><dict>{body}</dict></plist>");
            let e = parse_plist(doc.as_bytes(), MACOS_PATH)
                .unwrap_err()
                .to_string();
            assert!(e.contains(MACOS_PATH) && e.contains(needle), "{body}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let reg_cases = [
            ("PauseOnBattery", Value::Int(7), "pause_on_battery"),
            ("AllowedDays", Value::Int(1), "allowed_days"),
            (
                "MaxLinksPerHour",
                Value::Str("ten".into()),
                "max_links_per_hour",
            ),
            (
                "ActivityRetentionDays",
                Value::Other("binary"),
                "activity_retention_days",
            ),
            (
                "DefaultAllowDomains",
                Value::Str("a..b".into()),
                "default_allow_domains",
            ),
        ];
        for (key, value, needle) in reg_cases {
            let mut v = BTreeMap::new();
            v.insert(key.to_owned(), value);
            let e = from_keyed(&v, r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Link Peeler")
                .unwrap_err()
                .to_string();
            assert!(e.contains("Policies") && e.contains(needle), "{key}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn organization_and_consent_in_every_form() {
        let m = parse_toml(
            "organization = \" Acme Corp \"\nconsent_given = true\n",
            SRC,
        )
        .unwrap();
        assert_eq!(m.organization.as_deref(), Some("Acme Corp"));
        assert!(m.consent_given && m.keys().contains(&"consent_given"));
        assert!(m.source.is_some());
        let m = parse_toml("organization = \"Acme\"\n", SRC).unwrap();
        assert!(!m.consent_given && m.source.is_some());
        let plist = b"<plist version=\"1.0\"><dict><key>Organization</key><string>Acme</string><key>ConsentGiven</key><true/></dict></plist>";
        let m = parse_plist(plist, MACOS_PATH).unwrap();
        assert_eq!(
            (m.organization.as_deref(), m.consent_given),
            (Some("Acme"), true)
        );
        let keyed = |v: Value| {
            let mut map = BTreeMap::new();
            map.insert("ConsentGiven".to_owned(), v);
            from_keyed(&map, "HKLM")
        };
        assert!(keyed(Value::Int(1)).unwrap().consent_given);
        assert!(!keyed(Value::Int(0)).unwrap().consent_given);
        assert!(keyed(Value::Str("TRUE".into())).unwrap().consent_given);
        for bad in [
            Value::Int(2),
            Value::Str("maybe".into()),
            Value::List(vec![]),
        ] {
            let e = keyed(bad).unwrap_err().to_string();
            assert!(
                e.contains("ConsentGiven must be true or false") && e.contains("HKLM"),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
