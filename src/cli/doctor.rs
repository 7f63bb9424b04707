//! `link-peeler doctor`: PASS/FAIL per check, with a hint for each failure.
//! Exit 0 when everything passes, 1 otherwise.

use std::process::ExitCode;

use clap::Args;

use super::run::ConfigArgs;
use link_peeler_agent::doctor;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    settings: ConfigArgs,
}

pub fn run(args: DoctorArgs) -> ExitCode {
    let checks = doctor::run(args.settings.config.as_deref(), &args.settings.overrides());
    print!("{}", doctor::render(&checks));
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        println!("All {} checks passed.", checks.len());
        ExitCode::SUCCESS
    } else {
        println!("{failed} of {} checks failed.", checks.len());
        ExitCode::from(1)
    }
}
