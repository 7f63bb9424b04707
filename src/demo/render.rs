//! The demo's printout: one hop table per job and a summary.
//!
//! Lab URLs are shown as paths (the lab's origin is printed once) so each
//! hop fits on a terminal line.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::Report;
use link_peeler_wire::protocol::{Conclusion, Job, JobStatus, ResolutionResult};

/// The full text printed by `link-peeler demo`.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    write_intro(&mut out, r);
    let mut tally = Tally::default();
    for (i, (title, job)) in r.jobs.iter().enumerate() {
        let _ = writeln!(out);
        match (&job.status, &job.result) {
            (JobStatus::Done, Some(res)) => {
                tally.count(res.conclusion.as_str(), res.hops.len());
                write_result(&mut out, i + 1, title, res, &r.lab_url);
            }
            _ => {
                tally.count(job.status.as_str(), 0);
                write_unfinished(&mut out, i + 1, title, job);
            }
        }
    }
    write_summary(&mut out, r, &tally);
    out
}

/// What the summary counts: hops over all results, and jobs by conclusion
/// (or by status, for a job without a result).
#[derive(Default)]
struct Tally {
    hops: usize,
    by_conclusion: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn count(&mut self, outcome: &'static str, hops: usize) {
        self.hops += hops;
        *self.by_conclusion.entry(outcome).or_default() += 1;
    }
}

/// What runs where.
fn write_intro(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "Link Peeler demo: relay, agent and a redirect lab in one process, loopback only."
    );
    let _ = writeln!(out, "  relay  {}  (temporary SQLite database)", r.relay_url);
    let _ = writeln!(
        out,
        "  lab    {}  (paths below are on this host)",
        r.lab_url
    );
    let _ = writeln!(
        out,
        "  agent  {}  (enrolled with a one-time code, secret in memory, capacity {})",
        r.device_id, r.capacity
    );
}

/// A finished job: its title line, its hop table and, if any, why it failed.
fn write_result(out: &mut String, n: usize, title: &str, res: &ResolutionResult, lab_url: &str) {
    let mark = if res.conclusion == Conclusion::Resolved {
        "✓"
    } else {
        "✗"
    };
    let _ = writeln!(
        out,
        "{n}. {title}  {mark} {}{} · {} hop{} · {} ms",
        res.conclusion,
        res.final_status
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
        res.hops.len(),
        if res.hops.len() == 1 { "" } else { "s" },
        res.elapsed_ms
    );
    let _ = writeln!(out, "   {:<3} {:<6} {:<15} url", "#", "status", "redirect");
    for (i, hop) in res.hops.iter().enumerate() {
        let status = hop
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "—".into());
        let kind = hop.redirect_kind.map(|k| k.as_str()).unwrap_or("—");
        let url = short(&hop.url, lab_url);
        let method = hop
            .method
            .as_deref()
            .map(|m| format!("{m} "))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "   {:<3} {:<6} {:<15} {method}{}",
            i + 1,
            status,
            kind,
            url
        );
    }
    if let Some(err) = &res.error {
        let _ = writeln!(out, "   why: {err}");
    }
}

/// A lab URL as its path (the lab's origin is printed once); any other URL as is.
fn short<'u>(url: &'u str, lab_url: &str) -> &'u str {
    url.strip_prefix(lab_url)
        .filter(|p| p.starts_with('/'))
        .unwrap_or(url)
}

/// A job that ended without a result: its status and the relay's reason.
fn write_unfinished(out: &mut String, n: usize, title: &str, job: &Job) {
    let why = job
        .error
        .as_ref()
        .map(|e| format!(" ({}: {})", e.code, e.message))
        .unwrap_or_default();
    let _ = writeln!(out, "{n}. {title}  ✗ job {}{why}", job.status.as_str());
}

fn write_summary(out: &mut String, r: &Report, tally: &Tally) {
    let conclusions = tally
        .by_conclusion
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Summary: {} jobs ({conclusions}), {} hops, {:.2} s from first submission to last result.",
        r.jobs.len(),
        tally.hops,
        r.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "Every job was signed by the API key, resolved by {} and posted back signed; all of it is gone now.",
        resolver_name(r)
    );
}

/// The device id when that one device resolved every job that says who resolved it.
fn resolver_name(r: &Report) -> &str {
    let by: Vec<_> = r
        .jobs
        .iter()
        .filter_map(|(_, j)| j.resolved_by.as_deref())
        .collect();
    if by.iter().all(|d| *d == r.device_id) && !by.is_empty() {
        r.device_id.as_str()
    } else {
        "the agent"
    }
}
