//! Keys, devices, enrollment codes and nonces on PostgreSQL: the same rules
//! as `store/principals.rs`, with the uniqueness of a nonce and the one use
//! of a code enforced by the database across relays.

use deadpool_postgres::GenericClient;

use super::super::principals::{Lookup, PrincipalKind};
use super::super::writer::NonceUse;
use super::super::{CodeRefusal, StoreError};
use super::db;
use crate::ids;
use link_peeler_wire::protocol::{EnrollRequest, EnrollResponse};

pub(super) async fn lookup(c: &impl GenericClient, key_id: &str) -> Result<Lookup, StoreError> {
    let (sql, kind) = if key_id.starts_with(ids::DEVICE_PREFIX) {
        (
            "SELECT secret, revoked_at FROM devices WHERE id = $1",
            PrincipalKind::Device,
        )
    } else if key_id.starts_with(ids::LIVE_KEY_PREFIX) || key_id.starts_with(ids::TEST_KEY_PREFIX) {
        (
            "SELECT secret, revoked_at FROM api_keys WHERE id = $1",
            PrincipalKind::ApiKey,
        )
    } else {
        return Ok(Lookup::Unknown);
    };
    let st = c.prepare_cached(sql).await.map_err(db("lookup"))?;
    let row = c.query_opt(&st, &[&key_id]).await.map_err(db("lookup"))?;
    Ok(match row {
        None => Lookup::Unknown,
        Some(r) => match r.try_get::<_, Option<i64>>(1).map_err(db("lookup"))? {
            Some(_) => Lookup::Revoked,
            None => Lookup::Active {
                kind,
                secret: r.try_get(0).map_err(db("lookup"))?,
            },
        },
    })
}

/// Spends a signed request's nonce (the primary key makes a second use,
/// through any relay, insert nothing) and records when a device was last seen.
pub(super) async fn consume_nonce(
    c: &impl GenericClient,
    n: &NonceUse,
    now: i64,
) -> Result<(), StoreError> {
    let st = c
        .prepare_cached(
            "INSERT INTO nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(db("nonce"))?;
    let inserted = c
        .execute(&st, &[&n.key_id, &n.nonce, &n.expires_at])
        .await
        .map_err(db("nonce"))?;
    if inserted == 0 {
        return Err(StoreError::ReplayedNonce);
    }
    if n.key_id.starts_with(ids::DEVICE_PREFIX) {
        let sql = match n.agent_state {
            None => "UPDATE devices SET last_seen_at = $2 WHERE id = $1",
            Some(_) => {
                "UPDATE devices SET last_seen_at = $2, agent_state = $3, agent_state_at = $2 WHERE id = $1"
            }
        };
        let st = c.prepare_cached(sql).await.map_err(db("touch device"))?;
        match &n.agent_state {
            None => c.execute(&st, &[&n.key_id, &now]).await,
            Some(state) => c.execute(&st, &[&n.key_id, &now, state]).await,
        }
        .map_err(db("touch device"))?;
    }
    Ok(())
}

/// Exchanges a one-time code for device credentials. The code's row is
/// locked, so two relays given the same code at once enroll one device.
pub(super) async fn enroll(
    c: &impl GenericClient,
    req: &EnrollRequest,
    now: i64,
) -> Result<EnrollResponse, StoreError> {
    let hash = ids::enrollment_code_hash(&req.code);
    let st = c
        .prepare_cached(
            "SELECT name, expires_at, used_at FROM enrollment_codes WHERE code_hash = $1 FOR UPDATE",
        )
        .await
        .map_err(db("enroll"))?;
    let row = c.query_opt(&st, &[&hash]).await.map_err(db("enroll"))?;
    let Some(row) = row else {
        return Err(StoreError::InvalidCode(CodeRefusal::Unknown));
    };
    let (label, expires, used): (String, i64, Option<i64>) = (
        row.try_get(0).map_err(db("enroll"))?,
        row.try_get(1).map_err(db("enroll"))?,
        row.try_get(2).map_err(db("enroll"))?,
    );
    if used.is_some() {
        return Err(StoreError::InvalidCode(CodeRefusal::AlreadyUsed));
    }
    if expires <= now {
        return Err(StoreError::InvalidCode(CodeRefusal::Expired));
    }
    let device_id = ids::device_id();
    let device_secret = ids::device_secret();
    let name = req
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(label);
    let st = c
        .prepare_cached(
            "INSERT INTO devices (id, name, platform, version, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await
        .map_err(db("enroll"))?;
    c.execute(
        &st,
        &[
            &device_id,
            &name,
            &req.platform,
            &req.version,
            &device_secret,
            &now,
        ],
    )
    .await
    .map_err(db("enroll"))?;
    let st = c
        .prepare_cached(
            "UPDATE enrollment_codes SET used_at = $2, device_id = $3 WHERE code_hash = $1",
        )
        .await
        .map_err(db("enroll"))?;
    c.execute(&st, &[&hash, &now, &device_id])
        .await
        .map_err(db("enroll"))?;
    Ok(EnrollResponse {
        device_id,
        device_secret,
    })
}

/// Whether `device_id` is enrolled and not revoked, as of this statement: a
/// revocation committed before it, by any process, is seen.
pub(super) async fn is_active_device(
    c: &impl GenericClient,
    device_id: &str,
) -> Result<bool, StoreError> {
    let st = c
        .prepare_cached("SELECT 1 FROM devices WHERE id = $1 AND revoked_at IS NULL")
        .await
        .map_err(db("device"))?;
    Ok(c.query_opt(&st, &[&device_id])
        .await
        .map_err(db("device"))?
        .is_some())
}
