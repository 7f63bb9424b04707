//! The end user's policy settings — automatic pauses, allowed hours, quotas,
//! destination rules, activity retention — parsed from every source they can
//! come from, and the effective value of each with where it came from.
//!
//! One parser ([`parse_layer`]) reads all forms: the user's `config.toml`,
//! the managed `/etc/link-peeler/config.toml`, a managed property list and
//! the Windows registry policy key all hand it [`Value`]s under the
//! `config.toml` key names, so every form is validated (and tested) the same
//! way on every OS. A malformed value is an error naming the key and the
//! source, never a silent default.
//!
//! Precedence, per setting: managed locked > the user's value > managed
//! default > built-in default ([`Policy::merge`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use super::schedule::{Days, Hours};
use crate::managed::Value;

/// Built-in default: pause on a metered (or roaming) network.
pub const DEFAULT_PAUSE_ON_METERED: bool = true;
/// Built-in default: pause on battery or battery saver.
pub const DEFAULT_PAUSE_ON_BATTERY: bool = true;
/// Built-in default: links per hour. A busy desktop resolves a few per
/// minute; 240/hour (4 a minute, all hour) is far above that and well below
/// what a relay could push through a capacity of 8.
pub const DEFAULT_MAX_LINKS_PER_HOUR: u64 = 240;
/// Built-in default: links per day (a full working day at the hourly cap is ~2000).
pub const DEFAULT_MAX_LINKS_PER_DAY: u64 = 2_000;
/// Built-in default: bytes downloaded per day, 200 MiB (2000 links at ~100 KiB each).
pub const DEFAULT_MAX_BYTES_PER_DAY: u64 = 200 * 1024 * 1024;
/// Built-in default: bytes downloaded per calendar month, 2 GiB (a tenth of a
/// small 20 GB mobile plan; home broadband will never notice).
pub const DEFAULT_MAX_BYTES_PER_MONTH: u64 = 2 * 1024 * 1024 * 1024;
/// Built-in default: days the activity record is kept.
pub const DEFAULT_ACTIVITY_RETENTION_DAYS: u32 = 30;

/// Largest quota value accepted (a link or byte count beyond this is a typo).
const MAX_QUOTA: u64 = 1 << 50;
/// Longest activity retention accepted (10 years).
const MAX_RETENTION_DAYS: u32 = 3650;
/// Most domains in one allow or deny list.
const MAX_DOMAINS: usize = 1000;

/// The policy keys as `config.toml` (and the managed TOML) spell them, and as
/// the property list and the registry spell them. A managed key is locked;
/// its `default_…` (`Default…`) twin is a default the user may change.
pub const KEYS: [(&str, &str); 11] = [
    ("pause_on_metered", "PauseOnMetered"),
    ("pause_on_battery", "PauseOnBattery"),
    ("allowed_hours", "AllowedHours"),
    ("allowed_days", "AllowedDays"),
    ("max_links_per_hour", "MaxLinksPerHour"),
    ("max_links_per_day", "MaxLinksPerDay"),
    ("max_bytes_per_day", "MaxBytesPerDay"),
    ("max_bytes_per_month", "MaxBytesPerMonth"),
    ("allow_domains", "AllowDomains"),
    ("deny_domains", "DenyDomains"),
    ("activity_retention_days", "ActivityRetentionDays"),
];

/// Prefix of a managed default in the TOML forms (`default_pause_on_metered`).
pub const DEFAULT_PREFIX: &str = "default_";
/// Prefix of a managed default in the keyed forms (`DefaultPauseOnMetered`).
pub const DEFAULT_PREFIX_KEYED: &str = "Default";

/// Whether `key` (TOML spelling) is a policy key, without the default prefix.
pub fn is_key(key: &str) -> bool {
    KEYS.iter().any(|(k, _)| *k == key)
}

/// A keyed-form name (`PauseOnMetered`, `DefaultPauseOnMetered`, any case) as
/// its TOML spelling (`pause_on_metered`, `default_pause_on_metered`).
pub fn toml_name(keyed: &str) -> Option<String> {
    let find = |name: &str| {
        KEYS.iter()
            .find(|(_, k)| k.eq_ignore_ascii_case(name))
            .map(|(t, _)| *t)
    };
    if let Some(t) = find(keyed) {
        return Some(t.to_owned());
    }
    let p = DEFAULT_PREFIX_KEYED.len();
    if keyed.len() > p
        && keyed.is_char_boundary(p)
        && keyed[..p].eq_ignore_ascii_case(DEFAULT_PREFIX_KEYED)
    {
        return find(&keyed[p..]).map(|t| format!("{DEFAULT_PREFIX}{t}"));
    }
    None
}

/// A TOML value as a [`Value`] (the one shape every source is checked in).
pub fn from_toml(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::Str(s.clone()),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Array(items) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect();
            match strings {
                Some(list) => Value::List(list),
                None => Value::Other("an array of non-strings"),
            }
        }
        toml::Value::Float(_) => Value::Other("a real number"),
        toml::Value::Datetime(_) => Value::Other("a date"),
        toml::Value::Table(_) => Value::Other("a table"),
    }
}

/// Domain suffixes (`example.com` matches `example.com` and `a.example.com`),
/// lowercase, internationalised names in their ASCII (punycode) form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Domains(pub Vec<String>);

impl Domains {
    /// Whether `host` is one of the domains or below one.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.0.iter().any(|d| {
            host == *d
                || (host.len() > d.len()
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.')
        })
    }

    fn parse(items: &[String]) -> Result<Domains, String> {
        if items.len() > MAX_DOMAINS {
            return Err(format!("holds more than {MAX_DOMAINS} domains"));
        }
        let mut out = vec![];
        for raw in items {
            let s = raw.trim();
            let s = s
                .strip_prefix("*.")
                .or_else(|| s.strip_prefix('.'))
                .unwrap_or(s);
            let bad = || format!("{raw:?} is not a domain name such as example.com");
            if s.is_empty() || s.contains(['/', ':', '@', '*', ' ']) {
                return Err(bad());
            }
            match url::Host::parse(s) {
                Ok(url::Host::Domain(d)) if d.split('.').all(|l| !l.is_empty()) => {
                    let d = d.trim_end_matches('.').to_owned();
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
                _ => return Err(bad()),
            }
        }
        Ok(Domains(out))
    }
}

/// One source's policy values; `None`: this source does not set it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    pub pause_on_metered: Option<bool>,
    pub pause_on_battery: Option<bool>,
    pub allowed_hours: Option<Hours>,
    pub allowed_days: Option<Days>,
    pub max_links_per_hour: Option<u64>,
    pub max_links_per_day: Option<u64>,
    pub max_bytes_per_day: Option<u64>,
    pub max_bytes_per_month: Option<u64>,
    pub allow_domains: Option<Domains>,
    pub deny_domains: Option<Domains>,
    pub activity_retention_days: Option<u32>,
}

impl Layer {
    /// The keys this layer sets (TOML spelling).
    pub fn keys(&self) -> Vec<&'static str> {
        let set = [
            self.pause_on_metered.is_some(),
            self.pause_on_battery.is_some(),
            self.allowed_hours.is_some(),
            self.allowed_days.is_some(),
            self.max_links_per_hour.is_some(),
            self.max_links_per_day.is_some(),
            self.max_bytes_per_day.is_some(),
            self.max_bytes_per_month.is_some(),
            self.allow_domains.is_some(),
            self.deny_domains.is_some(),
            self.activity_retention_days.is_some(),
        ];
        KEYS.iter()
            .zip(set)
            .filter(|(_, on)| *on)
            .map(|((k, _), _)| *k)
            .collect()
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Str(_) => "a string",
        Value::Int(_) => "an integer",
        Value::Bool(_) => "a boolean",
        Value::List(_) => "an array",
        Value::Other(t) => t,
    }
}

fn parse_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        // The registry has no boolean: a DWORD 0 or 1 (or the text of one).
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("must be true or false, not {s:?}")),
        },
        Value::Int(i) => Err(format!("must be true or false (1 or 0), not {i}")),
        other => Err(format!("must be true or false, not {}", kind(other))),
    }
}

/// A count: a positive integer (or its text, as registry editors store it).
fn parse_count(v: &Value, max: u64) -> Result<u64, String> {
    let n = match v {
        Value::Int(i) => u64::try_from(*i).map_err(|_| format!("must be positive, not {i}"))?,
        Value::Str(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("must be a whole number, not {s:?}"))?,
        other => return Err(format!("must be a whole number, not {}", kind(other))),
    };
    if n == 0 || n > max {
        return Err(format!("must be between 1 and {max}, not {n}"));
    }
    Ok(n)
}

/// A byte count: an integer, or text with a unit (`500MB`, `2 GiB`, `750 KB`).
fn parse_bytes(v: &Value) -> Result<u64, String> {
    let Value::Str(s) = v else {
        return parse_count(v, MAX_QUOTA);
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("must be a byte count such as 500MB or 2GiB, not {s:?}");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "tb" => 1000 * 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let total = n.checked_mul(mult).ok_or_else(bad)?;
    parse_count(
        &Value::Int(i64::try_from(total).map_err(|_| bad())?),
        MAX_QUOTA,
    )
}

/// A list: an array, or one string of items separated by commas, semicolons or spaces.
fn parse_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::List(l) => Ok(l.clone()),
        Value::Str(s) => Ok(s
            .split([',', ';', ' '])
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()),
        other => Err(format!("must be an array of strings, not {}", kind(other))),
    }
}

/// Reads the policy keys of one source. `values` holds TOML-spelled keys
/// (no default prefix); keys that are not policy keys are ignored (the caller
/// owns them). An empty string means "not set" (an MSI property left empty).
/// The error is `<key> <what is wrong>`, one line; the caller names the source.
pub fn parse_layer(values: &BTreeMap<String, Value>) -> Result<Layer, String> {
    let mut layer = Layer::default();
    for (key, value) in values {
        if matches!(value, Value::Str(s) if s.trim().is_empty()) {
            continue;
        }
        let at = |e: String| format!("{key} {e}");
        match key.as_str() {
            "pause_on_metered" => layer.pause_on_metered = Some(parse_bool(value).map_err(at)?),
            "pause_on_battery" => layer.pause_on_battery = Some(parse_bool(value).map_err(at)?),
            "allowed_hours" => {
                let text = match value {
                    Value::Str(s) => s.clone(),
                    Value::List(l) => l.join(","),
                    other => return Err(at(format!("must be a string, not {}", kind(other)))),
                };
                layer.allowed_hours = Some(Hours::parse(&text).map_err(at)?);
            }
            "allowed_days" => {
                let list = parse_list(value).map_err(at)?;
                layer.allowed_days = Some(Days::parse(&list).map_err(at)?);
            }
            "max_links_per_hour" => {
                layer.max_links_per_hour = Some(parse_count(value, MAX_QUOTA).map_err(at)?)
            }
            "max_links_per_day" => {
                layer.max_links_per_day = Some(parse_count(value, MAX_QUOTA).map_err(at)?)
            }
            "max_bytes_per_day" => layer.max_bytes_per_day = Some(parse_bytes(value).map_err(at)?),
            "max_bytes_per_month" => {
                layer.max_bytes_per_month = Some(parse_bytes(value).map_err(at)?)
            }
            "allow_domains" => {
                let list = parse_list(value).map_err(at)?;
                layer.allow_domains = Some(Domains::parse(&list).map_err(at)?);
            }
            "deny_domains" => {
                let list = parse_list(value).map_err(at)?;
                layer.deny_domains = Some(Domains::parse(&list).map_err(at)?);
            }
            "activity_retention_days" => {
                let n = parse_count(value, u64::from(MAX_RETENTION_DAYS)).map_err(at)?;
                layer.activity_retention_days =
                    Some(u32::try_from(n).map_err(|e| at(e.to_string()))?);
            }
            _ => {}
        }
    }
    Ok(layer)
}

/// Splits a managed source's policy values into its locked layer (plain
/// keys) and its defaults layer (`default_` keys). Setting both forms of one
/// key is an error: the admin must say which they mean.
pub fn parse_managed(values: &BTreeMap<String, Value>) -> Result<(Layer, Layer), String> {
    let mut locked = BTreeMap::new();
    let mut defaults = BTreeMap::new();
    for (k, v) in values {
        match k.strip_prefix(DEFAULT_PREFIX) {
            Some(base) if is_key(base) => {
                if values.contains_key(base) {
                    return Err(format!(
                        "{base} and {k} are both set; set {base} to lock the value or {k} to let the user change it, not both"
                    ));
                }
                defaults.insert(base.to_owned(), v.clone());
            }
            _ if is_key(k) => {
                locked.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    let defaults = parse_layer(&defaults).map_err(|e| format!("{DEFAULT_PREFIX}{e}"))?;
    Ok((parse_layer(&locked)?, defaults))
}

/// Where an effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Nobody set it: the built-in default.
    BuiltIn,
    /// The user's `config.toml`.
    User,
    /// The admin's default (the user has not changed it).
    ManagedDefault,
    /// The admin locked it: the user's value, if any, is ignored.
    ManagedLocked,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::BuiltIn => "built-in default",
            Source::User => "user",
            Source::ManagedDefault => "managed default",
            Source::ManagedLocked => "managed, locked",
        })
    }
}

/// An effective value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective<T> {
    pub value: T,
    pub source: Source,
}

/// The policy the agent runs with, every value with its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub pause_on_metered: Effective<bool>,
    pub pause_on_battery: Effective<bool>,
    #[serde(serialize_with = "as_text")]
    pub allowed_hours: Effective<Hours>,
    #[serde(serialize_with = "as_text")]
    pub allowed_days: Effective<Days>,
    pub max_links_per_hour: Effective<u64>,
    pub max_links_per_day: Effective<u64>,
    pub max_bytes_per_day: Effective<u64>,
    pub max_bytes_per_month: Effective<u64>,
    /// Empty: every destination is allowed (unless denied).
    pub allow_domains: Effective<Domains>,
    pub deny_domains: Effective<Domains>,
    pub activity_retention_days: Effective<u32>,
}

fn as_text<T: fmt::Display, S: Serializer>(e: &Effective<T>, s: S) -> Result<S::Ok, S::Error> {
    Effective {
        value: e.value.to_string(),
        source: e.source,
    }
    .serialize(s)
}

impl Default for Policy {
    fn default() -> Self {
        Policy::merge(&Layer::default(), &Layer::default(), &Layer::default())
    }
}

fn pick<T: Clone>(
    locked: &Option<T>,
    user: &Option<T>,
    default: &Option<T>,
    builtin: T,
) -> Effective<T> {
    match (locked, user, default) {
        (Some(v), _, _) => Effective {
            value: v.clone(),
            source: Source::ManagedLocked,
        },
        (None, Some(v), _) => Effective {
            value: v.clone(),
            source: Source::User,
        },
        (None, None, Some(v)) => Effective {
            value: v.clone(),
            source: Source::ManagedDefault,
        },
        (None, None, None) => Effective {
            value: builtin,
            source: Source::BuiltIn,
        },
    }
}

impl Policy {
    /// Per setting: managed locked > user > managed default > built-in.
    pub fn merge(user: &Layer, locked: &Layer, defaults: &Layer) -> Policy {
        let (u, l, d) = (user, locked, defaults);
        Policy {
            pause_on_metered: pick(
                &l.pause_on_metered,
                &u.pause_on_metered,
                &d.pause_on_metered,
                DEFAULT_PAUSE_ON_METERED,
            ),
            pause_on_battery: pick(
                &l.pause_on_battery,
                &u.pause_on_battery,
                &d.pause_on_battery,
                DEFAULT_PAUSE_ON_BATTERY,
            ),
            allowed_hours: pick(
                &l.allowed_hours,
                &u.allowed_hours,
                &d.allowed_hours,
                Hours::always(),
            ),
            allowed_days: pick(
                &l.allowed_days,
                &u.allowed_days,
                &d.allowed_days,
                Days::every(),
            ),
            max_links_per_hour: pick(
                &l.max_links_per_hour,
                &u.max_links_per_hour,
                &d.max_links_per_hour,
                DEFAULT_MAX_LINKS_PER_HOUR,
            ),
            max_links_per_day: pick(
                &l.max_links_per_day,
                &u.max_links_per_day,
                &d.max_links_per_day,
                DEFAULT_MAX_LINKS_PER_DAY,
            ),
            max_bytes_per_day: pick(
                &l.max_bytes_per_day,
                &u.max_bytes_per_day,
                &d.max_bytes_per_day,
                DEFAULT_MAX_BYTES_PER_DAY,
            ),
            max_bytes_per_month: pick(
                &l.max_bytes_per_month,
                &u.max_bytes_per_month,
                &d.max_bytes_per_month,
                DEFAULT_MAX_BYTES_PER_MONTH,
            ),
            allow_domains: pick(
                &l.allow_domains,
                &u.allow_domains,
                &d.allow_domains,
                Domains::default(),
            ),
            deny_domains: pick(
                &l.deny_domains,
                &u.deny_domains,
                &d.deny_domains,
                Domains::default(),
            ),
            activity_retention_days: pick(
                &l.activity_retention_days,
                &u.activity_retention_days,
                &d.activity_retention_days,
                DEFAULT_ACTIVITY_RETENTION_DAYS,
            ),
        }
    }

    /// Every setting as `(key, value in words, source)`, in the order
    /// `config.toml` documents them — what `status` and the tray show.
    pub fn rows(&self) -> Vec<(&'static str, String, Source)> {
        let on = |e: &Effective<bool>| (if e.value { "on" } else { "off" }.to_owned(), e.source);
        let n = |e: &Effective<u64>| (e.value.to_string(), e.source);
        let mb = |e: &Effective<u64>| (format!("{} MiB", e.value >> 20), e.source);
        let list = |e: &Effective<Domains>, empty: &str| {
            let v = if e.value.0.is_empty() {
                empty.to_owned()
            } else {
                e.value.0.join(", ")
            };
            (v, e.source)
        };
        let rows = [
            ("pause_on_metered", on(&self.pause_on_metered)),
            ("pause_on_battery", on(&self.pause_on_battery)),
            (
                "allowed_hours",
                (
                    self.allowed_hours.value.to_string(),
                    self.allowed_hours.source,
                ),
            ),
            (
                "allowed_days",
                (
                    self.allowed_days.value.to_string(),
                    self.allowed_days.source,
                ),
            ),
            ("max_links_per_hour", n(&self.max_links_per_hour)),
            ("max_links_per_day", n(&self.max_links_per_day)),
            ("max_bytes_per_day", mb(&self.max_bytes_per_day)),
            ("max_bytes_per_month", mb(&self.max_bytes_per_month)),
            ("allow_domains", list(&self.allow_domains, "any")),
            ("deny_domains", list(&self.deny_domains, "none")),
            (
                "activity_retention_days",
                (
                    self.activity_retention_days.value.to_string(),
                    self.activity_retention_days.source,
                ),
            ),
        ];
        rows.into_iter().map(|(k, (v, s))| (k, v, s)).collect()
    }

    /// Whether a request to `host` is allowed: not denied, and inside the
    /// allow list when there is one. Deny wins over allow.
    pub fn destination_allowed(&self, host: &str) -> bool {
        if self.deny_domains.value.matches(host) {
            return false;
        }
        let allow = &self.allow_domains.value;
        allow.0.is_empty() || allow.matches(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn every_key_parses_in_every_shape() {
        use Value::*;
        let layer = parse_layer(&map(&[
            ("pause_on_metered", Bool(false)),
            ("pause_on_battery", Int(0)),
            ("allowed_hours", Str("22:00-06:00".into())),
            ("allowed_days", Str("mon-fri, sun".into())),
            ("max_links_per_hour", Str("60".into())),
            ("max_links_per_day", Int(500)),
            ("max_bytes_per_day", Str("100 MiB".into())),
            ("max_bytes_per_month", Int(3_000_000_000)),
            (
                "allow_domains",
                List(vec!["*.Example.COM".into(), "bücher.de".into()]),
            ),
            (
                "deny_domains",
                Str("ads.example.com, .track.example".into()),
            ),
            ("activity_retention_days", Str("7".into())),
            ("not_a_policy_key", Other("ignored")),
        ]))
        .unwrap();
        assert_eq!(layer.pause_on_metered, Some(false));
        assert_eq!(layer.pause_on_battery, Some(false));
        assert_eq!(
            layer.allowed_hours.as_ref().unwrap().to_string(),
            "22:00-06:00"
        );
        assert_eq!(
            layer.allowed_days.as_ref().unwrap().to_string(),
            "mon,tue,wed,thu,fri,sun"
        );
        assert_eq!(layer.max_links_per_hour, Some(60));
        assert_eq!(layer.max_links_per_day, Some(500));
        assert_eq!(layer.max_bytes_per_day, Some(100 << 20));
        assert_eq!(layer.max_bytes_per_month, Some(3_000_000_000));
        assert_eq!(
            layer.allow_domains.as_ref().unwrap().0,
            ["example.com", "xn--bcher-kva.de"]
        );
        assert_eq!(
            layer.deny_domains.as_ref().unwrap().0,
            ["ads.example.com", "track.example"]
        );
        assert_eq!(layer.activity_retention_days, Some(7));
        assert_eq!(layer.keys().len(), 11);
        // Empty strings are "not set".
        let empty = parse_layer(&map(&[("allowed_hours", Str(" ".into()))])).unwrap();
        assert_eq!(empty, Layer::default());
    }

    /// A negative case for every key: the message names the key, on one line.
    #[test]
    fn every_key_refuses_malformed_values() {
        use Value::*;
        let cases: Vec<(&str, Value, &str)> = vec![
            ("pause_on_metered", Str("maybe".into()), "true or false"),
            ("pause_on_metered", Int(2), "true or false"),
            (
                "pause_on_battery",
                List(vec![]),
                "true or false, not an array",
            ),
            ("allowed_hours", Str("9-17".into()), "HH:MM-HH:MM"),
            ("allowed_hours", Str("25:00-06:00".into()), "HH:MM-HH:MM"),
            ("allowed_hours", Str("08:00-08:00".into()), "empty"),
            ("allowed_hours", Int(9), "must be a string"),
            ("allowed_days", Str("mon-funday".into()), "day"),
            ("allowed_days", List(vec![]), "at least one day"),
            ("allowed_days", Bool(true), "array of strings"),
            ("max_links_per_hour", Int(0), "between 1 and"),
            ("max_links_per_hour", Int(-5), "positive"),
            ("max_links_per_day", Str("lots".into()), "whole number"),
            (
                "max_links_per_day",
                Bool(true),
                "whole number, not a boolean",
            ),
            ("max_bytes_per_day", Str("5 parsecs".into()), "byte count"),
            (
                "max_bytes_per_day",
                Str("99999999999TB".into()),
                "byte count",
            ),
            ("max_bytes_per_month", Int(0), "between 1 and"),
            (
                "max_bytes_per_month",
                Other("a real number"),
                "a real number",
            ),
            (
                "allow_domains",
                List(vec!["https://example.com/".into()]),
                "not a domain",
            ),
            (
                "allow_domains",
                List(vec!["10.0.0.1".into()]),
                "not a domain",
            ),
            ("deny_domains", Str("exa mple..com".into()), "not a domain"),
            ("deny_domains", Int(1), "array of strings"),
            ("activity_retention_days", Int(0), "between 1 and 3650"),
            ("activity_retention_days", Int(4000), "between 1 and 3650"),
        ];
        for (key, value, needle) in cases {
            let e = parse_layer(&map(&[(key, value.clone())])).unwrap_err();
            assert!(e.starts_with(key), "{key} {value:?}: {e}");
            assert!(e.contains(needle), "{key} {value:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn managed_locked_and_default_keys() {
        use Value::*;
        let (locked, defaults) = parse_managed(&map(&[
            ("pause_on_metered", Bool(true)),
            ("default_pause_on_battery", Bool(false)),
            ("relay", Str("not mine".into())),
        ]))
        .unwrap();
        assert_eq!(locked.keys(), ["pause_on_metered"]);
        assert_eq!(defaults.keys(), ["pause_on_battery"]);
        let e = parse_managed(&map(&[
            ("max_links_per_day", Int(5)),
            ("default_max_links_per_day", Int(6)),
        ]))
        .unwrap_err();
        assert!(e.contains("both set"), "{e}");
        let e = parse_managed(&map(&[("default_max_links_per_day", Int(0))])).unwrap_err();
        assert!(e.starts_with("default_max_links_per_day"), "{e}");
    }

    #[test]
    fn precedence_and_sources() {
        let user = Layer {
            pause_on_metered: Some(false),
            pause_on_battery: Some(false),
            max_links_per_day: Some(10),
            ..Default::default()
        };
        let locked = Layer {
            pause_on_metered: Some(true),
            ..Default::default()
        };
        let defaults = Layer {
            pause_on_battery: Some(true),
            max_links_per_hour: Some(5),
            ..Default::default()
        };
        let p = Policy::merge(&user, &locked, &defaults);
        assert_eq!(
            p.pause_on_metered,
            Effective {
                value: true,
                source: Source::ManagedLocked
            }
        );
        assert_eq!(
            p.pause_on_battery,
            Effective {
                value: false,
                source: Source::User
            }
        );
        assert_eq!(
            p.max_links_per_hour,
            Effective {
                value: 5,
                source: Source::ManagedDefault
            }
        );
        assert_eq!(
            p.max_links_per_day,
            Effective {
                value: 10,
                source: Source::User
            }
        );
        assert_eq!(
            p.max_bytes_per_month,
            Effective {
                value: DEFAULT_MAX_BYTES_PER_MONTH,
                source: Source::BuiltIn
            }
        );
        let d = Policy::default();
        assert!(d.pause_on_metered.value && d.pause_on_battery.value);
        assert!(d.max_links_per_hour.value > 0 && d.max_bytes_per_day.value > 0);
        assert_eq!(d.activity_retention_days.value, 30);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["allowedHours"]["value"], "always");
        assert_eq!(json["pauseOnMetered"]["source"], "built-in");
    }

    #[test]
    fn destination_rules_match_suffixes_and_deny_wins() {
        let mut p = Policy::default();
        assert!(p.destination_allowed("anything.example"));
        p.allow_domains.value = Domains(vec!["example.com".into()]);
        p.deny_domains.value = Domains(vec!["ads.example.com".into()]);
        assert!(p.destination_allowed("example.com"));
        assert!(p.destination_allowed("www.Example.com."));
        assert!(!p.destination_allowed("badexample.com"));
        assert!(!p.destination_allowed("ads.example.com"));
        assert!(!p.destination_allowed("x.ads.example.com"));
        assert!(!p.destination_allowed("example.org"));
        assert!(!p.destination_allowed("127.0.0.1"));
    }

    #[test]
    fn keyed_names_map_to_toml_names() {
        assert_eq!(
            toml_name("PauseOnMetered").as_deref(),
            Some("pause_on_metered")
        );
        assert_eq!(
            toml_name("defaultmaxbytesperday").as_deref(),
            Some("default_max_bytes_per_day")
        );
        assert_eq!(toml_name("Default"), None);
        assert_eq!(toml_name("RelayUrl"), None);
    }

    #[test]
    fn rows_name_every_key_once_with_value_and_source() {
        let p = Policy::merge(
            &Layer {
                max_links_per_hour: Some(7),
                ..Default::default()
            },
            &Layer {
                pause_on_battery: Some(false),
                ..Default::default()
            },
            &Layer::default(),
        );
        let rows = p.rows();
        assert_eq!(rows.len(), KEYS.len());
        for (k, _) in KEYS {
            assert_eq!(rows.iter().filter(|r| r.0 == k).count(), 1, "{k}");
        }
        let row = |k: &str| rows.iter().find(|r| r.0 == k).unwrap().clone();
        assert_eq!(
            row("max_links_per_hour"),
            ("max_links_per_hour", "7".into(), Source::User)
        );
        assert_eq!(
            row("pause_on_battery"),
            ("pause_on_battery", "off".into(), Source::ManagedLocked)
        );
        assert_eq!(row("allow_domains").1, "any");
        assert_eq!(row("max_bytes_per_day").1, "200 MiB");
    }
}
