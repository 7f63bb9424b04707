//! `link-peeler status`: enrolled? relay reachable? clock skew? unsent results?

use std::process::ExitCode;

use clap::Args;

use super::run::ConfigArgs;
use link_peeler_agent::status;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of the table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    settings: ConfigArgs,
}

pub fn run(args: StatusArgs) -> ExitCode {
    match status::gather(args.settings.config.as_deref(), &args.settings.overrides()) {
        Ok(st) => {
            if args.json {
                println!("{}", serde_json::to_string(&st).unwrap_or_default());
            } else {
                print!("{}", status::render(&st));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("link-peeler status: {e}");
            ExitCode::from(1)
        }
    }
}
