//! PostgreSQL's schema and its migrations, safe with several relays starting
//! at once.
//!
//! The version lives in the one-row table `link_peeler_schema`. Migrating is
//! one transaction that first takes a transaction-level advisory lock
//! ([`MIGRATION_LOCK`]): a second relay starting at the same moment waits for
//! the first, then finds the schema current. DDL is transactional in
//! PostgreSQL, so a relay that dies mid-migration leaves the previous
//! version. Never edit a shipped migration: append one. Migrations must be
//! additive (new tables, new nullable or defaulted columns, new indexes) so
//! that relays still running the previous version keep working while the
//! new one rolls out (docs/relay-postgres.md).

use tokio_postgres::Client;

/// Advisory lock key for migrations ("LPmigrat" as ASCII).
const MIGRATION_LOCK: i64 = 0x4c50_6d69_6772_6174;

/// Append-only list of schema migrations; times are ms since the epoch, as
/// in the SQLite schema, so both backends share their row-to-type code.
const MIGRATIONS: &[&str] = &[
    // 1: keys, devices, enrollment codes, jobs, nonces, daily usage.
    r#"
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        secret       TEXT NOT NULL,
        daily_limit  BIGINT NOT NULL,
        max_queued   BIGINT NOT NULL,
        queued       BIGINT NOT NULL DEFAULT 0,
        created_at   BIGINT NOT NULL,
        revoked_at   BIGINT
    );
    CREATE TABLE devices (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        platform     TEXT,
        version      TEXT,
        secret       TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        last_seen_at BIGINT,
        revoked_at   BIGINT
    );
    CREATE INDEX devices_revoked ON devices (revoked_at) WHERE revoked_at IS NOT NULL;
    CREATE TABLE enrollment_codes (
        code_hash    TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT NOT NULL,
        used_at      BIGINT,
        device_id    TEXT
    );
    CREATE TABLE jobs (
        seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
        lease_expires_at BIGINT,
        resolved_by      TEXT,
        result           TEXT,
        error_code       TEXT,
        error_message    TEXT,
        created_at       BIGINT NOT NULL,
        updated_at       BIGINT NOT NULL,
        UNIQUE (api_key_id, idempotency_key)
    );
    CREATE INDEX jobs_queue ON jobs (seq) WHERE status = 'queued';
    CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'leased';
    CREATE INDEX jobs_lease_device ON jobs (lease_device) WHERE status = 'leased';
    CREATE INDEX jobs_lease_id ON jobs (lease_id) WHERE lease_id IS NOT NULL;
    CREATE INDEX jobs_finished ON jobs (updated_at) WHERE status IN ('done', 'failed');
    CREATE TABLE nonces (
        key_id     TEXT NOT NULL,
        nonce      TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (key_id, nonce)
    );
    CREATE INDEX nonces_expiry ON nonces (expires_at);
    CREATE TABLE daily_usage (
        api_key_id TEXT NOT NULL,
        day        BIGINT NOT NULL,
        count      BIGINT NOT NULL,
        PRIMARY KEY (api_key_id, day)
    );
    "#,
    // 2: the integrator's data channels (protocol.md §3.9–3.12), as SQLite's
    // migration 3. A job's finish is numbered from the one `counters` row in
    // the transaction that finishes it; the row stays locked until commit,
    // so numbers are handed out in commit order across relays.
    r#"
    ALTER TABLE api_keys ADD COLUMN webhook_url TEXT;
    ALTER TABLE jobs ADD COLUMN finished_seq BIGINT;
    CREATE UNIQUE INDEX jobs_finished_seq ON jobs (api_key_id, finished_seq) WHERE finished_seq IS NOT NULL;
    CREATE INDEX jobs_by_key ON jobs (api_key_id, seq);
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );
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
        first_attempt_at BIGINT,
        last_attempt_at  BIGINT,
        last_status      INTEGER,
        last_error       TEXT,
        next_attempt_at  BIGINT NOT NULL,
        created_at       BIGINT NOT NULL
    );
    CREATE INDEX webhook_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
    "#,
    // 4: each device's last state report (protocol.md §4.2), as JSON text.
    r#"
    ALTER TABLE devices ADD COLUMN agent_state TEXT;
    ALTER TABLE devices ADD COLUMN agent_state_at BIGINT;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the database to [`SCHEMA_VERSION`]; refuses a newer one.
pub(super) async fn migrate(client: &mut Client) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS link_peeler_schema (version INTEGER NOT NULL)")
        .await?;
    let current: i32 = match tx
        .query_opt("SELECT version FROM link_peeler_schema", &[])
        .await?
    {
        Some(row) => row.try_get(0)?,
        None => {
            tx.execute("INSERT INTO link_peeler_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    if current > SCHEMA_VERSION {
        anyhow::bail!(
            "the database has schema version {current}, newer than this relay's {SCHEMA_VERSION}; upgrade link-peeler-relay"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await?;
        tx.execute("UPDATE link_peeler_schema SET version = $1", &[&version])
            .await?;
        tracing::info!(version, "database migrated");
    }
    tx.commit().await?;
    Ok(())
}
