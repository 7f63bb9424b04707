//! The `link-peeler` command line: a thin layer that parses flags and calls
//! into the library. Each subcommand lives in its own file.
//!
//! Exit codes follow protocol.md §5: 0 success, 1 the operation ran but did not
//! succeed (e.g. a link that did not resolve), 2 usage errors (clap's own).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod activity;
mod demo;
mod doctor;
mod enroll;
mod resolve;
mod run;
mod sign_out;
mod status;
mod submit;

/// Resolve tracking links on this desktop for a Link Peeler relay.
#[derive(Debug, Parser)]
#[command(
    name = "link-peeler",
    version,
    about,
    long_about = None,
    after_help = "Without a subcommand, link-peeler starts the tray app (builds with the `tray` feature)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit one signed job to a relay (for developers trying the API).
    Submit(submit::SubmitArgs),
    /// Run relay, agent and a redirect lab in one process and resolve a few links (loopback only).
    Demo(demo::DemoArgs),
    /// Exchange a one-time code for device credentials, stored in the OS keychain.
    Enroll(enroll::EnrollArgs),
    /// Run the agent: long-poll the relay, resolve links, post results.
    Run(run::RunArgs),
    /// Show enrollment, relay reachability, clock skew and unsent results.
    Status(status::StatusArgs),
    /// Check keychain, config, relay, TLS and clock; PASS/FAIL per line with hints.
    Doctor(doctor::DoctorArgs),
    /// Remove this computer's device credentials from the OS keychain.
    SignOut(sign_out::SignOutArgs),
    /// Follow a link here and now and show every hop (protocol.md §5).
    Resolve(resolve::ResolveArgs),
    /// Show what this computer did for others: links, bytes, pauses (also as CSV or HTML).
    Activity(activity::ActivityArgs),
}

pub use run::{TRAY_BINARY, tray_in_companion, tray_in_process};

/// How a binary starts the tray app (no subcommand, or `run` without
/// `--headless`): [`tray_in_process`] or [`tray_in_companion`]. A function
/// chosen at compile time, not a flag, so that a binary that hands the tray
/// on never references the tray's code and links no GUI library.
pub type TrayStart = fn(run::SettingsArgs) -> ExitCode;

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli, tray: TrayStart) -> ExitCode {
    match cli.command {
        Some(Command::Submit(args)) => submit::run(args),
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Enroll(args)) => enroll::run(args),
        Some(Command::Run(args)) => run::run(args, tray),
        Some(Command::Status(args)) => status::run(args),
        Some(Command::Doctor(args)) => doctor::run(args),
        Some(Command::SignOut(args)) => sign_out::run(args),
        Some(Command::Resolve(args)) => resolve::run(args),
        Some(Command::Activity(args)) => activity::run(args),
        None => tray(run::SettingsArgs::default()),
    }
}
