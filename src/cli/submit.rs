//! `link-peeler submit`: signed submissions from the command line.
//!
//! Three shapes, one set of credentials:
//! - one job (`--url`, `--idempotency-key`): prints the job JSON, for
//!   developers trying the API;
//! - one job with `--wait`: waits until it is finished and prints its hop
//!   table exactly as `link-peeler resolve` does;
//! - a rows file (`--csv FILE`): the scheduled worker's run — batches, the
//!   results feed, a results CSV ([`csv_run`]).
//!
//! The secret is read from the environment variable `--secret-env` names,
//! never from a flag (argv is visible to every user of the machine).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};

use link_peeler_wire::api::{ApiClient, WaitError};
use link_peeler_wire::client::RelayError;
use link_peeler_wire::protocol::{FetchOptions, FetchRequest, Job, JobStatus};

mod batches;
mod csv_run;
mod results;
mod rows;

/// How often `--wait` reads the job back.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("waiting").args(["wait", "csv"]).multiple(false)))]
pub struct SubmitArgs {
    /// Relay base URL, e.g. http://127.0.0.1:8787
    #[arg(long)]
    relay: url::Url,
    /// API key id (lp_live_… or lp_test_…)
    #[arg(long)]
    key: String,
    /// Name of the environment variable that holds the API secret (never pass secrets as flags)
    #[arg(long, value_name = "VAR")]
    secret_env: String,
    /// The tracking URL to resolve (one job; --csv submits many)
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    url: Option<String>,
    /// Idempotency key for this logical job
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    idempotency_key: Option<String>,
    /// Free label echoed back; with --csv, for the rows whose `source` cell is empty
    #[arg(long)]
    source: Option<String>,
    #[arg(long, conflicts_with = "csv")]
    row_id: Option<String>,
    /// Per-job hop limit (1–100)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_hops: Option<u32>,
    /// Wait for the job to finish and print its hop table (as `link-peeler resolve` does)
    #[arg(long)]
    wait: bool,
    /// How long --wait or --csv waits for results, in seconds (1–86400)
    #[arg(long, value_name = "SECS", requires = "waiting", default_value = "600", value_parser = parse_wait_timeout)]
    wait_timeout: Duration,
    /// Submit every row of a CSV file (columns `url`, `rowId`, optional `source`,
    /// `idempotencyKey`) and write a results CSV
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Where --csv writes its results (default: FILE with the extension `.results.csv`)
    #[arg(long, value_name = "FILE", requires = "csv", conflicts_with = "url")]
    out: Option<PathBuf>,
    /// Replace the results file if it exists (otherwise an existing file is an error)
    #[arg(long, requires = "csv", conflicts_with = "url")]
    overwrite: bool,
    /// The date in the idempotency keys --csv derives, `DATE/row-ROWID` (default: today, UTC)
    #[arg(long, value_name = "YYYY-MM-DD", requires = "csv", conflicts_with = "url", value_parser = rows::parse_run_date)]
    run_date: Option<time::Date>,
}

fn parse_wait_timeout(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(secs @ 1..=86_400) => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 1 and 86400"
        )),
    }
}

pub fn run(args: SubmitArgs) -> ExitCode {
    match submit(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("link-peeler submit: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let secret = std::env::var(&args.secret_env).map_err(|_| {
        anyhow::anyhow!(
            "environment variable {} is not set (it must hold the API secret)",
            args.secret_env
        )
    })?;
    let options = args.max_hops.map(|h| FetchOptions {
        max_hops: Some(h),
        user_agent: None,
    });
    if let Some(csv) = args.csv {
        let plan = csv_run::Plan {
            rows_file: csv,
            out: args.out,
            overwrite: args.overwrite,
            run_date: args.run_date,
            default_source: args.source,
            options,
            wait_timeout: args.wait_timeout,
        };
        return csv_run::run(plan, args.relay.as_str(), &args.key, &secret);
    }
    let (Some(url), Some(idempotency_key)) = (args.url, args.idempotency_key) else {
        anyhow::bail!("--url and --idempotency-key are required without --csv");
    };
    let request = FetchRequest {
        idempotency_key,
        tracking_url: url,
        source: args.source,
        row_id: args.row_id,
        options,
    };
    request.validate()?;
    let api = ApiClient::new(args.relay.as_str(), &args.key, &secret)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let submitted = match runtime.block_on(api.submit_request(&request)) {
        Ok(submitted) => submitted,
        Err(e @ RelayError::Api { .. }) => {
            eprintln!("link-peeler submit: relay refused: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    if submitted.replayed {
        eprintln!("(idempotent replay: the job already existed)");
    }
    if !args.wait {
        println!("{}", serde_json::to_string(&submitted.job)?);
        return Ok(ExitCode::SUCCESS);
    }
    let job = submitted.job;
    let waited =
        runtime.block_on(api.wait_finished(&job.job_id, WAIT_POLL_INTERVAL, args.wait_timeout));
    match waited {
        Ok(job) => Ok(print_finished(&job)),
        Err(WaitError::StillRunning { .. }) => {
            eprintln!(
                "link-peeler submit: job {} not finished after {} s (is an agent online?)",
                job.job_id,
                args.wait_timeout.as_secs()
            );
            Ok(ExitCode::from(1))
        }
        Err(WaitError::Relay(e)) => Err(e.into()),
    }
}

/// A finished job as `resolve` prints a result; a failed job as one line on stderr.
fn print_finished(job: &Job) -> ExitCode {
    match (&job.status, &job.result) {
        (JobStatus::Done, Some(result)) => {
            eprintln!("job {} done", job.job_id);
            super::resolve::print_table(result);
            super::resolve::exit_code(result)
        }
        _ => {
            let why = job.error.as_ref().map_or_else(
                || "no result".to_owned(),
                |e| format!("{}: {}", e.code, e.message),
            );
            eprintln!(
                "link-peeler submit: job {} {}: {why}",
                job.job_id,
                job.status.as_str()
            );
            ExitCode::from(1)
        }
    }
}
