//! `link-peeler enroll --relay URL --code CODE`: trade a one-time code for
//! device credentials and put them in the OS keychain.
//!
//! The work is the agent's one enrollment core (`link_peeler_agent::enrollment`),
//! shared with the tray and managed self-enrollment; this file only finds
//! the relay URL and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use link_peeler_agent::assembly;
use link_peeler_agent::config::{self, Overrides};
use link_peeler_agent::credentials;
use link_peeler_agent::enrollment::{self, EnrollError};

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Relay base URL (https://…; http:// only for a loopback relay)
    #[arg(long, value_name = "URL")]
    relay: Option<String>,
    /// One-time enrollment code from your admin (`link-peeler-relay devices enroll`)
    #[arg(long)]
    code: String,
    /// Name shown in the relay's device list (default: this computer's host name)
    #[arg(long)]
    name: Option<String>,
    /// PEM file of CA certificates trusted for the relay besides the OS trust store
    #[arg(long, value_name = "PATH")]
    relay_ca_file: Option<PathBuf>,
    /// config.toml to read the relay URL (and relay_ca_file) from when not given as flags
    #[arg(long, value_name = "PATH", env = config::ENV_CONFIG)]
    config: Option<PathBuf>,
}

pub fn run(args: EnrollArgs) -> ExitCode {
    match enroll(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("link-peeler enroll: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn enroll(args: EnrollArgs) -> anyhow::Result<()> {
    // A refused relay URL fails before any file is read or anything is contacted.
    let flag_relay = args.relay.as_deref().map(config::relay_url).transpose()?;
    let flags = Overrides {
        relay_ca_file: args.relay_ca_file.clone(),
        ..Overrides::default()
    };
    let settings = assembly::load(args.config.as_deref(), &flags)?.settings;
    let relay = match flag_relay {
        Some(r) => r,
        None => settings
            .relay
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no relay URL: pass --relay URL"))?,
    };
    let roots = settings.relay_roots();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (enrolled, account) = runtime
        .block_on(async {
            let prepared = enrollment::prepare(&args.code, args.name, None).await?;
            let account = prepared.account().to_owned();
            Ok((enrollment::send(&prepared, &relay, roots).await?, account))
        })
        .map_err(|e| match e {
            EnrollError::Unreachable { relay, detail } => {
                anyhow::anyhow!("cannot reach the relay at {relay}: {detail}")
            }
            other => anyhow::anyhow!("{other}"),
        })?;
    println!(
        "Enrolled this computer as {} with {relay}.",
        enrolled.device_id
    );
    println!(
        "The device secret is in the OS keychain (service \"{}\", account \"{account}\").",
        credentials::KEYCHAIN_SERVICE,
    );
    if let Some(old) = enrolled.replaced {
        println!(
            "It replaces device {old}; ask your admin to revoke it (`link-peeler-relay devices revoke {old}`)."
        );
    }
    if credentials::from_env().ok().flatten().is_some() {
        println!(
            "Note: {} and {} are set in this environment and take precedence over the keychain.",
            credentials::ENV_DEVICE_ID,
            credentials::ENV_DEVICE_SECRET
        );
    }
    println!("Start the agent with: link-peeler run --headless");
    Ok(())
}
