//! The demo's printout: one hop table per job and a summary.
//!
//! Lab URLs are shown as paths (the lab's origin is printed once) so each
//! hop fits on a terminal line.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::Report;
use link_peeler_wire::protocol::{Conclusion, JobStatus};

/// The full text printed by `link-peeler demo`.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let short = |url: &str| -> String {
        url.strip_prefix(&r.lab_url)
            .filter(|p| p.starts_with('/'))
            .unwrap_or(url)
            .to_owned()
    };
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
    let mut hops_total = 0usize;
    let mut by_conclusion: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (title, job)) in r.jobs.iter().enumerate() {
        let _ = writeln!(out);
        match (&job.status, &job.result) {
            (JobStatus::Done, Some(res)) => {
                hops_total += res.hops.len();
                *by_conclusion.entry(res.conclusion.as_str()).or_default() += 1;
                let mark = if res.conclusion == Conclusion::Resolved {
                    "✓"
                } else {
                    "✗"
                };
                let _ = writeln!(
                    out,
                    "{}. {title}  {mark} {}{} · {} hop{} · {} ms",
                    i + 1,
                    res.conclusion,
                    res.final_status
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default(),
                    res.hops.len(),
                    if res.hops.len() == 1 { "" } else { "s" },
                    res.elapsed_ms
                );
                let _ = writeln!(out, "   {:<3} {:<6} {:<15} url", "#", "status", "redirect");
                for (n, hop) in res.hops.iter().enumerate() {
                    let status = hop
                        .status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "—".into());
                    let kind = hop.redirect_kind.map(|k| k.as_str()).unwrap_or("—");
                    let _ = writeln!(
                        out,
                        "   {:<3} {:<6} {:<15} {}",
                        n + 1,
                        status,
                        kind,
                        short(&hop.url)
                    );
                }
                if let Some(err) = &res.error {
                    let _ = writeln!(out, "   why: {err}");
                }
            }
            _ => {
                *by_conclusion.entry(job.status.as_str()).or_default() += 1;
                let why = job
                    .error
                    .as_ref()
                    .map(|e| format!(" ({}: {})", e.code, e.message))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{}. {title}  ✗ job {}{why}",
                    i + 1,
                    job.status.as_str()
                );
            }
        }
    }
    let conclusions = by_conclusion
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Summary: {} jobs ({conclusions}), {hops_total} hops, {:.2} s from first submission to last result.",
        r.jobs.len(),
        r.elapsed.as_secs_f64()
    );
    let by: Vec<_> = r
        .jobs
        .iter()
        .filter_map(|(_, j)| j.resolved_by.as_deref())
        .collect();
    let _ = writeln!(
        out,
        "Every job was signed by the API key, resolved by {} and posted back signed; all of it is gone now.",
        if by.iter().all(|d| *d == r.device_id) && !by.is_empty() {
            r.device_id.as_str()
        } else {
            "the agent"
        }
    );
    out
}
