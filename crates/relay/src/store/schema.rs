//! Opening the database file and migrating its schema.
//!
//! The schema version lives in `PRAGMA user_version`; each entry of
//! [`MIGRATIONS`] moves it up by one inside a transaction, so a relay that
//! crashes mid-migration restarts from the last complete version. Never edit
//! a shipped migration: append a new one.

use std::path::Path;

use rusqlite::Connection;

/// Append-only list of schema migrations.
const MIGRATIONS: &[&str] = &[
    // 1: keys, devices, enrollment codes, jobs, nonces, daily usage.
    r#"
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        secret       TEXT NOT NULL,
        daily_limit  INTEGER NOT NULL,
        max_queued   INTEGER NOT NULL,
        queued       INTEGER NOT NULL DEFAULT 0,
        created_at   INTEGER NOT NULL,
        revoked_at   INTEGER
    );
    CREATE TABLE devices (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        platform     TEXT,
        version      TEXT,
        secret       TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        last_seen_at INTEGER,
        revoked_at   INTEGER
    );
    CREATE TABLE enrollment_codes (
        code_hash    TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        used_at      INTEGER,
        device_id    TEXT
    );
    CREATE TABLE jobs (
        seq              INTEGER PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        api_key_id       TEXT NOT NULL,
        idempotency_key  TEXT NOT NULL,
        canonical        TEXT NOT NULL,
        tracking_url     TEXT NOT NULL,
        source           TEXT,
        row_id           TEXT,
        options          TEXT,
        status           TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        expiries         INTEGER NOT NULL DEFAULT 0,
        lease_id         TEXT,
        lease_device     TEXT,
        lease_expires_at INTEGER,
        resolved_by      TEXT,
        result           TEXT,
        error_code       TEXT,
        error_message    TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        UNIQUE (api_key_id, idempotency_key)
    );
    CREATE INDEX jobs_queue ON jobs (status, seq);
    CREATE INDEX jobs_leases ON jobs (status, lease_expires_at);
    CREATE TABLE nonces (
        key_id     TEXT NOT NULL,
        nonce      TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (key_id, nonce)
    ) WITHOUT ROWID;
    CREATE INDEX nonces_expiry ON nonces (expires_at);
    CREATE TABLE daily_usage (
        api_key_id TEXT NOT NULL,
        day        INTEGER NOT NULL,
        count      INTEGER NOT NULL,
        PRIMARY KEY (api_key_id, day)
    ) WITHOUT ROWID;
    "#,
    // 2: finding the leases of revoked devices (maintenance requeues them).
    r#"
    CREATE INDEX jobs_lease_device ON jobs (lease_device) WHERE status = 'leased';
    CREATE INDEX devices_revoked ON devices (revoked_at) WHERE revoked_at IS NOT NULL;
    "#,
    // 3: the integrator's data channels (protocol.md §3.9–3.12). A job's
    // finish gets a number from one counter in the transaction that finishes
    // it: commit order, the results feed's cursor. Webhook deliveries are
    // queued in that same transaction. Listing walks a key's jobs by seq.
    r#"
    ALTER TABLE api_keys ADD COLUMN webhook_url TEXT;
    ALTER TABLE jobs ADD COLUMN finished_seq INTEGER;
    CREATE UNIQUE INDEX jobs_finished ON jobs (api_key_id, finished_seq) WHERE finished_seq IS NOT NULL;
    CREATE INDEX jobs_by_key ON jobs (api_key_id, seq);
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO counters (name, value) VALUES ('finish', 0);
    CREATE TABLE webhook_deliveries (
        id               TEXT PRIMARY KEY,
        job_id           TEXT NOT NULL UNIQUE,
        api_key_id       TEXT NOT NULL,
        event            TEXT NOT NULL,
        url              TEXT NOT NULL,
        target           TEXT NOT NULL,
        state            TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        first_attempt_at INTEGER,
        last_attempt_at  INTEGER,
        last_status      INTEGER,
        last_error       TEXT,
        next_attempt_at  INTEGER NOT NULL,
        created_at       INTEGER NOT NULL
    );
    CREATE INDEX webhook_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
    "#,
    // 4: each device's last state report (protocol.md §4.2: active / paused
    // and why, quota left, version), as JSON, and when it arrived.
    r#"
    ALTER TABLE devices ADD COLUMN agent_state TEXT;
    ALTER TABLE devices ADD COLUMN agent_state_at INTEGER;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens (creating with mode 0600 if needed) and migrates the database.
pub fn open(path: &Path) -> anyhow::Result<Connection> {
    create_private(path)?;
    let conn = Connection::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", path.display()))?;
    configure(&conn)?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Opens an already-migrated database for reading.
pub fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn configure(conn: &Connection) -> anyhow::Result<()> {
    // WAL lets readers run beside the single writer; FULL makes every commit
    // (and so every 202) durable before it is answered.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        anyhow::bail!("database does not support WAL mode (got {mode})");
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn migrate(conn: &Connection, path: &Path) -> anyhow::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        anyhow::bail!(
            "database {} has schema version {current}, newer than this relay's {SCHEMA_VERSION}; upgrade link-peeler-relay",
            path.display()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "database migrated");
    }
    Ok(())
}

#[cfg(unix)]
fn create_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    // `create_new`: an existing file is never opened here. Closing *any*
    // descriptor of a file drops every POSIX lock this process holds on it,
    // SQLite's included; when a relay serves from this process (tests, the
    // demo, the benchmark's admin calls), that let another process (an admin
    // command) believe it was the last user, checkpoint and delete the WAL
    // under the relay: "database disk image is malformed".
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot create database {}: {e}",
            path.display()
        )),
    }
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_is_private_wal_and_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/relay.db");
        let conn = open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(m & 0o777, 0o600);
        }
        drop(conn);
        // Reopening is a no-op migration.
        open(&path).unwrap();
    }

    #[test]
    fn newer_schema_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let conn = open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = open(&path).unwrap_err().to_string();
        assert!(err.contains("newer than this relay"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        std::fs::write(
            &path,
            b"this is not a database, just text that is long enough",
        )
        .unwrap();
        assert!(open(&path).is_err());
    }
}
