//! API keys, devices and enrollment codes: who may sign requests.
//!
//! Secrets are stored as issued because HMAC verification needs them; the
//! database file is created 0600 for that reason. Enrollment codes are only
//! ever compared, so only their hash is kept.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{CodeRefusal, StoreError};
use crate::ids;
use link_peeler_wire::protocol::{EnrollRequest, EnrollResponse};

/// Defaults for a new API key's quota.
pub const DEFAULT_DAILY_LIMIT: u32 = 10_000;
pub const DEFAULT_MAX_QUEUED: u32 = 1_000;
/// How long an enrollment code stays usable.
pub const DEFAULT_CODE_TTL_MS: i64 = 24 * 3600 * 1000;

/// What a signing key id refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    ApiKey,
    Device,
}

/// Result of looking up the key id of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Unknown,
    Revoked,
    Active { kind: PrincipalKind, secret: String },
}

pub fn lookup(conn: &Connection, key_id: &str) -> rusqlite::Result<Lookup> {
    let (sql, kind) = if key_id.starts_with(ids::DEVICE_PREFIX) {
        (
            "SELECT secret, revoked_at FROM devices WHERE id = ?1",
            PrincipalKind::Device,
        )
    } else if key_id.starts_with(ids::LIVE_KEY_PREFIX) || key_id.starts_with(ids::TEST_KEY_PREFIX) {
        (
            "SELECT secret, revoked_at FROM api_keys WHERE id = ?1",
            PrincipalKind::ApiKey,
        )
    } else {
        return Ok(Lookup::Unknown);
    };
    let row: Option<(String, Option<i64>)> = conn
        .prepare_cached(sql)?
        .query_row([key_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        None => Lookup::Unknown,
        Some((_, Some(_))) => Lookup::Revoked,
        Some((secret, None)) => Lookup::Active { kind, secret },
    })
}

/// An API key as listed by `keys list` (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub key_id: String,
    pub name: String,
    pub daily_limit: u32,
    pub max_queued: u32,
    pub queued: u32,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Where the key's finished jobs are posted (protocol.md §3.12).
    pub webhook_url: Option<String>,
}

/// A freshly created API key: the only time its secret is shown.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub key_id: String,
    pub secret: String,
    pub name: String,
    pub daily_limit: u32,
    pub max_queued: u32,
    pub created_at: String,
    pub webhook_url: Option<String>,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .field("name", &self.name)
            .finish()
    }
}

/// Options of `keys create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub daily_limit: u32,
    pub max_queued: u32,
    /// `lp_test_` instead of `lp_live_`.
    pub test: bool,
    /// Where finished jobs are posted ([`check_webhook_url`]).
    pub webhook_url: Option<String>,
}

impl NewKey {
    pub fn named(name: impl Into<String>) -> Self {
        NewKey {
            name: name.into(),
            daily_limit: DEFAULT_DAILY_LIMIT,
            max_queued: DEFAULT_MAX_QUEUED,
            test: false,
            webhook_url: None,
        }
    }
}

pub fn create_key(conn: &Connection, new: &NewKey, now: i64) -> anyhow::Result<CreatedKey> {
    check_name(&new.name)?;
    if let Some(url) = &new.webhook_url {
        check_webhook_url(url)?;
    }
    let key_id = ids::key_id(new.test);
    let secret = ids::key_secret(new.test);
    conn.execute(
        "INSERT INTO api_keys (id, name, secret, daily_limit, max_queued, created_at, webhook_url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![key_id, new.name, secret, new.daily_limit, new.max_queued, now, new.webhook_url],
    )?;
    Ok(CreatedKey {
        key_id,
        secret,
        name: new.name.clone(),
        daily_limit: new.daily_limit,
        max_queued: new.max_queued,
        created_at: ids::rfc3339(now),
        webhook_url: new.webhook_url.clone(),
    })
}

pub fn list_keys(conn: &Connection) -> anyhow::Result<Vec<KeyInfo>> {
    let mut stmt = conn.prepare(
        "SELECT id, name, daily_limit, max_queued, queued, created_at, revoked_at, webhook_url FROM api_keys ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(KeyInfo {
            key_id: r.get(0)?,
            name: r.get(1)?,
            daily_limit: r.get(2)?,
            max_queued: r.get(3)?,
            queued: r.get(4)?,
            created_at: ids::rfc3339(r.get(5)?),
            revoked_at: r.get::<_, Option<i64>>(6)?.map(ids::rfc3339),
            webhook_url: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Longest webhook URL accepted.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;

/// A webhook URL must be an absolute http(s) URL with a host, at most 2,048
/// bytes, without a user name or password (the receiver authenticates the
/// relay by its signature, and the URL is shown by `keys list`). Whether its
/// address may be reached is decided at delivery time, by the relay's guard.
pub fn check_webhook_url(raw: &str) -> anyhow::Result<()> {
    if raw.is_empty() || raw.len() > MAX_WEBHOOK_URL_LEN {
        anyhow::bail!("webhook URL must be 1–{MAX_WEBHOOK_URL_LEN} bytes");
    }
    let url = url::Url::parse(raw)
        .map_err(|e| anyhow::anyhow!("webhook URL {raw:?} is not an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("webhook URL must use http or https, not {}", url.scheme());
    }
    if url.host_str().is_none_or(str::is_empty) {
        anyhow::bail!("webhook URL must have a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        anyhow::bail!("webhook URL must not carry a user name or password");
    }
    if url.fragment().is_some() {
        anyhow::bail!("webhook URL must not have a #fragment");
    }
    Ok(())
}

/// Sets (after [`check_webhook_url`]) or clears an API key's webhook URL;
/// `Ok(false)` when no such key exists.
pub fn set_webhook_url(conn: &Connection, key_id: &str, url: Option<&str>) -> anyhow::Result<bool> {
    if let Some(url) = url {
        check_webhook_url(url)?;
    }
    Ok(super::webhooks::set_url(conn, key_id, url)?)
}

/// Revokes a key; `Ok(false)` when no such key exists. Revoking twice keeps the first time.
pub fn revoke_key(conn: &Connection, key_id: &str, now: i64) -> anyhow::Result<bool> {
    let exists = conn
        .query_row("SELECT 1 FROM api_keys WHERE id = ?1", [key_id], |_| Ok(()))
        .optional()?
        .is_some();
    conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![key_id, now],
    )?;
    Ok(exists)
}

/// A one-time enrollment code, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentCode {
    pub code: String,
    pub expires_at: String,
}

pub fn create_enrollment_code(
    conn: &Connection,
    name: &str,
    ttl_ms: i64,
    now: i64,
) -> anyhow::Result<EnrollmentCode> {
    check_name(name)?;
    if ttl_ms <= 0 {
        anyhow::bail!("the code's lifetime must be positive");
    }
    let code = ids::enrollment_code();
    let expires = now.saturating_add(ttl_ms);
    conn.execute(
        "INSERT INTO enrollment_codes (code_hash, name, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![ids::enrollment_code_hash(&code), name, now, expires],
    )?;
    Ok(EnrollmentCode {
        code,
        expires_at: ids::rfc3339(expires),
    })
}

/// `count` one-time codes in one transaction (one fsync), for enrolling a
/// fleet; each is like [`create_enrollment_code`]'s.
pub fn create_enrollment_codes(
    conn: &Connection,
    name: &str,
    ttl_ms: i64,
    now: i64,
    count: usize,
) -> anyhow::Result<Vec<EnrollmentCode>> {
    let tx = conn.unchecked_transaction()?;
    let codes = (0..count)
        .map(|_| create_enrollment_code(&tx, name, ttl_ms, now))
        .collect::<anyhow::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(codes)
}

/// A device as listed by `devices list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub device_id: String,
    pub name: String,
    pub platform: Option<String>,
    pub version: Option<String>,
    pub created_at: String,
    pub last_seen_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The agent's last state report (active / paused and why, quota left, version).
    pub agent_state: Option<serde_json::Value>,
    /// When that report arrived.
    pub agent_state_at: Option<String>,
}

/// A stored state report as JSON (a report that no longer parses is shown as text).
pub fn report_json(raw: Option<String>) -> Option<serde_json::Value> {
    raw.map(|s| serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s)))
}

pub fn list_devices(conn: &Connection) -> anyhow::Result<Vec<DeviceInfo>> {
    let mut stmt = conn.prepare(
        "SELECT id, name, platform, version, created_at, last_seen_at, revoked_at, agent_state, agent_state_at FROM devices ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DeviceInfo {
            device_id: r.get(0)?,
            name: r.get(1)?,
            platform: r.get(2)?,
            version: r.get(3)?,
            created_at: ids::rfc3339(r.get(4)?),
            last_seen_at: r.get::<_, Option<i64>>(5)?.map(ids::rfc3339),
            revoked_at: r.get::<_, Option<i64>>(6)?.map(ids::rfc3339),
            agent_state: report_json(r.get(7)?),
            agent_state_at: r.get::<_, Option<i64>>(8)?.map(ids::rfc3339),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn revoke_device(conn: &Connection, device_id: &str, now: i64) -> anyhow::Result<bool> {
    let exists = conn
        .query_row("SELECT 1 FROM devices WHERE id = ?1", [device_id], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    conn.execute(
        "UPDATE devices SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![device_id, now],
    )?;
    Ok(exists)
}

/// Exchanges a one-time code for device credentials (runs in the writer).
pub fn enroll(
    conn: &Connection,
    req: &EnrollRequest,
    now: i64,
) -> Result<EnrollResponse, StoreError> {
    let hash = ids::enrollment_code_hash(&req.code);
    let row: Option<(String, i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT name, expires_at, used_at FROM enrollment_codes WHERE code_hash = ?1",
        )?
        .query_row([&hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let label = match row {
        None => return Err(StoreError::InvalidCode(CodeRefusal::Unknown)),
        Some((_, _, Some(_))) => return Err(StoreError::InvalidCode(CodeRefusal::AlreadyUsed)),
        Some((_, expires, None)) if expires <= now => {
            return Err(StoreError::InvalidCode(CodeRefusal::Expired));
        }
        Some((label, _, None)) => label,
    };
    let device_id = ids::device_id();
    let device_secret = ids::device_secret();
    let name = req
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(label);
    conn.prepare_cached(
        "INSERT INTO devices (id, name, platform, version, secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![device_id, name, req.platform, req.version, device_secret, now])?;
    conn.prepare_cached(
        "UPDATE enrollment_codes SET used_at = ?2, device_id = ?3 WHERE code_hash = ?1",
    )?
    .execute(params![hash, now, device_id])?;
    Ok(EnrollResponse {
        device_id,
        device_secret,
    })
}

/// Whether `device_id` is enrolled and not revoked, as of this transaction.
pub fn is_active_device(conn: &Connection, device_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM devices WHERE id = ?1 AND revoked_at IS NULL")?
        .exists([device_id])
}

/// Records that a device made an authenticated request (for `devices list`),
/// and its state report when the request carried one (a poll).
pub fn touch_device(
    conn: &Connection,
    device_id: &str,
    now: i64,
    agent_state: Option<&str>,
) -> rusqlite::Result<()> {
    match agent_state {
        None => conn
            .prepare_cached("UPDATE devices SET last_seen_at = ?2 WHERE id = ?1")?
            .execute(params![device_id, now])?,
        Some(state) => conn
            .prepare_cached(
                "UPDATE devices SET last_seen_at = ?2, agent_state = ?3, agent_state_at = ?2 WHERE id = ?1",
            )?
            .execute(params![device_id, now, state])?,
    };
    Ok(())
}

pub(super) fn check_name(name: &str) -> anyhow::Result<()> {
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        anyhow::bail!("name must be 1–128 characters without control characters");
    }
    Ok(())
}
