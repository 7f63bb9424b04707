//! The `link-peeler-relay` command line (protocol.md §1).
//!
//! Every subcommand takes `--db PATH|URL` (default: `relay.db` in the user's
//! data dir; a `postgres://` URL selects PostgreSQL) and `--json`, which
//! prints one JSON object on one line. A URL with a password belongs in
//! `LINK_PEELER_RELAY_DB`, not in argv; it is never shown (`--help` hides
//! the variable's value, logs and errors show the URL redacted).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use super::admin::{self, NewKey};
use super::store::{DEFAULT_DAILY_LIMIT, DEFAULT_MAX_QUEUED, Database};
use super::{
    DEFAULT_BODY_TIMEOUT_SECS, DEFAULT_ENROLL_FAILURES_PER_IP, DEFAULT_ENROLL_FAILURES_TOTAL,
    DEFAULT_HEADER_TIMEOUT_SECS, DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_LISTEN,
    DEFAULT_MAX_CONNECTIONS, RelayConfig, TlsFiles,
};

/// The bundled Link Peeler relay: signed job intake, a durable queue and the agent task API.
#[derive(Debug, Parser)]
#[command(name = "link-peeler-relay", version, long_about = None)]
pub struct Cli {
    /// SQLite file (PATH or sqlite://PATH) or PostgreSQL URL (postgres://USER@HOST/DB) [default: relay.db in the user's data dir]
    #[arg(
        long,
        global = true,
        env = "LINK_PEELER_RELAY_DB",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    pub db: Option<Database>,
    /// Print one JSON object on one line instead of text
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the relay API
    Serve(ServeArgs),
    /// One-command local setup: serve on 127.0.0.1:8787 with a fresh dev key and enrollment code
    Dev(DevArgs),
    /// Manage API keys for external systems
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage desktop agents
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Measure submission throughput and pickup latency on loopback (not a test)
    Bench(super::bench::BenchArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// How long an agent holds a task before it is handed out again
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lease_seconds: u64,
    /// Days to keep finished jobs (and their idempotency keys)
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub retention_days: u64,
    /// Serve HTTPS with this PEM certificate chain (server certificate first); needs --tls-key
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Let webhook deliveries reach this otherwise refused network (CIDR, e.g.
    /// 10.1.2.0/24); repeatable. Loopback, private, link-local and metadata
    /// addresses are refused unless opened here
    #[arg(long, value_name = "CIDR")]
    pub webhook_allow_network: Vec<ipnet::IpNet>,
    /// Seconds one webhook attempt may take, connecting included
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub webhook_timeout_seconds: u64,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address to listen on
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

/// Connection limits and the operations listener, shared by `serve` and `dev`.
#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// Serve GET /metrics (and /healthz) on this address, e.g. 127.0.0.1:9797 [default: off]
    #[arg(long, value_name = "ADDR")]
    pub ops_listen: Option<std::net::SocketAddr>,
    /// Seconds for a request head to arrive, from its first byte (from accept for the first)
    #[arg(long, default_value_t = DEFAULT_HEADER_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_seconds: u64,
    /// Seconds a kept-alive connection may wait for its next request
    #[arg(long, default_value_t = DEFAULT_IDLE_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_seconds: u64,
    /// Seconds for a whole request body to arrive (else 408 request_timeout)
    #[arg(long, default_value_t = DEFAULT_BODY_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_seconds: u64,
    /// Open connections at most (lowered to the open-file limit minus a reserve); more are answered 503
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// Failed enrollment attempts per client address per minute (then 429 rate_limited)
    #[arg(long, default_value_t = DEFAULT_ENROLL_FAILURES_PER_IP, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub enroll_failures_per_ip: u32,
    /// Failed enrollment attempts per minute from all addresses together
    #[arg(long, default_value_t = DEFAULT_ENROLL_FAILURES_TOTAL, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub enroll_failures_total: u32,
}

impl EdgeArgs {
    /// Lays these settings over `config`.
    fn apply(&self, config: RelayConfig) -> RelayConfig {
        RelayConfig {
            ops_listen: self.ops_listen,
            header_timeout: Duration::from_secs(self.header_timeout_seconds),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
            body_timeout: Duration::from_secs(self.body_timeout_seconds),
            max_connections: self.max_connections,
            enroll_failures_per_ip: self.enroll_failures_per_ip,
            enroll_failures_total: self.enroll_failures_total,
            ..config
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key; its secret is printed once
    Create {
        #[arg(long)]
        name: String,
        /// Jobs per UTC day
        #[arg(long, default_value_t = DEFAULT_DAILY_LIMIT, value_parser = clap::value_parser!(u32).range(1..))]
        daily_limit: u32,
        /// Unfinished jobs at once
        #[arg(long, default_value_t = DEFAULT_MAX_QUEUED, value_parser = clap::value_parser!(u32).range(1..))]
        max_queued: u32,
        /// Create an lp_test_ key instead of lp_live_
        #[arg(long)]
        test: bool,
        /// POST each finished job to this http(s) URL, signed with the key's secret
        #[arg(long, value_name = "URL")]
        webhook_url: Option<String>,
    },
    /// List API keys (never their secrets)
    List,
    /// Set or remove an API key's webhook URL (jobs finishing afterwards use it)
    SetWebhook {
        key_id: String,
        /// The http(s) URL finished jobs are posted to
        #[arg(required_unless_present = "none", conflicts_with = "none")]
        url: Option<String>,
        /// Remove the webhook URL
        #[arg(long)]
        none: bool,
    },
    /// Revoke an API key; its next request fails with revoked_key
    Revoke { key_id: String },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Create a one-time enrollment code for a device
    Enroll {
        #[arg(long)]
        name: String,
        /// Hours until the code expires
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=720))]
        expires_in_hours: u64,
    },
    /// List enrolled devices
    List,
    /// Revoke a device; its next request fails with revoked_key
    Revoke { device_id: String },
}

/// Runs the command line; errors print one line and exit 1.
pub fn run(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("link-peeler-relay: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // The benchmark uses a temp SQLite file unless told a PostgreSQL database.
    let bench_db = cli.db.clone();
    let db = match cli.db {
        Some(db) => db,
        None => Database::Sqlite(default_db_path()?),
    };
    let json = cli.json;
    match cli.command {
        Command::Serve(args) => {
            init_logging("info");
            let tls = match (args.tls_cert, args.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => None,
            };
            let config = args.edge.apply(RelayConfig {
                db,
                listen: args.listen,
                lease_duration: Duration::from_secs(args.lease_seconds),
                retention: Duration::from_secs(args.retention_days * 24 * 3600),
                tls,
                webhook_allow_networks: args.webhook_allow_network,
                webhook_timeout: Duration::from_secs(args.webhook_timeout_seconds),
                ..RelayConfig::default()
            });
            runtime()?.block_on(serve(config, json, None))
        }
        Command::Dev(args) => {
            init_logging("info");
            let key = admin::create_key(
                &db,
                &NewKey {
                    test: true,
                    ..NewKey::named("dev")
                },
            )?;
            let code = admin::create_enrollment_code(&db, "dev agent")?;
            let config = args.edge.apply(RelayConfig {
                db,
                listen: args.listen,
                ..RelayConfig::default()
            });
            runtime()?.block_on(serve(config, json, Some((key, code))))
        }
        Command::Keys(cmd) => keys(&db, cmd, json),
        Command::Devices(cmd) => devices(&db, cmd, json),
        Command::Bench(args) => {
            init_logging("warn");
            runtime()?.block_on(super::bench::run(args, bench_db, json))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn keys(db: &Database, cmd: KeysCommand, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Create {
            name,
            daily_limit,
            max_queued,
            test,
            webhook_url,
        } => {
            let k = admin::create_key(
                db,
                &NewKey {
                    name,
                    daily_limit,
                    max_queued,
                    test,
                    webhook_url,
                },
            )?;
            if json {
                println!("{}", serde_json::to_string(&k)?);
            } else {
                println!(
                    "key id:  {}\nsecret:  {}\nname:    {}\nlimits:  {} jobs/day, {} queued\nwebhook: {}\n\nThe secret is shown only now. Store it in your secret manager.",
                    k.key_id,
                    k.secret,
                    k.name,
                    k.daily_limit,
                    k.max_queued,
                    k.webhook_url.as_deref().unwrap_or("none")
                );
            }
        }
        KeysCommand::List => {
            let keys = admin::list_keys(db)?;
            if json {
                println!("{}", json!({ "keys": keys }));
            } else if keys.is_empty() {
                println!(
                    "no API keys; create one with `link-peeler-relay keys create --name NAME`"
                );
            } else {
                println!(
                    "{:<32} {:<20} {:>10} {:>10} {:>7}  {:<16} WEBHOOK",
                    "KEY ID", "NAME", "DAILY", "MAXQUEUED", "QUEUED", "STATUS"
                );
                for k in keys {
                    let status = k
                        .revoked_at
                        .as_deref()
                        .map_or("active".to_owned(), |t| format!("revoked {t}"));
                    println!(
                        "{:<32} {:<20} {:>10} {:>10} {:>7}  {status:<16} {}",
                        k.key_id,
                        truncate(&k.name, 20),
                        k.daily_limit,
                        k.max_queued,
                        k.queued,
                        k.webhook_url.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        KeysCommand::SetWebhook { key_id, url, .. } => {
            if !admin::set_webhook(db, &key_id, url.as_deref())? {
                anyhow::bail!("no API key {key_id}");
            }
            if json {
                println!("{}", json!({ "keyId": key_id, "webhookUrl": url }));
            } else {
                match url {
                    Some(u) => println!("{key_id} now posts finished jobs to {u}"),
                    None => println!("{key_id} has no webhook URL now"),
                }
            }
        }
        KeysCommand::Revoke { key_id } => {
            if !admin::revoke_key(db, &key_id)? {
                anyhow::bail!("no API key {key_id}");
            }
            if json {
                println!("{}", json!({ "keyId": key_id, "revoked": true }));
            } else {
                println!("revoked {key_id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn devices(db: &Database, cmd: DevicesCommand, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        DevicesCommand::Enroll {
            name,
            expires_in_hours,
        } => {
            let c = admin::create_enrollment_code_with_ttl(
                db,
                &name,
                expires_in_hours as i64 * 3_600_000,
            )?;
            if json {
                println!("{}", serde_json::to_string(&c)?);
            } else {
                println!(
                    "enrollment code: {}\nvalid until:     {}\n\nOn the device: link-peeler enroll --relay RELAY_URL --code {}",
                    c.code, c.expires_at, c.code
                );
            }
        }
        DevicesCommand::List => {
            let devices = admin::list_devices(db)?;
            if json {
                println!("{}", json!({ "devices": devices }));
            } else if devices.is_empty() {
                println!(
                    "no devices; create an enrollment code with `link-peeler-relay devices enroll --name NAME`"
                );
            } else {
                println!(
                    "{:<28} {:<20} {:<8} {:<26}  {:<10}  AGENT",
                    "DEVICE ID", "NAME", "PLATFORM", "LAST SEEN", "STATUS"
                );
                for d in devices {
                    let status = d
                        .revoked_at
                        .as_deref()
                        .map_or("active".to_owned(), |t| format!("revoked {t}"));
                    println!(
                        "{:<28} {:<20} {:<8} {:<26}  {status:<10}  {}",
                        d.device_id,
                        truncate(&d.name, 20),
                        d.platform.as_deref().unwrap_or("-"),
                        d.last_seen_at.as_deref().unwrap_or("never"),
                        agent_state(d.agent_state.as_ref())
                    );
                }
            }
        }
        DevicesCommand::Revoke { device_id } => {
            if !admin::revoke_device(db, &device_id)? {
                anyhow::bail!("no device {device_id}");
            }
            if json {
                println!("{}", json!({ "deviceId": device_id, "revoked": true }));
            } else {
                println!("revoked {device_id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

async fn serve(
    config: RelayConfig,
    json: bool,
    dev: Option<(admin::CreatedKey, admin::EnrollmentCode)>,
) -> anyhow::Result<ExitCode> {
    let db = config.db.clone();
    let relay = super::serve(config).await?;
    let url = relay.url();
    let ops = relay.ops_addr.map(|a| a.to_string());
    match (&dev, json) {
        (None, true) => println!(
            "{}",
            json!({ "listen": relay.addr.to_string(), "url": url, "ops": ops })
        ),
        (None, false) => eprintln!(
            "link-peeler-relay: listening on {url} (database {db}{})",
            ops.as_deref()
                .map_or(String::new(), |a| format!(", /metrics on http://{a}"))
        ),
        (Some((key, code)), true) => println!(
            "{}",
            json!({
                "relay": url, "listen": relay.addr.to_string(), "db": db.to_string(),
                "ops": ops,
                "keyId": key.key_id, "secret": key.secret,
                "enrollmentCode": code.code, "codeExpiresAt": code.expires_at,
            })
        ),
        (Some((key, code)), false) => println!(
            "Link Peeler relay (dev) listening on {url}\n\
             database     {db}\n\n\
             API key      {key_id}\n\
             API secret   {secret}   (shown once)\n\
             Enroll code  {code}   (valid until {expires})\n\n\
             Enroll an agent on this machine:\n  \
               link-peeler enroll --relay {url} --code {code}\n\n\
             Submit a signed job:\n  \
               export LP_SECRET={secret}\n  \
               link-peeler submit --relay {url} --key {key_id} --secret-env LP_SECRET \\\n    \
                 --url https://example.com/ --idempotency-key demo-1\n\n\
             Press Ctrl-C to stop.",
            key_id = key.key_id,
            secret = key.secret,
            code = code.code,
            expires = code.expires_at,
        ),
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let token = relay.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        token.cancel();
    });
    relay.wait().await?;
    tracing::info!("relay stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `relay.db` in the platform data dir (e.g. `~/.local/share/link-peeler/`).
pub fn default_db_path() -> anyhow::Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "link-peeler").ok_or_else(|| {
        anyhow::anyhow!("cannot determine the data directory (no home directory?); pass --db PATH")
    })?;
    Ok(dirs.data_dir().join("relay.db"))
}

/// A device's last state report in one line: `paused (user, quotaReached), 0.1.0`.
fn agent_state(report: Option<&serde_json::Value>) -> String {
    let Some(r) = report else {
        return "-".into();
    };
    let state = r["state"].as_str().unwrap_or("?");
    let reasons: Vec<&str> = r["reasons"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let mut out = state.to_owned();
    if !reasons.is_empty() {
        out.push_str(&format!(" ({})", reasons.join(", ")));
    }
    if let Some(v) = r["version"].as_str() {
        out.push_str(&format!(", {v}"));
    }
    out
}
