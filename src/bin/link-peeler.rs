//! The desktop agent binary. All logic lives in the library (`link_peeler::cli`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    link_peeler::cli::run(link_peeler::cli::Cli::parse())
}
