//! [`Database`]: which store a relay (or an admin command) opens, from
//! `--db` / `LINK_PEELER_RELAY_DB`.
//!
//! A path or `sqlite://PATH` is the embedded SQLite file (the default); a
//! `postgres://` or `postgresql://` URL is a PostgreSQL database that several
//! relays may share. A URL may carry a password, so this type never shows
//! one: `Display` and `Debug` print the URL with the password replaced by
//! `***` (also a `password=` query parameter), and parse errors never echo
//! the input. Logs, errors, `--help` and metrics only ever see that form.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where the relay keeps its state.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// One SQLite file (WAL): one relay process, admin commands beside it.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by any number of relays.
    Postgres(PgUrl),
}

/// A PostgreSQL connection URL, parsed; its text holds a password only in
/// memory and is shown redacted.
#[derive(Clone)]
pub struct PgUrl {
    config: Box<tokio_postgres::Config>,
    redacted: String,
}

impl PartialEq for PgUrl {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
    }
}

impl Eq for PgUrl {}

impl PgUrl {
    /// The driver's configuration (with the password, never displayed).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    fn parse(url: &str) -> Result<PgUrl, String> {
        let redacted = redact(url);
        // The driver wants the scheme in lower case.
        let url = match url.split_once("://") {
            Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
            None => url.to_owned(),
        };
        let url = url.as_str();
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            // The driver's message names the offending option, never the
            // password's value; still, say nothing of it if it would.
            let detail = e.to_string();
            match password_of(url) {
                Some(p) if !p.is_empty() && detail.contains(&p) => {
                    format!("invalid PostgreSQL URL {redacted}")
                }
                _ => format!("invalid PostgreSQL URL {redacted}: {detail}"),
            }
        })?;
        if config.get_hosts().is_empty() {
            return Err(format!(
                "PostgreSQL URL {redacted} names no host; give a host (postgres://user@host/db) or a socket directory (?host=/run/postgresql)"
            ));
        }
        Ok(PgUrl {
            config: Box::new(config),
            redacted,
        })
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl Database {
    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(p) => Some(p),
            Database::Postgres(_) => None,
        }
    }

    /// `"sqlite"` or `"postgres"`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }
}

impl FromStr for Database {
    type Err = String;

    fn from_str(s: &str) -> Result<Database, String> {
        let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return PgUrl::parse(s).map(Database::Postgres);
        }
        let path = match s.strip_prefix("sqlite://") {
            Some(rest) => rest,
            None if lower.contains("://") => {
                let scheme = s.split("://").next().unwrap_or_default();
                return Err(format!(
                    "unknown database scheme {scheme:?}: give a file path, sqlite://PATH or postgres://…"
                ));
            }
            None => s,
        };
        if path.trim().is_empty() {
            return Err("the database path is empty".to_owned());
        }
        Ok(Database::Sqlite(PathBuf::from(path)))
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => url.fmt(f),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
            Database::Postgres(url) => write!(f, "Postgres({url})"),
        }
    }
}

impl From<PathBuf> for Database {
    fn from(p: PathBuf) -> Self {
        Database::Sqlite(p)
    }
}

impl From<&PathBuf> for Database {
    fn from(p: &PathBuf) -> Self {
        Database::Sqlite(p.clone())
    }
}

impl From<&Path> for Database {
    fn from(p: &Path) -> Self {
        Database::Sqlite(p.to_path_buf())
    }
}

impl From<&Database> for Database {
    fn from(d: &Database) -> Self {
        d.clone()
    }
}

/// The URL's password: the userinfo's, or a `password=` query parameter.
fn password_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if let Some(p) = parsed.password() {
        return Some(percent_decode(p).unwrap_or_else(|| p.to_owned()));
    }
    parsed
        .query_pairs()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.into_owned())
}

fn percent_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// `url` with any password replaced by `***` (wherever else its text
/// appears, too); a URL that does not parse is shown only by its scheme.
fn redact(url: &str) -> String {
    let redacted = redact_fields(url);
    match password_of(url) {
        Some(p) if !p.is_empty() => redacted.replace(&p, "***"),
        _ => redacted,
    }
}

fn redact_fields(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        let scheme = url.split("://").next().unwrap_or("postgres");
        return format!("{scheme}://<unparseable URL>");
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Database {
        s.parse().unwrap()
    }

    #[test]
    fn paths_and_sqlite_urls_are_sqlite_files() {
        assert_eq!(parse("relay.db"), Database::Sqlite("relay.db".into()));
        assert_eq!(
            parse("/var/lib/lp/relay.db"),
            Database::Sqlite("/var/lib/lp/relay.db".into())
        );
        assert_eq!(
            parse("sqlite:///var/lib/relay.db"),
            Database::Sqlite("/var/lib/relay.db".into())
        );
        assert_eq!(parse("sqlite://rel.db").kind(), "sqlite");
    }

    #[test]
    fn postgres_urls_are_postgres() {
        for url in [
            "postgres://lp@db.internal/relay",
            "postgresql://lp@db.internal:6432/relay",
            "POSTGRES://lp@127.0.0.1/relay",
            "postgres://lp@/relay?host=/run/postgresql",
        ] {
            assert_eq!(parse(url).kind(), "postgres", "{url}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_a_clear_message() {
        let err = |s: &str| s.parse::<Database>().unwrap_err();
        assert_eq!(err(""), "the database path is empty");
        assert_eq!(err("sqlite://"), "the database path is empty");
        assert!(err("mysql://x@y/z").contains("unknown database scheme \"mysql\""));
        assert!(
            err("postgres://lp@db/relay?port=notaport").contains("invalid PostgreSQL URL"),
            "{}",
            err("postgres://lp@db/relay?port=notaport")
        );
        assert!(err("postgres:///relay").contains("names no host"));
    }

    #[test]
    fn the_password_is_never_displayed() {
        let secret = "s3cr3t-Pa55";
        for url in [
            format!("postgres://lp:{secret}@db.internal:5432/relay"),
            format!("postgres://lp@db.internal/relay?password={secret}&sslmode=disable"),
        ] {
            let db = parse(&url);
            for shown in [db.to_string(), format!("{db:?}")] {
                assert!(!shown.contains(secret), "{shown}");
                assert!(shown.contains("***"), "{shown}");
                assert!(shown.contains("db.internal"), "{shown}");
            }
        }
        // A URL that fails to parse is not echoed either.
        let bad = format!("postgres://lp:{secret}@db/relay?port=x{secret}");
        let err = bad.parse::<Database>().unwrap_err();
        assert!(!err.contains(secret), "{err}");
        let bad = format!("postgres://lp:{secret}@db/relay?nosuchoption=1");
        let err = bad.parse::<Database>().unwrap_err();
        assert!(!err.contains(secret), "{err}");
    }
}
