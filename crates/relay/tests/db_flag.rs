//! `--db` / `LINK_PEELER_RELAY_DB` and `bench --relays`: bad values get one
//! clear line and exit 1 (or clap's usage error), touching nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod common;

use std::process::Command;

fn relay(args: &[&str], db_env: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(common::process::relay_bin());
    cmd.env_remove("LINK_PEELER_RELAY_DB");
    if let Some(db) = db_env {
        cmd.env("LINK_PEELER_RELAY_DB", db);
    }
    let out = cmd.args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn an_unknown_database_scheme_or_an_empty_path_is_refused() {
    let (code, text) = relay(&["--db", "mysql://u@h/db", "keys", "list"], None);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("unknown database scheme \"mysql\""), "{text}");
    let (code, text) = relay(&["keys", "list"], Some(""));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("the database path is empty"), "{text}");
    let (code, text) = relay(&["--db", "postgres://u@h/db?port=x", "keys", "list"], None);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("invalid PostgreSQL URL"), "{text}");
}

#[test]
fn bench_relays_needs_postgres_and_a_sane_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let (code, text) = relay(
        &[
            "--db",
            db.to_str().unwrap(),
            "bench",
            "--relays",
            "2",
            "--seconds",
            "1",
        ],
        None,
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("--relays 2 needs a PostgreSQL --db"),
        "{text}"
    );
    let (code, text) = relay(&["bench", "--relays", "0"], None);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--relays"), "{text}");
}
