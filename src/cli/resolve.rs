//! `link-peeler resolve`: follow one link here and now, print every hop.
//!
//! Exit codes (protocol.md §5): 0 when the chain is `resolved`, 1 for any other
//! conclusion, 2 for usage errors (clap's own, plus a bad `--allow-network`
//! CIDR, `--timeout` or `--user-agent`, which are checked while parsing).
//!
//! A URL argument that does not parse is *not* a usage error: it is the
//! `invalid_url` conclusion (exit 1), printed like any other result, so that
//! `--json` consumers always get a protocol.md §5 object for the URL they passed.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ipnet::IpNet;

use link_peeler_resolver::{MAX_HOPS_LIMIT, Resolver, ResolverConfig};
use link_peeler_wire::protocol::{
    Conclusion, Hop, ResolutionResult, USER_AGENT_RULE, is_valid_user_agent,
};

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Print the result (protocol.md §5) as one JSON line instead of a table
    #[arg(long)]
    json: bool,
    /// Redirects to follow before giving up (1–100)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_HOPS_LIMIT)))]
    max_hops: u32,
    /// Deadline for the whole chain, in seconds (fractions allowed)
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_timeout)]
    timeout: Duration,
    /// User-Agent to send (default: a desktop Chrome's)
    #[arg(long, value_name = "UA", value_parser = parse_user_agent)]
    user_agent: Option<String>,
    /// Open an address range the SSRF guard refuses, e.g. 127.0.0.1/32 (repeatable)
    #[arg(long = "allow-network", value_name = "CIDR", value_parser = parse_cidr)]
    allow_networks: Vec<IpNet>,
    /// The link to resolve (http or https)
    url: String,
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!(
        "{s:?} is not a CIDR range; expected e.g. 127.0.0.1/32, 192.168.1.0/24 or ::1/128"
    ))
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err("the timeout must be more than 0 and at most 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_user_agent(s: &str) -> Result<String, String> {
    if is_valid_user_agent(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("the user agent must be {USER_AGENT_RULE}"))
    }
}

pub fn run(args: ResolveArgs) -> ExitCode {
    let defaults = ResolverConfig::default();
    let config = ResolverConfig {
        max_hops: args.max_hops,
        timeout: args.timeout,
        per_hop_timeout: defaults.per_hop_timeout.min(args.timeout),
        user_agent: args.user_agent.unwrap_or(defaults.user_agent),
        allow_networks: args.allow_networks,
    };
    let resolver = match Resolver::new(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("link-peeler resolve: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("link-peeler resolve: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(resolver.resolve(&args.url));
    if args.json {
        match serde_json::to_string(&result) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("link-peeler resolve: cannot encode the result: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print_table(&result);
    }
    exit_code(&result)
}

/// Prints `result` as the hop table on stdout, coloured on a terminal unless
/// `NO_COLOR` is set. `submit --wait` prints its job's result with it too.
pub(super) fn print_table(result: &ResolutionResult) {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    print!("{}", render_table(result, colour));
}

/// 0 when the chain is `resolved`, 1 for any other conclusion (protocol.md §5).
pub(super) fn exit_code(result: &ResolutionResult) -> ExitCode {
    if result.conclusion == Conclusion::Resolved {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

const RESET: &str = "\x1b[0m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";

fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

fn status_colour(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => GREEN,
        Some(300..=399) => YELLOW,
        _ => RED,
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The table's columns; the URL comes last so that long URLs never push the
/// other columns about.
const HEADER: [&str; 5] = ["#", "STATUS", "KIND", "TIME", "URL"];

/// One hop as the table's cells, in [`HEADER`] order.
type Row = [String; 5];

/// The human-readable output: an aligned hop table and a summary line.
pub fn render_table(r: &ResolutionResult, colour: bool) -> String {
    let rows = hop_rows(&r.hops);
    let width = column_widths(&rows);
    let mut out = String::new();
    if !rows.is_empty() {
        let header = table_line(HEADER, &width, |status| status);
        let _ = writeln!(out, "{}", paint(&header, DIM, colour));
    }
    for (row, hop) in rows.iter().zip(&r.hops) {
        let cells = row.each_ref().map(String::as_str);
        let line = table_line(cells, &width, |status| {
            paint(&status, status_colour(hop.status), colour)
        });
        let _ = writeln!(out, "{line}");
    }
    if let Some(note) = unfollowed_note(&r.hops, width[0]) {
        let _ = writeln!(out, "{}", paint(&note, DIM, colour));
    }
    for (i, hop) in r.hops.iter().enumerate() {
        if let Some(note) = &hop.note {
            let line = format!("note on hop {}: {note}", i + 1);
            let _ = writeln!(out, "{}", paint(&line, DIM, colour));
        }
    }
    if !rows.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{}", summary_line(r, colour));
    if let Some(e) = &r.error {
        let _ = writeln!(out, "{}", paint(&format!("error: {e}"), RED, colour));
    }
    out
}

fn hop_rows(hops: &[Hop]) -> Vec<Row> {
    hops.iter()
        .enumerate()
        .map(|(i, h)| {
            [
                (i + 1).to_string(),
                h.status.map_or_else(|| "—".to_string(), |s| s.to_string()),
                h.redirect_kind.map_or("", |k| k.as_str()).to_string(),
                format!("{} ms", h.elapsed_ms),
                match &h.method {
                    Some(m) => format!("{m} {}", h.url),
                    None => h.url.clone(),
                },
            ]
        })
        .collect()
}

/// Each column's width in characters: its widest cell, header included.
fn column_widths(rows: &[Row]) -> [usize; 5] {
    let mut width = HEADER.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    width
}

fn pad(s: &str, w: usize, right: bool) -> String {
    let fill = " ".repeat(w.saturating_sub(s.chars().count()));
    if right {
        format!("{fill}{s}")
    } else {
        format!("{s}{fill}")
    }
}

/// One aligned line: `#` and TIME to the right, STATUS and KIND to the left,
/// the URL unpadded. `status` may colour the padded STATUS cell.
fn table_line(
    cells: [&str; 5],
    width: &[usize; 5],
    status: impl FnOnce(String) -> String,
) -> String {
    format!(
        "{}  {}  {}  {}  {}",
        pad(cells[0], width[0], true),
        status(pad(cells[1], width[1], false)),
        pad(cells[2], width[2], false),
        pad(cells[3], width[3], true),
        cells[4]
    )
}

/// A redirect that was recorded but not followed (loop, limit, scheme),
/// indented past the `#` column.
fn unfollowed_note(hops: &[Hop], number_width: usize) -> Option<String> {
    let next = hops.last()?.location.as_ref()?;
    let indent = " ".repeat(number_width + 2);
    Some(format!("{indent}→ {next} (not followed)"))
}

/// `resolved  https://…/landing (200)  2 hops, 1 redirect, 12 ms`
fn summary_line(r: &ResolutionResult, colour: bool) -> String {
    let conclusion_colour = if r.conclusion == Conclusion::Resolved {
        GREEN
    } else {
        RED
    };
    let status = r
        .final_status
        .map_or_else(String::new, |s| format!(" ({s})"));
    format!(
        "{}  {}{}  {}, {}, {} ms",
        paint(
            r.conclusion.as_str(),
            &format!("{BOLD}{conclusion_colour}"),
            colour
        ),
        r.final_url,
        status,
        plural(r.hops.len(), "hop", "hops"),
        plural(r.redirect_count as usize, "redirect", "redirects"),
        r.elapsed_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use link_peeler_wire::protocol::{Hop, RedirectKind};

    fn sample() -> ResolutionResult {
        ResolutionResult {
            input_url: "http://a.test/x".into(),
            final_url: "https://b.test/landing".into(),
            conclusion: Conclusion::Resolved,
            final_status: Some(200),
            redirect_count: 1,
            elapsed_ms: 12,
            error: None,
            hops: vec![
                Hop {
                    url: "http://a.test/x".into(),
                    status: Some(302),
                    redirect_kind: Some(RedirectKind::Location),
                    location: Some("https://b.test/landing".into()),
                    elapsed_ms: 5,
                    remote_addr: Some("203.0.113.9:80".into()),
                    method: None,
                    note: None,
                },
                Hop {
                    url: "https://b.test/landing".into(),
                    status: Some(200),
                    redirect_kind: None,
                    location: None,
                    elapsed_ms: 1234,
                    remote_addr: Some("203.0.113.10:443".into()),
                    method: None,
                    note: None,
                },
            ],
        }
    }

    #[test]
    fn table_is_aligned_and_plain_without_colour() {
        let out = render_table(&sample(), false);
        assert!(!out.contains('\x1b'), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "#  STATUS  KIND         TIME  URL");
        assert_eq!(lines[1], "1  302     location     5 ms  http://a.test/x");
        assert_eq!(
            lines[2],
            "2  200               1234 ms  https://b.test/landing"
        );
        assert_eq!(lines[3], "");
        assert_eq!(
            lines[4],
            "resolved  https://b.test/landing (200)  2 hops, 1 redirect, 12 ms"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let out = render_table(&sample(), true);
        assert!(out.contains("\x1b[32m"), "{out}");
    }

    #[test]
    fn unfollowed_redirects_and_errors_are_shown() {
        let mut r = sample();
        r.hops.truncate(1);
        r.conclusion = Conclusion::RedirectLoop;
        r.final_url = "http://a.test/x".into();
        r.final_status = Some(302);
        r.redirect_count = 0;
        r.error = Some("looped".into());
        let out = render_table(&r, false);
        assert!(
            out.contains("→ https://b.test/landing (not followed)"),
            "{out}"
        );
        assert!(
            out.contains("redirect_loop  http://a.test/x (302)  1 hop, 0 redirects"),
            "{out}"
        );
        assert!(out.ends_with("error: looped\n"), "{out}");
    }

    #[test]
    fn cidr_parsing() {
        assert!(parse_cidr("127.0.0.1/32").is_ok());
        assert!(parse_cidr("::1/128").is_ok());
        assert_eq!(
            parse_cidr("127.0.0.1").map(|n| n.to_string()),
            Ok("127.0.0.1/32".into())
        );
        assert!(parse_cidr("127.0.0.1/33").is_err());
        assert!(parse_cidr("lab").is_err());
    }

    #[test]
    fn timeout_parsing() {
        assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("NaN").is_err());
        assert!(parse_timeout("inf").is_err());
    }
}
