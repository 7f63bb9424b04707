//! `link-peeler enroll --relay URL --code CODE`: trade a one-time code for
//! device credentials and put them in the OS keychain.
//!
//! Order is chosen so that a failure leaves nothing behind and wastes no
//! code: the relay URL is checked first (no connection is made to a refused
//! URL), then the keychain is opened and read (no keychain → stop before the
//! single-use code is spent), and only then is the code sent. Nothing is
//! written to the keychain unless the relay returned credentials.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use link_peeler_agent::client::{RelayClient, RelayError};
use link_peeler_agent::config::{self, Overrides};
use link_peeler_agent::credentials::{self, DeviceCredentials, Keychain};
use link_peeler_wire::protocol::EnrollRequest;

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
    /// config.toml to read the relay URL from when --relay is not given
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
    let relay = match &args.relay {
        Some(r) => config::relay_url(r)?,
        None => config::load(args.config.as_deref(), &Overrides::default())?
            .settings
            .relay
            .ok_or_else(|| anyhow::anyhow!("no relay URL: pass --relay URL"))?,
    };
    let request = EnrollRequest {
        code: args.code.trim().to_owned(),
        name: Some(args.name.unwrap_or_else(link_peeler_agent::host_name)),
        platform: Some(link_peeler_agent::platform().to_owned()),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    };
    request
        .validate()
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;

    let keychain = Keychain::open(None)?;
    let previous = keychain.load()?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = RelayClient::new(relay.clone(), None)?;
    let answer = runtime
        .block_on(client.enroll(&request))
        .map_err(|e| match e {
            RelayError::Api { status, message, .. } if (400..500).contains(&status) => {
                if message.contains("admin") {
                    anyhow::anyhow!("the relay refused the enrollment code ({message})")
                } else {
                    anyhow::anyhow!(
                        "the relay refused the enrollment code ({message}); codes are single-use and expire, so ask your admin for a new one"
                    )
                }
            }
            other => anyhow::anyhow!("{other}"),
        })?;
    let creds = DeviceCredentials {
        device_id: answer.device_id.clone(),
        device_secret: answer.device_secret,
        relay: Some(relay.to_string()),
    };
    keychain.save(&creds).map_err(|e| {
        anyhow::anyhow!(
            "enrolled as {} but could not store the credentials ({e}); ask your admin to revoke {} and enroll again",
            creds.device_id,
            creds.device_id
        )
    })?;

    println!(
        "Enrolled this computer as {} with {relay}.",
        creds.device_id
    );
    println!(
        "The device secret is in the OS keychain (service \"{}\", account \"{}\").",
        credentials::KEYCHAIN_SERVICE,
        keychain.account()
    );
    if let Some(old) = previous.filter(|p| p.device_id != creds.device_id) {
        println!(
            "It replaces device {}; ask your admin to revoke it (`link-peeler-relay devices revoke {}`).",
            old.device_id, old.device_id
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
