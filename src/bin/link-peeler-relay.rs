//! The bundled relay binary. All logic lives in the library (`link_peeler::relay`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    link_peeler::relay::cli::run(link_peeler::relay::cli::Cli::parse())
}
