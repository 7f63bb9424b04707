//! `link-peeler activity`: what this computer did for others — the same
//! "Recent activity" the tray shows — as a table, CSV or the HTML page.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::run::ConfigArgs;
use link_peeler_agent::history::{self, Entry};
use link_peeler_agent::{assembly, config};

/// The longest `--days` (ten years): anything longer is a typo.
const MAX_DAYS: u32 = 3650;

#[derive(Debug, Args)]
pub struct ActivityArgs {
    /// Only the last N days (default: all that is kept, activity_retention_days)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
    days: Option<u32>,
    /// Write CSV to FILE ('-' for standard output) instead of the table
    #[arg(long, value_name = "FILE", conflicts_with = "html")]
    csv: Option<PathBuf>,
    /// Write the HTML page (as the tray opens it) to FILE ('-' for standard output)
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    #[command(flatten)]
    settings: ConfigArgs,
}

pub fn run(args: ActivityArgs) -> ExitCode {
    match activity(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("link-peeler activity: {e}");
            ExitCode::from(1)
        }
    }
}

fn activity(args: &ActivityArgs) -> Result<(), String> {
    let loaded = assembly::load(args.settings.config.as_deref(), &args.settings.overrides())
        .map_err(|e| e.to_string())?;
    let policy = &loaded.settings.policy;
    let days = args.days.unwrap_or(policy.activity_retention_days.value);
    let data_dir = config::data_dir().map_err(|e| e.to_string())?;
    let since = history::now_ms() - i64::from(days) * 86_400_000;
    let entries = history::read(&data_dir, since)
        .map_err(|e| format!("cannot read {}: {e}", history::path(&data_dir).display()))?;
    let (text, to) = match (&args.csv, &args.html) {
        (Some(f), _) => (history::csv(&entries), Some(f)),
        (None, Some(f)) => (history::page(&entries, policy), Some(f)),
        (None, None) => (table(&entries), None),
    };
    match to {
        Some(f) if f.as_os_str() != "-" => {
            std::fs::write(f, text).map_err(|e| format!("cannot write {}: {e}", f.display()))
        }
        _ => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string()),
    }
}

/// One line per entry, oldest first, local time.
fn table(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "No activity recorded.\n".to_owned();
    }
    let mut out = String::new();
    for e in entries {
        let at = history::local_time(e.at_ms());
        let line = match e {
            Entry::Task(t) => format!(
                "{at}  {:<10} {} -> {}  {} hop{}, {} bytes, for {}{}",
                t.conclusion,
                t.input_domain,
                t.final_domain,
                t.hops,
                if t.hops == 1 { "" } else { "s" },
                t.bytes,
                t.requester
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("?"),
                t.source
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default(),
            ),
            Entry::State(s) if s.state == "active" => format!("{at}  working again"),
            Entry::State(s) => format!("{at}  paused: {}", s.reasons.join(", ")),
        };
        // Labels come from other people: no control characters reach the terminal.
        out.extend(line.chars().filter(|c| !c.is_control()));
        out.push('\n');
    }
    out
}
