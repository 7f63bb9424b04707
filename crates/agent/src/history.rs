//! "Recent activity": what this computer did for others, kept where its
//! user can read it — `<data dir>/activity.jsonl`, one JSON object a line,
//! private to the user (0600), pruned to `activity_retention_days`.
//!
//! Two kinds of line: a finished task (time, requester, input and final
//! domains, hops, bytes, conclusion) and a change between working and
//! paused (with the reasons). Domains, not URLs: the view answers "what did
//! it do", and a tracking URL's query string is the requester's business.
//!
//! Why a line file and not SQLite: the agent appends one short line per
//! task and reads the file only when the user asks (tray, `link-peeler
//! activity`); a torn last line after a crash is skipped by the reader, and
//! pruning rewrites the file atomically ([`crate::files::write_atomic`]).
//! Appends and the prune go through one [`History`] (one mutex), so a prune
//! never drops a line written meanwhile; readers only read.
//!
//! The log is a courtesy to the user, not a record the agent depends on:
//! a failed write is logged and the task goes on.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::control::Policy;

/// Name of the activity file inside the data dir.
pub const HISTORY_FILE: &str = "activity.jsonl";

/// How many entries [`read`] returns at most (the newest).
pub const MAX_READ: usize = 5_000;

const DAY_MS: i64 = 86_400_000;

/// One line of the activity file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Entry {
    Task(TaskEntry),
    /// The agent stopped or started taking tasks.
    State(StateEntry),
}

impl Entry {
    /// When it happened, unix milliseconds.
    pub fn at_ms(&self) -> i64 {
        match self {
            Entry::Task(t) => t.at_ms,
            Entry::State(s) => s.at_ms,
        }
    }
}

/// A task this computer finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEntry {
    pub at_ms: i64,
    pub task_id: String,
    /// The name of the relay API key that asked (protocol §4.2), if sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// The job's `source` label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub input_domain: String,
    pub final_domain: String,
    pub hops: usize,
    pub bytes: u64,
    pub conclusion: String,
    pub elapsed_ms: u64,
}

/// A change between taking tasks and paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    pub at_ms: i64,
    /// `active` or `paused`.
    pub state: String,
    /// Why paused, in words (empty when active).
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// The host of a URL, or the text itself when it is no URL (it is shown, not fetched).
pub fn domain(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.host_str().unwrap_or_default().to_owned(),
        Err(_) => url.chars().take(100).collect(),
    }
}

/// Now, unix milliseconds (the entries' clock).
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The activity file of a data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(HISTORY_FILE)
}

/// The writer: appends entries and keeps the file within its retention.
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    retention_days: u32,
    /// Held by appends and the prune; the day of the last prune.
    last_prune_day: Mutex<i64>,
}

impl History {
    /// A writer for `<data_dir>/activity.jsonl` keeping `retention_days`.
    pub fn new(data_dir: &Path, retention_days: u32) -> History {
        History {
            path: path(data_dir),
            retention_days,
            last_prune_day: Mutex::new(i64::MIN),
        }
    }

    /// Appends `e` (blocking I/O), pruning first once per day.
    pub fn append(&self, e: &Entry) {
        if let Err(err) = self.try_append(e) {
            tracing::warn!(error = %err, file = %self.path.display(), "cannot write the activity log");
        }
    }

    fn try_append(&self, e: &Entry) -> io::Result<()> {
        let mut last = self
            .last_prune_day
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let day = e.at_ms().div_euclid(DAY_MS);
        if *last != day {
            prune(
                &self.path,
                e.at_ms() - i64::from(self.retention_days) * DAY_MS,
            )?;
            *last = day;
        }
        let mut line = serde_json::to_vec(e).map_err(io::Error::other)?;
        line.push(b'\n');
        if let Some(dir) = self.path.parent() {
            crate::files::create_missing_private(dir)?;
        }
        let mut f = open_append(&self.path)?;
        // One write per line: concurrent appends do not interleave within a line.
        f.write_all(&line)
    }
}

#[cfg(unix)]
fn open_append(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::files::PRIVATE_FILE_MODE)
        .open(path)?;
    crate::files::private_file(path)?;
    Ok(f)
}

#[cfg(not(unix))]
fn open_append(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Drops entries older than `cutoff_ms` (and unreadable lines); rewrites
/// the file only when something was dropped.
fn prune(path: &Path, cutoff_ms: i64) -> io::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut kept = String::with_capacity(text.len());
    let mut dropped = 0usize;
    for line in text.lines() {
        match serde_json::from_str::<Entry>(line) {
            Ok(e) if e.at_ms() >= cutoff_ms => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => dropped += 1,
        }
    }
    if dropped > 0 {
        crate::files::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// The entries of `data_dir` no older than `since_ms`, oldest first, at
/// most [`MAX_READ`] (the newest). A missing file is no activity; a line
/// that does not parse (a crash mid-append) is skipped.
pub fn read(data_dir: &Path, since_ms: i64) -> io::Result<Vec<Entry>> {
    let text = match std::fs::read_to_string(path(data_dir)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut out: Vec<Entry> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .filter(|e| e.at_ms() >= since_ms)
        .collect();
    out.sort_by_key(Entry::at_ms);
    let extra = out.len().saturating_sub(MAX_READ);
    out.drain(..extra);
    Ok(out)
}

/// Name of the rendered page inside the data dir.
pub const PAGE_FILE: &str = "activity.html";
/// Name of the CSV export beside it (the page's "Export as CSV" link).
pub const CSV_FILE: &str = "activity.csv";

/// The page shows at most this many links and as many pause changes (the
/// newest); the CSV has them all.
pub const MAX_PAGE_ROWS: usize = 500;

/// Renders the policy's retention into `<data_dir>/activity.csv` and
/// `<data_dir>/activity.html` (private, like the log; the page links to the
/// CSV beside it, which any size of history fits) and returns the page's
/// path, for a browser to open.
pub fn write_page(data_dir: &Path, policy: &Policy) -> io::Result<PathBuf> {
    let since = now_ms() - i64::from(policy.activity_retention_days.value) * DAY_MS;
    let entries = read(data_dir, since)?;
    crate::files::write_atomic(&data_dir.join(CSV_FILE), csv(&entries).as_bytes())?;
    let page = html(&entries, &jiff::tz::TimeZone::system(), policy, CSV_FILE);
    let to = data_dir.join(PAGE_FILE);
    crate::files::write_atomic(&to, page.as_bytes())?;
    Ok(to)
}

/// The header of [`csv`].
pub const CSV_HEADER: &str =
    "time,kind,requester,source,input_domain,final_domain,hops,bytes,conclusion,state,reasons";

/// The entries as CSV (RFC 4180, times in UTC, RFC 3339), pause changes included.
pub fn csv(entries: &[Entry]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for e in entries {
        let time = rfc3339(e.at_ms());
        let fields: Vec<String> = match e {
            Entry::Task(t) => vec![
                time,
                "task".into(),
                t.requester.clone().unwrap_or_default(),
                t.source.clone().unwrap_or_default(),
                t.input_domain.clone(),
                t.final_domain.clone(),
                t.hops.to_string(),
                t.bytes.to_string(),
                t.conclusion.clone(),
                String::new(),
                String::new(),
            ],
            Entry::State(s) => {
                let mut row = vec![time, "state".into()];
                row.extend(std::iter::repeat_n(String::new(), 7));
                row.push(s.state.clone());
                row.push(s.reasons.join("; "));
                row
            }
        };
        let cells: Vec<String> = fields.iter().map(|f| csv_cell(f)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Quotes a cell when it needs it; a cell a spreadsheet would run as a
/// formula (`=`, `+`, `-`, `@` first) is prefixed with `'` — the domains and
/// labels come from other people.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Unix milliseconds as RFC 3339 UTC (`2026-12-03T10:00:00Z`).
pub fn rfc3339(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.round(jiff::Unit::Second).unwrap_or(t).to_string(),
        Err(_) => ms.to_string(),
    }
}

/// [`html`] in this computer's time zone, standing alone: the CSV is
/// inside the page's link (`link-peeler activity --html`).
pub fn page(entries: &[Entry], policy: &Policy) -> String {
    let data = format!(
        "data:text/csv;charset=utf-8,{}",
        url::form_urlencoded::byte_serialize(csv(entries).as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    );
    html(entries, &jiff::tz::TimeZone::system(), policy, &data)
}

/// `2026-12-03 10:00:00` in this computer's time zone.
pub fn local_time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => ms.to_string(),
    }
}

/// The "Recent activity" page: the newest [`MAX_PAGE_ROWS`] tasks and pause
/// changes, newest first, in `tz`, an "Export as CSV" link to `csv_href`
/// (the page is a local file: the agent listens on no port), and the limits
/// in force with where each comes from. Everything from outside is escaped.
pub fn html(entries: &[Entry], tz: &jiff::tz::TimeZone, policy: &Policy, csv_href: &str) -> String {
    let retention_days = policy.activity_retention_days.value;
    let mut limits = String::new();
    for (key, value, source) in policy.rows() {
        limits.push_str(&format!(
            "<tr><td><code>{key}</code></td><td>{}</td><td>{source}</td></tr>\n",
            esc(&value)
        ));
    }
    let local = |ms: i64| match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => ms.to_string(),
    };
    let tasks: Vec<&TaskEntry> = entries
        .iter()
        .rev()
        .filter_map(|e| match e {
            Entry::Task(t) => Some(t),
            Entry::State(_) => None,
        })
        .collect();
    let bytes: u64 = tasks.iter().map(|t| t.bytes).sum();
    let mut rows = String::new();
    for t in tasks.iter().take(MAX_PAGE_ROWS) {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>\n",
            local(t.at_ms),
            esc(label(&t.requester)),
            esc(label(&t.source)),
            esc(&t.input_domain),
            esc(&t.final_domain),
            t.hops,
            t.bytes,
            esc(&t.conclusion),
        ));
    }
    let mut pauses = String::new();
    let states = entries
        .iter()
        .rev()
        .filter(|e| matches!(e, Entry::State(_)))
        .take(MAX_PAGE_ROWS);
    for e in states {
        if let Entry::State(s) = e {
            let what = if s.state == "active" {
                "Working".to_owned()
            } else {
                format!("Paused: {}", s.reasons.join(", "))
            };
            pauses.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>\n",
                local(s.at_ms),
                esc(&what)
            ));
        }
    }
    let shown = if tasks.len() > MAX_PAGE_ROWS {
        format!(
            "<p class=note>The newest {MAX_PAGE_ROWS} of {} links; the CSV has them all.</p>\n",
            tasks.len()
        )
    } else {
        String::new()
    };
    let csv_link = esc(csv_href);
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Link Peeler — Recent activity</title>
<style>
body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left;white-space:nowrap}}
td.n{{text-align:right}} th{{background:#f4f4f4}}
p.note{{color:#555}}
</style></head><body>
<h1>Recent activity</h1>
<p>{count} opened on this computer for others, {bytes} bytes downloaded (last {retention_days} days; kept in a file only you can read).
<a download="link-peeler-activity.csv" href="{csv_link}">Export as CSV</a></p>
<h2>Links</h2>
{shown}<table><tr><th>Time</th><th>Requested by</th><th>Source</th><th>Link domain</th><th>Final domain</th><th>Hops</th><th>Bytes</th><th>Conclusion</th></tr>
{rows}</table>
<h2>Pauses</h2>
<table><tr><th>Time</th><th>State</th></tr>
{pauses}</table>
<h2>Limits in force</h2>
<table><tr><th>Setting</th><th>Value</th><th>Set by</th></tr>
{limits}</table>
<p class=note>Only domains are kept, never full links. Change how long this is kept with <code>activity_retention_days</code> in config.toml.</p>
</body></html>
"#,
        count = if tasks.len() == 1 {
            "1 link".to_owned()
        } else {
            format!("{} links", tasks.len())
        },
    )
}

/// A label from the relay, "—" when it sent none (or an empty one).
fn label(s: &Option<String>) -> &str {
    s.as_deref().filter(|s| !s.is_empty()).unwrap_or("—")
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(at_ms: i64, input: &str) -> Entry {
        Entry::Task(TaskEntry {
            at_ms,
            task_id: format!("t{at_ms}"),
            requester: Some("crm".into()),
            source: Some("=cmd,\"x\"".into()),
            input_domain: input.into(),
            final_domain: "shop.example".into(),
            hops: 3,
            bytes: 1234,
            conclusion: "resolved".into(),
            elapsed_ms: 20,
        })
    }

    #[test]
    fn appends_read_back_prune_by_retention_and_skip_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let day0 = 1_780_000_000_000;
        let h = History::new(dir.path(), 2);
        h.append(&task(day0, "old.example"));
        h.append(&Entry::State(StateEntry {
            at_ms: day0 + 1,
            state: "paused".into(),
            reasons: vec!["on battery".into()],
        }));
        // A crash mid-append leaves a torn line: readers skip it.
        let mut f = open_append(&path(dir.path())).unwrap();
        f.write_all(b"{\"kind\":\"task\",\"atMs\":").unwrap();
        f.write_all(b"\n").unwrap();
        assert_eq!(read(dir.path(), 0).unwrap().len(), 2);
        // Three days later the first two are past a 2-day retention.
        h.append(&task(day0 + 3 * DAY_MS, "new.example"));
        let all = read(dir.path(), 0).unwrap();
        assert_eq!(all, vec![task(day0 + 3 * DAY_MS, "new.example")]);
        assert!(read(dir.path(), day0 + 3 * DAY_MS + 1).unwrap().is_empty());
        crate::files::assert_private_file(&path(dir.path()));
    }

    #[test]
    fn a_missing_file_is_no_activity_and_a_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), 0).unwrap().is_empty());
        std::fs::create_dir(path(dir.path())).unwrap();
        assert!(read(dir.path(), 0).is_err());
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let at = 1_780_000_000_000;
        let text = csv(&[
            task(at, "a.example"),
            Entry::State(StateEntry {
                at_ms: at,
                state: "paused".into(),
                reasons: vec!["by you".into(), "metered network".into()],
            }),
        ]);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(
            lines[1],
            "2026-05-28T20:26:40Z,task,crm,\"'=cmd,\"\"x\"\"\",a.example,shop.example,3,1234,resolved,,"
        );
        assert_eq!(
            lines[2],
            "2026-05-28T20:26:40Z,state,,,,,,,,paused,by you; metered network"
        );
        assert_eq!(lines[1].matches(',').count(), 11); // 10 between 11 cells, 1 inside the quoted one
    }

    #[test]
    fn domains_of_urls_and_of_junk() {
        assert_eq!(domain("https://t.example.com/c?id=1"), "t.example.com");
        assert_eq!(domain("http://[::1]:9/x"), "[::1]");
        assert_eq!(domain("not a url"), "not a url");
    }

    #[test]
    fn the_page_escapes_what_others_wrote_and_carries_the_csv() {
        let at = 1_780_000_000_000;
        let mut t = task(at, "<script>x</script>.example");
        if let Entry::Task(t) = &mut t {
            t.requester = Some("a\"b<i>".into());
        }
        let page = html(
            &[
                t,
                Entry::State(StateEntry {
                    at_ms: at + 1,
                    state: "paused".into(),
                    reasons: vec!["on battery".into()],
                }),
            ],
            &jiff::tz::TimeZone::UTC,
            &Policy::default(),
            "data:text/csv;charset=utf-8,time%2Ckind",
        );
        assert!(!page.contains("<script>x"), "{page}");
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;.example"));
        assert!(page.contains("a&quot;b&lt;i&gt;"));
        assert!(page.contains("2026-05-28 20:26:40"));
        assert!(page.contains("Paused: on battery"));
        assert!(page.contains("1 link opened on this computer"));
        assert!(page.contains("last 30 days"));
        assert!(page.contains("<tr><td><code>max_links_per_hour</code></td><td>240</td><td>built-in default</td></tr>"), "{page}");
        assert!(page.contains(
            "download=\"link-peeler-activity.csv\" href=\"data:text/csv;charset=utf-8,time%2Ckind"
        ));
    }

    #[test]
    fn the_written_page_links_the_csv_beside_it_and_shows_the_newest_rows() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path(), 30);
        let start = now_ms() - 3_600_000;
        let n = MAX_PAGE_ROWS + 20;
        for i in 0..n {
            h.append(&task(start + i as i64, &format!("d{i}.example")));
        }
        let page_path = write_page(dir.path(), &Policy::default()).unwrap();
        assert_eq!(page_path, dir.path().join(PAGE_FILE));
        let page = std::fs::read_to_string(&page_path).unwrap();
        assert!(page.contains(&format!("href=\"{CSV_FILE}\"")), "{page}");
        assert!(page.contains(&format!("The newest {MAX_PAGE_ROWS} of {n} links")));
        assert!(page.contains(&format!("<td>d{}.example</td>", n - 1)));
        assert!(
            !page.contains("<td>d0.example</td>"),
            "the oldest rows are left to the CSV"
        );
        let csv = std::fs::read_to_string(dir.path().join(CSV_FILE)).unwrap();
        assert_eq!(csv.lines().count(), n + 1);
        assert!(csv.contains(",d0.example,"));
        crate::files::assert_private_file(&page_path);
        crate::files::assert_private_file(&dir.path().join(CSV_FILE));
    }
}
