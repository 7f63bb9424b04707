//! The rows file of `submit --csv`: a header line, then one link per row.
//!
//! Columns (names matched without regard to case, other columns ignored, so
//! a worker can point it at the sheet it already has): `url` and `rowId`
//! are required, `source` and `idempotencyKey` optional. Each row's
//! idempotency key is its `idempotencyKey` cell, or `RUN_DATE/row-ROWID`
//! when there is none: submitting the same file twice on one day then creates
//! no new job, and the next day resolves every link again (the product page's
//! recommendation).
//!
//! A file that is not well-formed is refused as a whole, naming the line,
//! before anything is sent: a half-submitted sheet is worse than none. Whether
//! a URL is acceptable is the relay's judgement, reported per row.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, anyhow, bail};

/// One link to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The line of the file it came from (the header is line 1).
    pub line: u64,
    pub row_id: String,
    pub url: String,
    pub source: Option<String>,
    pub idempotency_key: String,
}

/// `--run-date`: a calendar date, `YYYY-MM-DD`.
pub fn parse_run_date(s: &str) -> Result<time::Date, String> {
    time::Date::parse(s, DATE_FORMAT)
        .map_err(|_| format!("{s:?} is not a date of the form YYYY-MM-DD"))
}

const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Today's date in UTC, the default run date.
pub fn today_utc() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// The idempotency key of a row without an `idempotencyKey` cell.
pub fn derived_key(run_date: time::Date, row_id: &str) -> String {
    let date = run_date
        .format(DATE_FORMAT)
        .unwrap_or_else(|_| run_date.to_string());
    format!("{date}/row-{row_id}")
}

/// Reads and checks the rows file at `path`.
pub fn read(
    path: &Path,
    run_date: time::Date,
    default_source: Option<&str>,
) -> anyhow::Result<Vec<Row>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    parse(file, run_date, default_source).with_context(|| format!("{}", path.display()))
}

/// Where each known column is in the header.
struct Columns {
    url: usize,
    row_id: usize,
    source: Option<usize>,
    idempotency_key: Option<usize>,
}

fn columns(header: &csv::StringRecord) -> anyhow::Result<Columns> {
    let mut found: HashMap<&'static str, usize> = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let known = ["url", "rowId", "source", "idempotencyKey"]
            .into_iter()
            .find(|k| k.eq_ignore_ascii_case(name.trim()));
        if let Some(k) = known
            && found.insert(k, i).is_some()
        {
            bail!("line 1: the header names the `{k}` column twice");
        }
    }
    let required = |k: &str| {
        found.get(k).copied().ok_or_else(|| {
            let names: Vec<&str> = header.iter().collect();
            anyhow!(
                "line 1: the header has no `{k}` column (it has: {}); \
                 the columns are url, rowId and optionally source, idempotencyKey",
                names.join(", ")
            )
        })
    };
    Ok(Columns {
        url: required("url")?,
        row_id: required("rowId")?,
        source: found.get("source").copied(),
        idempotency_key: found.get("idempotencyKey").copied(),
    })
}

/// Reads rows from CSV text (a header, then rows; a UTF-8 byte order mark is
/// allowed). Errors name the line.
pub fn parse(
    input: impl Read,
    run_date: time::Date,
    default_source: Option<&str>,
) -> anyhow::Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(input);
    let header = reader.headers().map_err(describe)?.clone();
    if header.iter().all(|h| h.trim().is_empty()) {
        bail!("the file is empty; its first line must name the columns (url, rowId, …)");
    }
    let cols = columns(&header)?;
    let mut rows = Vec::new();
    let mut keys: HashMap<String, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(describe)? {
        let line = record.position().map_or(0, csv::Position::line);
        let cell = |i: usize| record.get(i).unwrap_or("").trim();
        let url = cell(cols.url);
        if url.is_empty() {
            bail!("line {line}: the url cell is empty");
        }
        let row_id = cell(cols.row_id);
        if row_id.is_empty() {
            bail!("line {line}: the rowId cell is empty");
        }
        let given_key = cols.idempotency_key.map(cell).filter(|k| !k.is_empty());
        let idempotency_key =
            given_key.map_or_else(|| derived_key(run_date, row_id), str::to_owned);
        if let Some(first) = keys.insert(idempotency_key.clone(), line) {
            bail!(
                "line {line}: idempotency key {idempotency_key:?} repeats line {first}'s \
                 (each row needs its own rowId or idempotencyKey)"
            );
        }
        let source = cols
            .source
            .map(cell)
            .filter(|s| !s.is_empty())
            .or(default_source)
            .map(str::to_owned);
        rows.push(Row {
            line,
            row_id: row_id.to_owned(),
            url: url.to_owned(),
            source,
            idempotency_key,
        });
    }
    if rows.is_empty() {
        bail!("no rows after the header");
    }
    Ok(rows)
}

/// A CSV error as one sentence that names the line.
fn describe(e: csv::Error) -> anyhow::Error {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => anyhow!(
            "line {}: {len} fields, but the header has {expected_len}",
            pos.as_ref().map_or(0, csv::Position::line)
        ),
        csv::ErrorKind::Utf8 { pos, .. } => anyhow!(
            "line {}: not valid UTF-8 (save the file as UTF-8)",
            pos.as_ref().map_or(0, csv::Position::line)
        ),
        csv::ErrorKind::Io(io) => anyhow!("cannot read: {io}"),
        _ => anyhow!("not a readable CSV file: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date() -> time::Date {
        parse_run_date("2026-12-02").unwrap()
    }

    fn rows(text: &str) -> anyhow::Result<Vec<Row>> {
        parse(text.as_bytes(), date(), Some("cli"))
    }

    fn err(text: &str) -> String {
        format!("{:#}", rows(text).unwrap_err())
    }

    #[test]
    fn derives_keys_from_the_run_date_and_row_id() {
        let r = rows("url,rowId\nhttps://a.test/1,17\nhttps://a.test/2,18\n").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].idempotency_key, "2026-12-02/row-17");
        assert_eq!(r[0].line, 2);
        assert_eq!(r[1].idempotency_key, "2026-12-02/row-18");
        assert_eq!(r[1].line, 3);
        assert_eq!(r[0].source.as_deref(), Some("cli"));
    }

    #[test]
    fn optional_columns_case_bom_and_extra_columns() {
        let text = "\u{feff}Price,URL,ROWID,Source,idempotencykey\n\
                    9,https://a.test/1,17,sheet,\n\
                    9,https://a.test/2,18,,my-key\n";
        let r = rows(text).unwrap();
        assert_eq!(r[0].url, "https://a.test/1");
        assert_eq!(r[0].source.as_deref(), Some("sheet"));
        assert_eq!(r[0].idempotency_key, "2026-12-02/row-17");
        assert_eq!(r[1].source.as_deref(), Some("cli"), "empty cell: --source");
        assert_eq!(r[1].idempotency_key, "my-key");
    }

    #[test]
    fn quoted_cells_with_commas_and_newlines() {
        let r = rows("url,rowId\n\"https://a.test/?a=1,2\",\"x\"\n").unwrap();
        assert_eq!(r[0].url, "https://a.test/?a=1,2");
        let r = rows("rowId,url\n\"multi\nline\",https://a.test/\nz,https://b.test/\n").unwrap();
        assert_eq!(r[1].line, 4, "lines count the newline inside the quotes");
    }

    #[test]
    fn malformed_files_name_the_line() {
        assert!(
            err("rowId,link\n1,https://a.test/\n")
                .contains("line 1: the header has no `url` column (it has: rowId, link)"),
            "{}",
            err("rowId,link\n1,https://a.test/\n")
        );
        assert!(err("url\nhttps://a.test/\n").contains("no `rowId` column"));
        assert!(err("url,rowId,URL\n").contains("names the `url` column twice"));
        assert_eq!(
            err("url,rowId\nhttps://a.test/,1\nhttps://a.test/\n"),
            "line 3: 1 fields, but the header has 2"
        );
        assert_eq!(err("url,rowId\n,1\n"), "line 2: the url cell is empty");
        assert_eq!(
            err("url,rowId\nhttps://a.test/, \n"),
            "line 2: the rowId cell is empty"
        );
        assert!(
            err("url,rowId\nhttps://a.test/1,7\nhttps://a.test/2,7\n")
                .starts_with("line 3: idempotency key \"2026-12-02/row-7\" repeats line 2's"),
        );
        assert_eq!(err("url,rowId\n"), "no rows after the header");
        assert!(err("").contains("the file is empty"));
        let bad_utf8 = parse(&b"url,rowId\nhttps://a.test/\xff,1\n"[..], date(), None).unwrap_err();
        assert_eq!(
            format!("{bad_utf8:#}"),
            "line 2: not valid UTF-8 (save the file as UTF-8)"
        );
    }

    #[test]
    fn run_date_parsing() {
        assert_eq!(
            derived_key(parse_run_date("2027-01-09").unwrap(), "x"),
            "2027-01-09/row-x"
        );
        for bad in ["2026-13-01", "2026-02-30", "02/12/2026", "today", ""] {
            assert!(parse_run_date(bad).is_err(), "{bad}");
        }
    }
}
