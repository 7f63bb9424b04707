//! `link-peeler doctor`: one PASS/FAIL line per thing that must work, each
//! failure with the hint that fixes it.
//!
//! The checks run in dependency order (config → data dir → keychain →
//! credentials → relay URL → reachability/TLS → clock → sign-in → outbox) and
//! keep going after a failure, so one run shows everything that is wrong.
//! Nothing is changed and no task is leased: the sign-in check sends a signed
//! poll for zero tasks, which the relay authenticates and then refuses as an
//! invalid request.

use std::path::Path;

use super::assembly;
use super::assembly::Loaded;
use super::client::{Health, RelayClient};
use super::config::{self, ConfigError, Overrides, RelayCa};
use super::credentials::{self, CredentialError, DeviceCredentials, Keychain};
use super::outbox::Outbox;
use link_peeler_wire::client::{ExtraRoots, RelayError};
use link_peeler_wire::signing::{MAX_SKEW_SECS, unix_now};

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// What to do, for failures.
    pub hint: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            hint: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

/// Renders checks as `PASS  name  detail` lines; failures end with `→ hint`.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{}  {:<12} {}",
            if c.ok { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        ));
        if let Some(h) = &c.hint {
            out.push_str(&format!(" → {h}"));
        }
        out.push('\n');
    }
    out
}

/// Runs every check.
pub fn run(config_file: Option<&Path>, flags: &Overrides) -> Vec<Check> {
    let mut checks = vec![];

    // 1. config
    let loaded = assembly::load(config_file, flags);
    checks.push(config_check(&loaded));

    // 2. data dir
    checks.push(data_dir_check());

    // 3. keychain, 4. credentials
    let env = credentials::from_env();
    let keychain = Keychain::open(None).and_then(|k| k.load().map(|c| (k, c)));
    checks.push(keychain_check(&keychain, &env));
    let (check, creds) = credentials_check(&env, &keychain);
    checks.push(check);

    // 5. relay URL
    let (check, relay) = relay_url_check(config_file, &loaded, creds.as_ref());
    checks.push(check);

    // 6–9. network checks
    if let Some(url) = relay {
        let ca = loaded
            .as_ref()
            .ok()
            .and_then(|l| l.settings.relay_ca.clone());
        run_network_checks(url, creds, ca, &mut checks);
    }

    // 10. outbox
    if let Some(check) = outbox_check() {
        checks.push(check);
    }
    checks
}

/// The keychain and the credentials stored in it (checks 3 and 4).
type KeychainLoad = Result<(Keychain, Option<DeviceCredentials>), CredentialError>;

/// Check 1, config: the config file parses (or is absent).
fn config_check(loaded: &Result<Loaded, ConfigError>) -> Check {
    match loaded {
        Ok(l) => Check::pass(
            "config",
            if l.present {
                format!("{} parsed", l.path.display())
            } else {
                format!("{} not present; using defaults", l.path.display())
            },
        ),
        Err(e) => Check::fail(
            "config",
            e.to_string(),
            "fix the named line (keys: relay, capacity, user_agent, allow_networks, poll_wait_seconds, relay_ca_file) or remove the file",
        ),
    }
}

/// Check 2, data dir: it exists or can be created, and is writable.
fn data_dir_check() -> Check {
    match config::data_dir() {
        Ok(dir) => match writable(&dir) {
            Ok(()) => Check::pass("data dir", format!("{} is writable", dir.display())),
            Err(e) => Check::fail(
                "data dir",
                format!("{}: {e}", dir.display()),
                format!(
                    "make it writable or point {} elsewhere",
                    config::ENV_DATA_DIR
                ),
            ),
        },
        Err(e) => Check::fail("data dir", e.to_string(), "set LINK_PEELER_DATA_DIR"),
    }
}

/// Check 3, keychain: the OS keychain is readable, unless the environment
/// variables supply the credentials.
fn keychain_check(
    keychain: &KeychainLoad,
    env: &Result<Option<DeviceCredentials>, CredentialError>,
) -> Check {
    let from_env = matches!(env, Ok(Some(_)));
    match (keychain, from_env) {
        (Ok((k, _)), _) => Check::pass(
            "keychain",
            format!(
                "readable (service {}, account {})",
                credentials::KEYCHAIN_SERVICE,
                k.account()
            ),
        ),
        (Err(e), true) => Check::pass(
            "keychain",
            format!("not used: credentials come from environment variables ({e})"),
        ),
        (Err(e), false) => Check::fail("keychain", e.summary(), keychain_hint(e)),
    }
}

/// Check 4, credentials: this computer is enrolled (environment variables,
/// else the keychain). Returns them for the checks that need them.
fn credentials_check(
    env: &Result<Option<DeviceCredentials>, CredentialError>,
    keychain: &KeychainLoad,
) -> (Check, Option<DeviceCredentials>) {
    match (env, keychain) {
        (Err(e), _) => (
            Check::fail(
                "credentials",
                e.to_string(),
                "set both variables or unset both",
            ),
            None,
        ),
        (Ok(Some(c)), _) => (
            Check::pass(
                "credentials",
                format!("device {} from environment variables", c.device_id),
            ),
            Some(c.clone()),
        ),
        (Ok(None), Ok((_, Some(c)))) => (
            Check::pass(
                "credentials",
                format!("device {} in the OS keychain", c.device_id),
            ),
            Some(c.clone()),
        ),
        (Ok(None), Ok((_, None))) => (
            Check::fail(
                "credentials",
                "this computer is not enrolled",
                "run `link-peeler enroll --relay URL --code CODE` with a code from your admin",
            ),
            None,
        ),
        (Ok(None), Err(_)) => (
            Check::fail(
                "credentials",
                "unknown: the keychain is not readable",
                "fix the keychain first (line above)",
            ),
            None,
        ),
    }
}

/// Check 5, relay url: the configured relay, else the one stored with the
/// credentials (a config file that does not parse: only the stored relay).
fn relay_url_check(
    config_file: Option<&Path>,
    loaded: &Result<Loaded, ConfigError>,
    creds: Option<&DeviceCredentials>,
) -> (Check, Option<url::Url>) {
    let config_path = loaded
        .as_ref()
        .map(|l| l.path.clone())
        .unwrap_or_else(|_| config_file.map(Path::to_path_buf).unwrap_or_default());
    let configured = loaded.as_ref().ok().and_then(|l| l.settings.relay.as_ref());
    match assembly::relay(configured, creds, &config_path) {
        Ok(u) => {
            let check = Check::pass(
                "relay url",
                format!(
                    "{u}{}",
                    if u.scheme() == "https" {
                        ""
                    } else {
                        " (loopback, plain http allowed)"
                    }
                ),
            );
            (check, Some(u))
        }
        Err(ConfigError::NoRelay { .. }) => (
            Check::fail(
                "relay url",
                "no relay configured",
                "pass --relay URL, set `relay` in config.toml, or enroll",
            ),
            None,
        ),
        Err(e) => (
            Check::fail("relay url", e.to_string(), "use an https:// relay URL"),
            None,
        ),
    }
}

/// Checks 6–9 ([`network_checks`]) on a runtime of their own.
fn run_network_checks(
    url: url::Url,
    creds: Option<DeviceCredentials>,
    ca: Option<RelayCa>,
    checks: &mut Vec<Check>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match rt {
        Ok(rt) => rt.block_on(network_checks(url, creds, ca.as_ref(), checks)),
        Err(e) => checks.push(Check::fail(
            "relay",
            format!("cannot start the network runtime: {e}"),
            "report this bug",
        )),
    }
}

/// Checks 6–9: relay, tls, clock, sign-in. Stops after an unreachable relay.
async fn network_checks(
    url: url::Url,
    creds: Option<DeviceCredentials>,
    ca: Option<&RelayCa>,
    checks: &mut Vec<Check>,
) {
    let https = url.scheme() == "https";
    let roots = ca.map(|c| &c.roots);
    let probe = match RelayClient::with_roots(url.clone(), None, roots) {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::fail("relay", format!("{e:#}"), "report this bug"));
            return;
        }
    };
    let health = probe.health().await;
    if !reachability_checks(&health, ca, checks) {
        return;
    }
    checks.push(Check::pass(
        "tls",
        match (https, ca) {
            (true, None) => "certificate verified against the OS trust store".to_string(),
            (true, Some(ca)) => format!(
                "certificate verified against the OS trust store and {} ({} CA certificate(s))",
                ca.path.display(),
                ca.roots.len()
            ),
            (false, _) => "not used (loopback relay over plain http)".to_string(),
        },
    ));
    checks.push(clock_check(health.ok().and_then(|h| h.server_time)));
    if let Some(c) = creds {
        checks.push(sign_in_check(url, c, roots).await);
    }
}

/// Check 6, relay: it answers `/healthz` (after a TLS failure, check 7's tls
/// line too). Returns whether the relay was reached at all.
fn reachability_checks(
    health: &Result<Health, RelayError>,
    ca: Option<&RelayCa>,
    checks: &mut Vec<Check>,
) -> bool {
    match health {
        Ok(h) if h.status == 200 => {
            checks.push(Check::pass(
                "relay",
                format!(
                    "reachable, /healthz answered in {} ms",
                    h.elapsed.as_millis()
                ),
            ));
            true
        }
        Ok(h) => {
            checks.push(Check::fail(
                "relay",
                format!("/healthz answered {}", h.status),
                "is this URL a Link Peeler relay? check the address and any path prefix",
            ));
            true
        }
        Err(RelayError::Unreachable {
            detail, tls: true, ..
        }) => {
            checks.push(Check::fail(
                "relay",
                "TLS handshake failed",
                "see the tls line",
            ));
            checks.push(Check::fail(
                "tls",
                detail.clone(),
                match ca {
                    None => "the relay's certificate must be valid for its name and trusted by this OS: install the issuing CA in the system trust store, or name its PEM file in relay_ca_file (--relay-ca-file)".to_string(),
                    Some(ca) => format!(
                        "the relay's certificate must be valid for its name and issued by the OS trust store or a CA in {}: check that file holds the relay's issuing CA",
                        ca.path.display()
                    ),
                },
            ));
            false
        }
        Err(e) => {
            checks.push(Check::fail(
                "relay",
                e.to_string(),
                "check the URL, that the relay runs, and any proxy/firewall (HTTPS_PROXY is honoured for the relay)",
            ));
            false
        }
    }
}

/// Check 8, clock: this computer's clock is within the relay's signature window.
fn clock_check(server_time: Option<i64>) -> Check {
    match server_time {
        Some(t) => {
            let skew = t - unix_now();
            if skew.abs() <= MAX_SKEW_SECS {
                Check::pass("clock", format!("{skew:+} s from the relay's clock"))
            } else {
                Check::fail(
                    "clock",
                    format!(
                        "{skew:+} s from the relay's clock (the relay accepts ±{MAX_SKEW_SECS} s)"
                    ),
                    "enable time sync (NTP); the agent compensates, but signed API clients on this machine will not",
                )
            }
        }
        None => Check::fail(
            "clock",
            "the relay sent no Date header",
            "cannot compare clocks; make sure this computer syncs its time",
        ),
    }
}

/// Check 9, sign-in: the relay accepts this device's signature.
async fn sign_in_check(url: url::Url, c: DeviceCredentials, roots: Option<&ExtraRoots>) -> Check {
    let client = match RelayClient::with_roots(url, Some(c.signer()), roots) {
        Ok(client) => client,
        Err(e) => return Check::fail("sign-in", format!("{e:#}"), "report this bug"),
    };
    match client.check_credentials().await {
        Ok(()) => Check::pass(
            "sign-in",
            format!("the relay accepts device {}", c.device_id),
        ),
        Err(e) => Check::fail(
            "sign-in",
            e.to_string(),
            "sign-in required: `link-peeler sign-out`, then enroll again with a new code",
        ),
    }
}

/// Check 10, outbox: parked results (no line when there is no data dir).
fn outbox_check() -> Option<Check> {
    let dir = config::data_dir().ok()?.join("outbox");
    let n = if dir.exists() {
        Outbox::open(&dir).and_then(|o| o.len())
    } else {
        Ok(0)
    };
    Some(match n {
        Ok(0) => Check::pass("outbox", "empty"),
        Ok(n) => Check::pass(
            "outbox",
            format!(
                "{n} result(s) waiting; the agent posts them when it runs and the relay answers"
            ),
        ),
        Err(e) => Check::fail(
            "outbox",
            format!("{}: {e}", dir.display()),
            "make the data dir readable",
        ),
    })
}

fn keychain_hint(e: &CredentialError) -> String {
    match e {
        CredentialError::NoKeychain { .. } => credentials::no_keychain_hint().to_string(),
        CredentialError::Locked { .. } | CredentialError::Timeout => {
            "unlock your keyring / login keychain and run doctor again".into()
        }
        CredentialError::Corrupt(_) => "run `link-peeler sign-out`, then enroll again".into(),
        _ => "check the keychain service of this session".into(),
    }
}

fn writable(dir: &Path) -> std::io::Result<()> {
    super::files::create_missing_private(dir)?;
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    std::fs::write(&probe, b"ok")?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_puts_one_check_per_line_with_hints_on_failures() {
        let out = render(&[
            Check::pass("config", "fine"),
            Check::fail("keychain", "none", "install one"),
        ]);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("PASS  config"));
        assert!(lines[1].starts_with("FAIL  keychain") && lines[1].ends_with("→ install one"));
    }
}
