//! `link-peeler-tray`: the `link-peeler` command line with the tray app in
//! process. On Linux `link-peeler` hands its tray over to this binary (see
//! `link-peeler.rs`), so that only the tray pays for loading GTK. Every
//! subcommand works here too; installers start `link-peeler`, not this.

use clap::Parser;

fn main() -> std::process::ExitCode {
    link_peeler::cli::run(
        link_peeler::cli::Cli::parse(),
        link_peeler::cli::tray_in_process,
    )
}
