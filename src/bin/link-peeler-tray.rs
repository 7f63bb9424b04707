//! `link-peeler-tray`: the `link-peeler` command line with the tray app in
//! process. On Linux `link-peeler` hands its tray over to this binary (see
//! `link-peeler.rs`), so that only the tray pays for loading GTK. Every
//! subcommand works here too; installers start `link-peeler`, not this.

use clap::Parser;

/// Counts the bytes each thread holds, so that the resolver's script sandbox
/// can enforce its per-page memory budget (otherwise the system allocator).
#[global_allocator]
static ALLOC: link_peeler_resolver::sandbox::MeteredAlloc =
    link_peeler_resolver::sandbox::MeteredAlloc;

fn main() -> std::process::ExitCode {
    link_peeler::cli::run(
        link_peeler::cli::Cli::parse(),
        link_peeler::cli::tray_in_process,
    )
}
