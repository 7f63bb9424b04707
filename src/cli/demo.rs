//! `link-peeler demo`: relay + agent + redirect lab in one process, no setup,
//! loopback only. Ctrl-C stops everything cleanly; a second Ctrl-C exits at once.

use std::process::ExitCode;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::demo::{self, DemoError};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Resolutions the demo agent runs at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    capacity: u32,
}

pub fn run(args: DemoArgs) -> ExitCode {
    link_peeler_agent::logging::init_stderr("error");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("link-peeler demo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        let stop = CancellationToken::new();
        let watcher = {
            let stop = stop.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\nlink-peeler demo: stopping (Ctrl-C again to exit at once)…");
                    stop.cancel();
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                }
            })
        };
        let r = demo::run(args.capacity, stop).await;
        watcher.abort();
        r
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(report) => {
            print!("{}", demo::render(&report));
            ExitCode::SUCCESS
        }
        Err(DemoError::Interrupted) => {
            eprintln!(
                "link-peeler demo: interrupted; relay, agent and lab stopped, temporary files removed."
            );
            ExitCode::from(130)
        }
        Err(DemoError::Failed(e)) => {
            eprintln!("link-peeler demo: {e:#}");
            ExitCode::from(1)
        }
    }
}
