//! The `link-peeler` command line: a thin layer that parses flags and calls
//! into the library. Each subcommand lives in its own file.
//!
//! Exit codes follow SPEC §7: 0 success, 1 the operation ran but did not
//! succeed (e.g. a link that did not resolve), 2 usage errors (clap's own).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod resolve;
mod submit;

/// Resolve tracking links on this desktop for a Link Peeler relay.
#[derive(Debug, Parser)]
#[command(name = "link-peeler", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit one signed job to a relay (for developers trying the API).
    Submit(submit::SubmitArgs),
    /// Follow a link here and now and show every hop (SPEC §7).
    Resolve(resolve::ResolveArgs),
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Submit(args)) => submit::run(args),
        Some(Command::Resolve(args)) => resolve::run(args),
        None => {
            eprintln!("link-peeler: the tray app is not built yet; see `link-peeler --help`");
            ExitCode::from(2)
        }
    }
}
