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
use super::client::RelayClient;
use super::config::{self, Overrides};
use super::credentials::{self, CredentialError, Keychain};
use super::outbox::Outbox;
use link_peeler_wire::client::RelayError;
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
    let loaded = config::load(config_file, flags);
    let settings = match &loaded {
        Ok(l) => {
            checks.push(Check::pass(
                "config",
                if l.present {
                    format!("{} parsed", l.path.display())
                } else {
                    format!("{} not present; using defaults", l.path.display())
                },
            ));
            Some(l.settings.clone())
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                e.to_string(),
                "fix the named line (keys: relay, capacity, user_agent, allow_networks, poll_wait_seconds) or remove the file",
            ));
            None
        }
    };

    // 2. data dir
    match config::data_dir() {
        Ok(dir) => match writable(&dir) {
            Ok(()) => checks.push(Check::pass(
                "data dir",
                format!("{} is writable", dir.display()),
            )),
            Err(e) => checks.push(Check::fail(
                "data dir",
                format!("{}: {e}", dir.display()),
                format!(
                    "make it writable or point {} elsewhere",
                    config::ENV_DATA_DIR
                ),
            )),
        },
        Err(e) => checks.push(Check::fail(
            "data dir",
            e.to_string(),
            "set LINK_PEELER_DATA_DIR",
        )),
    }

    // 3. keychain, 4. credentials
    let env = credentials::from_env();
    let keychain = Keychain::open(None).and_then(|k| k.load().map(|c| (k, c)));
    let env_creds = match &env {
        Ok(c) => c.clone(),
        Err(_) => None,
    };
    match (&keychain, &env_creds) {
        (Ok((k, _)), _) => checks.push(Check::pass(
            "keychain",
            format!(
                "readable (service {}, account {})",
                credentials::KEYCHAIN_SERVICE,
                k.account()
            ),
        )),
        (Err(e), Some(_)) => checks.push(Check::pass(
            "keychain",
            format!("not used: credentials come from environment variables ({e})"),
        )),
        (Err(e), None) => checks.push(Check::fail("keychain", e.summary(), keychain_hint(e))),
    }
    let creds = match (&env, &keychain) {
        (Err(e), _) => {
            checks.push(Check::fail(
                "credentials",
                e.to_string(),
                "set both variables or unset both",
            ));
            None
        }
        (Ok(Some(c)), _) => {
            checks.push(Check::pass(
                "credentials",
                format!("device {} from environment variables", c.device_id),
            ));
            Some(c.clone())
        }
        (Ok(None), Ok((_, Some(c)))) => {
            checks.push(Check::pass(
                "credentials",
                format!("device {} in the OS keychain", c.device_id),
            ));
            Some(c.clone())
        }
        (Ok(None), Ok((_, None))) => {
            checks.push(Check::fail(
                "credentials",
                "this computer is not enrolled",
                "run `link-peeler enroll --relay URL --code CODE` with a code from your admin",
            ));
            None
        }
        (Ok(None), Err(_)) => {
            checks.push(Check::fail(
                "credentials",
                "unknown: the keychain is not readable",
                "fix the keychain first (line above)",
            ));
            None
        }
    };

    // 5. relay URL (a config file that does not parse: only the stored relay)
    let config_path = loaded
        .as_ref()
        .map(|l| l.path.clone())
        .unwrap_or_else(|_| config_file.map(Path::to_path_buf).unwrap_or_default());
    let relay = assembly::relay(
        settings.as_ref().and_then(|s| s.relay.as_ref()),
        creds.as_ref(),
        &config_path,
    );
    let relay = match relay {
        Ok(u) => {
            checks.push(Check::pass(
                "relay url",
                format!(
                    "{u}{}",
                    if u.scheme() == "https" {
                        ""
                    } else {
                        " (loopback, plain http allowed)"
                    }
                ),
            ));
            Some(u)
        }
        Err(config::ConfigError::NoRelay { .. }) => {
            checks.push(Check::fail(
                "relay url",
                "no relay configured",
                "pass --relay URL, set `relay` in config.toml, or enroll",
            ));
            None
        }
        Err(e) => {
            checks.push(Check::fail(
                "relay url",
                e.to_string(),
                "use an https:// relay URL",
            ));
            None
        }
    };

    // 6–9. network checks
    if let Some(url) = relay {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        match rt {
            Ok(rt) => rt.block_on(network_checks(url, creds, &mut checks)),
            Err(e) => checks.push(Check::fail(
                "relay",
                format!("cannot start the network runtime: {e}"),
                "report this bug",
            )),
        }
    }

    // 10. outbox
    if let Ok(dir) = config::data_dir() {
        let dir = dir.join("outbox");
        let n = if dir.exists() {
            Outbox::open(&dir).and_then(|o| o.len())
        } else {
            Ok(0)
        };
        match n {
            Ok(0) => checks.push(Check::pass("outbox", "empty")),
            Ok(n) => checks.push(Check::pass(
                "outbox",
                format!(
                    "{n} result(s) waiting; the agent posts them when it runs and the relay answers"
                ),
            )),
            Err(e) => checks.push(Check::fail(
                "outbox",
                format!("{}: {e}", dir.display()),
                "make the data dir readable",
            )),
        }
    }
    checks
}

async fn network_checks(
    url: url::Url,
    creds: Option<credentials::DeviceCredentials>,
    checks: &mut Vec<Check>,
) {
    let https = url.scheme() == "https";
    let probe = match RelayClient::new(url.clone(), None) {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::fail("relay", format!("{e:#}"), "report this bug"));
            return;
        }
    };
    let health = probe.health().await;
    match &health {
        Ok(h) if h.status == 200 => {
            checks.push(Check::pass(
                "relay",
                format!(
                    "reachable, /healthz answered in {} ms",
                    h.elapsed.as_millis()
                ),
            ));
        }
        Ok(h) => checks.push(Check::fail(
            "relay",
            format!("/healthz answered {}", h.status),
            "is this URL a Link Peeler relay? check the address and any path prefix",
        )),
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
                "the relay's certificate must be valid for its name and trusted by this OS: install the issuing CA in the system trust store",
            ));
            return;
        }
        Err(e) => {
            checks.push(Check::fail(
                "relay",
                e.to_string(),
                "check the URL, that the relay runs, and any proxy/firewall (HTTPS_PROXY is honoured for the relay)",
            ));
            return;
        }
    }
    checks.push(Check::pass(
        "tls",
        if https {
            "certificate verified against the OS trust store".to_string()
        } else {
            "not used (loopback relay over plain http)".to_string()
        },
    ));
    match health.ok().and_then(|h| h.server_time) {
        Some(t) => {
            let skew = t - unix_now();
            if skew.abs() <= MAX_SKEW_SECS {
                checks.push(Check::pass(
                    "clock",
                    format!("{skew:+} s from the relay's clock"),
                ));
            } else {
                checks.push(Check::fail(
                    "clock",
                    format!("{skew:+} s from the relay's clock (the relay accepts ±{MAX_SKEW_SECS} s)"),
                    "enable time sync (NTP); the agent compensates, but signed API clients on this machine will not",
                ));
            }
        }
        None => checks.push(Check::fail(
            "clock",
            "the relay sent no Date header",
            "cannot compare clocks; make sure this computer syncs its time",
        )),
    }
    if let Some(c) = creds {
        let client = match RelayClient::new(url, Some(c.signer())) {
            Ok(client) => client,
            Err(e) => {
                checks.push(Check::fail("sign-in", format!("{e:#}"), "report this bug"));
                return;
            }
        };
        match client.check_credentials().await {
            Ok(()) => checks.push(Check::pass(
                "sign-in",
                format!("the relay accepts device {}", c.device_id),
            )),
            Err(e) => checks.push(Check::fail(
                "sign-in",
                e.to_string(),
                "sign-in required: `link-peeler sign-out`, then enroll again with a new code",
            )),
        }
    }
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
    std::fs::create_dir_all(dir)?;
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
