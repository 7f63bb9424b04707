//! The bundled relay binary. All logic lives in the library (`link_peeler_relay`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    link_peeler_relay::cli::run(link_peeler_relay::cli::Cli::parse())
}
