//! `link-peeler submit --csv FILE`: a scheduled worker's run.
//!
//! 1. Read and check the rows file ([`rows`]) and the results target
//!    ([`ResultsFile::prepare`]) — a bad file or an existing results file
//!    stops the run before any job exists.
//! 2. Check each row as the relay would (`FetchRequest::validate`): a row the
//!    relay would call invalid is reported, not sent, which also keeps every
//!    item far below the batch byte limit.
//! 3. Submit the rest in batches (protocol.md §3.9). A batch is idempotent,
//!    so a network error or a 5xx is retried with the same items; on a second
//!    run the rows come back `replayed`, with their jobs as they are now —
//!    finished ones included, which is how a re-run learns their results
//!    without waiting.
//! 4. Follow the results feed (§3.10) from its beginning until every job
//!    this run is waiting for has finished or `--wait-timeout` passes. The
//!    feed has every finish in commit order, so none is missed; events for
//!    other jobs of the key are skipped.
//! 5. Write the results file ([`results`]), one line per row in input order.
//!
//! Exit code 0 when every row's job is `done`, 1 otherwise (a row refused,
//! invalid or in conflict, a failed job, or jobs still running at the deadline).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

use link_peeler_wire::api::ApiClient;
use link_peeler_wire::client::RelayError;
use link_peeler_wire::protocol::{
    ApiError, BatchItem, BatchOutcome, FetchOptions, FetchRequest, JobStatus,
    MAX_EVENTS_WAIT_SECONDS,
};

use super::batches;
use super::results::{self, Outcome, ResultsFile, is_finished};
use super::rows::{self, Row};

/// What `submit --csv` was asked to do.
pub struct Plan {
    pub rows_file: PathBuf,
    pub out: Option<PathBuf>,
    pub overwrite: bool,
    pub run_date: Option<time::Date>,
    pub default_source: Option<String>,
    pub options: Option<FetchOptions>,
    pub wait_timeout: Duration,
}

/// Events per feed page: the relay's default. Each job may carry a result of
/// up to 64 KiB, and 100 of them stay well inside the client's 16 MiB answer limit.
const FEED_PAGE: Option<u32> = None;

/// Attempts for one batch or feed request before the run gives up on it.
const ATTEMPTS: u32 = 4;

pub fn run(plan: Plan, relay: &str, key: &str, secret: &str) -> anyhow::Result<ExitCode> {
    let run_date = plan.run_date.unwrap_or_else(rows::today_utc);
    let rows = rows::read(&plan.rows_file, run_date, plan.default_source.as_deref())?;
    let out = plan
        .out
        .clone()
        .unwrap_or_else(|| results::default_path(&plan.rows_file));
    let file = ResultsFile::prepare(&out, &plan.rows_file, plan.overwrite)?;
    let api = ApiClient::new(relay, key, secret)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let bar = progress_bar(rows.len() as u64);
    let deadline = Instant::now() + plan.wait_timeout;
    let mut outcomes = vec![
        Outcome::NoJob {
            status: "unsent",
            error: String::new(),
        };
        rows.len()
    ];
    let submitted = runtime.block_on(submit_all(
        &api,
        &rows,
        plan.options.as_ref(),
        &mut outcomes,
        &bar,
    ));
    if let Err(e) = &submitted
        && !outcomes.iter().any(|o| matches!(o, Outcome::Job(_)))
    {
        bar.finish_and_clear();
        anyhow::bail!("nothing was submitted: {e}");
    }
    runtime.block_on(follow_feed(&api, &mut outcomes, &bar, deadline));
    bar.finish_and_clear();
    file.finish(rows.iter().zip(&outcomes))?;

    let (summary, all_done) = summary(&outcomes);
    eprintln!(
        "link-peeler submit: {} rows: {summary}; results in {}",
        rows.len(),
        out.display()
    );
    if let Err(e) = submitted {
        eprintln!("link-peeler submit: some rows were not submitted: {e}");
    }
    if outcomes.iter().any(Outcome::is_pending) {
        eprintln!(
            "link-peeler submit: some jobs had not finished after {} s (is an agent online?); \
             run the same file again to collect them",
            plan.wait_timeout.as_secs()
        );
    }
    Ok(if all_done {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Steps 2 and 3: every row gets a job or the reason it has none.
async fn submit_all(
    api: &ApiClient,
    rows: &[Row],
    options: Option<&FetchOptions>,
    outcomes: &mut [Outcome],
    bar: &ProgressBar,
) -> Result<(), RelayError> {
    bar.set_message("submitting");
    let mut send = Vec::new();
    let mut requests = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let request = FetchRequest {
            idempotency_key: row.idempotency_key.clone(),
            tracking_url: row.url.clone(),
            source: row.source.clone(),
            row_id: Some(row.row_id.clone()),
            options: options.cloned(),
        };
        match request.validate() {
            Ok(()) => {
                send.push(i);
                requests.push(request);
            }
            Err(e) => {
                let error = describe(Some(&e));
                bar.suspend(|| {
                    eprintln!("link-peeler submit: line {}: not sent: {error}", row.line);
                });
                outcomes[i] = Outcome::NoJob {
                    status: BatchOutcome::Invalid.as_str(),
                    error,
                };
                bar.inc(1);
            }
        }
    }
    let batches = batches::split(&requests)
        .map_err(|e| RelayError::unreadable(0, format!("cannot encode the batch: {e}")))?;
    for range in batches {
        let answer = retrying("submitting a batch", bar, || {
            api.batch(&requests[range.clone()])
        })
        .await;
        match answer {
            Ok(items) => {
                for (k, item) in items.into_iter().enumerate() {
                    let outcome = outcome_of(item);
                    if !outcome.is_pending() {
                        bar.inc(1);
                    }
                    outcomes[send[range.start + k]] = outcome;
                }
            }
            Err(e) => {
                for &i in &send[range.start..] {
                    outcomes[i] = Outcome::NoJob {
                        status: "unsent",
                        error: format!("not submitted: {e}"),
                    };
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// One batch item as a row's outcome.
fn outcome_of(item: BatchItem) -> Outcome {
    match (item.outcome, item.job) {
        (BatchOutcome::Created | BatchOutcome::Replayed, Some(job)) => Outcome::Job(Box::new(job)),
        (outcome, _) => Outcome::NoJob {
            status: outcome.as_str(),
            error: describe(item.error.as_ref()),
        },
    }
}

fn describe(error: Option<&ApiError>) -> String {
    error.map_or_else(
        || "the relay gave no reason".to_owned(),
        |e| format!("{}: {}", e.code, e.message),
    )
}

/// Step 4: read the feed until no row waits for its job or `deadline` passes.
async fn follow_feed(
    api: &ApiClient,
    outcomes: &mut [Outcome],
    bar: &ProgressBar,
    deadline: Instant,
) {
    let mut waiting: HashMap<String, usize> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outcome::Job(job) if !is_finished(job) => Some((job.job_id.clone(), i)),
            _ => None,
        })
        .collect();
    bar.set_message("waiting for results");
    let mut cursor: Option<String> = None;
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.min(Duration::from_secs(u64::from(MAX_EVENTS_WAIT_SECONDS)));
        // Whole seconds on the wire: under one second left, one last look.
        let last = wait.as_secs() == 0;
        let page = retrying("reading the results feed", bar, || {
            api.events(cursor.as_deref(), wait, FEED_PAGE)
        })
        .await;
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                bar.suspend(|| eprintln!("link-peeler submit: cannot read the results feed: {e}"));
                return;
            }
        };
        for event in page.events {
            if let Some(i) = waiting.remove(&event.job.job_id) {
                outcomes[i] = Outcome::Job(Box::new(event.job));
                bar.inc(1);
            }
        }
        cursor = Some(page.next_cursor);
        if last {
            return;
        }
    }
}

/// `call`, again after 1, 2, 4 s (or the relay's `Retry-After`, up to a
/// minute) while it fails in a way that may pass: no answer, 408, 429, 5xx.
async fn retrying<T, F, Fut>(what: &str, bar: &ProgressBar, mut call: F) -> Result<T, RelayError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RelayError>>,
{
    let mut delay = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                let pause = e
                    .retry_after()
                    .unwrap_or(delay)
                    .clamp(delay, Duration::from_secs(60));
                bar.suspend(|| {
                    eprintln!(
                        "link-peeler submit: {what}: {e}; trying again in {} s",
                        pause.as_secs()
                    );
                });
                tokio::time::sleep(pause).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn transient(e: &RelayError) -> bool {
    match e {
        RelayError::Unreachable { tls, .. } => !tls,
        RelayError::Api { status, .. } => matches!(status, 408 | 429 | 500..=599),
    }
}

/// A progress bar on stderr when it is a terminal, else nothing at all.
fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} rows  {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `3 done, 1 failed, 1 invalid` (statuses in a fixed order) and whether every row is done.
fn summary(outcomes: &[Outcome]) -> (String, bool) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for o in outcomes {
        let status = match o {
            Outcome::Job(job) => job.status.as_str(),
            Outcome::NoJob { status, .. } => *status,
        };
        *counts.entry(status).or_default() += 1;
    }
    let order = [
        JobStatus::Done.as_str(),
        JobStatus::Failed.as_str(),
        JobStatus::Queued.as_str(),
        JobStatus::Leased.as_str(),
        BatchOutcome::Invalid.as_str(),
        BatchOutcome::Conflict.as_str(),
        BatchOutcome::Refused.as_str(),
        "unsent",
    ];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|s| counts.get(s).map(|n| format!("{n} {s}")))
        .collect();
    let all_done = counts.get("done") == Some(&outcomes.len());
    (parts.join(", "), all_done)
}
