//! `link-peeler sign-out`: remove this computer's device credentials from the OS keychain.
//!
//! The relay is not told: revoking a device is the admin's call
//! (`link-peeler-relay devices revoke`). Results waiting in the outbox are
//! kept, so nothing already worked for is lost if the same device signs in again.

use std::process::ExitCode;

use clap::Args;

use link_peeler_agent::credentials::{self, Keychain};

#[derive(Debug, Args)]
pub struct SignOutArgs {}

pub fn run(_args: SignOutArgs) -> ExitCode {
    let result = Keychain::open(None).and_then(|k| k.delete().map(|had| (k, had)));
    match result {
        Ok((k, true)) => {
            println!(
                "Signed out: removed the device credentials from the OS keychain (account \"{}\").",
                k.account()
            );
            env_note();
            ExitCode::SUCCESS
        }
        Ok((_, false)) => {
            println!("Not signed in: the OS keychain holds no Link Peeler credentials.");
            env_note();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("link-peeler sign-out: {e}");
            ExitCode::from(1)
        }
    }
}

fn env_note() {
    if credentials::from_env().ok().flatten().is_some() {
        println!(
            "Note: {} and {} are still set in this environment; unset them too.",
            credentials::ENV_DEVICE_ID,
            credentials::ENV_DEVICE_SECRET
        );
    }
}
