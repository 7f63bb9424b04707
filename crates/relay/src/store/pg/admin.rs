//! Key and device administration on PostgreSQL, for `keys …` / `devices …`
//! and tests: the same operations and answers as the SQLite ones in
//! `store/principals.rs`.
//!
//! Admin commands are one-off and synchronous (the CLI, and test helpers
//! that may themselves run inside a tokio runtime), so [`run`] does each on a
//! thread of its own with a private single-threaded runtime and one
//! connection, after making sure the schema is current.

use tokio_postgres::{Client, NoTls};

use super::super::database::PgUrl;
use super::super::principals::{
    CreatedKey, DeviceInfo, EnrollmentCode, KeyInfo, NewKey, check_name, check_webhook_url,
};
use crate::ids;

/// Connects to `url`, migrates, and runs `op` on the connection, from a
/// thread of its own (so callers inside an async runtime may call it).
pub fn run<T, F>(url: &PgUrl, op: F) -> anyhow::Result<T>
where
    T: Send,
    F: for<'c> FnOnce(
            &'c mut Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = anyhow::Result<T>> + Send + 'c>,
        > + Send,
{
    let config = super::driver_config(url);
    std::thread::scope(|s| {
        s.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let (mut client, connection) = config
                    .connect(NoTls)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {url}: {e}"))?;
                let driver = tokio::spawn(connection);
                super::schema::migrate(&mut client)
                    .await
                    .map_err(|e| anyhow::anyhow!("migrating PostgreSQL at {url}: {e:#}"))?;
                let out = op(&mut client).await;
                drop(client);
                let _ = driver.await;
                out
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the admin thread panicked"))?
    })
}

pub async fn create_key(c: &Client, new: &NewKey, now: i64) -> anyhow::Result<CreatedKey> {
    check_name(&new.name)?;
    if let Some(url) = &new.webhook_url {
        check_webhook_url(url)?;
    }
    let key_id = ids::key_id(new.test);
    let secret = ids::key_secret(new.test);
    c.execute(
        "INSERT INTO api_keys (id, name, secret, daily_limit, max_queued, created_at, webhook_url) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &key_id,
            &new.name,
            &secret,
            &i64::from(new.daily_limit),
            &i64::from(new.max_queued),
            &now,
            &new.webhook_url,
        ],
    )
    .await?;
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

/// Sets (after [`check_webhook_url`]) or clears a key's webhook URL;
/// `Ok(false)` when no such key exists.
pub async fn set_webhook_url(c: &Client, key_id: &str, url: Option<&str>) -> anyhow::Result<bool> {
    if let Some(url) = url {
        check_webhook_url(url)?;
    }
    let n = c
        .execute(
            "UPDATE api_keys SET webhook_url = $2 WHERE id = $1",
            &[&key_id, &url],
        )
        .await?;
    Ok(n == 1)
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

pub async fn list_keys(c: &Client) -> anyhow::Result<Vec<KeyInfo>> {
    let rows = c
        .query(
            "SELECT id, name, daily_limit, max_queued, queued, created_at, revoked_at, webhook_url FROM api_keys ORDER BY created_at, id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(KeyInfo {
                key_id: r.try_get(0)?,
                name: r.try_get(1)?,
                daily_limit: to_u32(r.try_get(2)?),
                max_queued: to_u32(r.try_get(3)?),
                queued: to_u32(r.try_get(4)?),
                created_at: ids::rfc3339(r.try_get(5)?),
                revoked_at: r.try_get::<_, Option<i64>>(6)?.map(ids::rfc3339),
                webhook_url: r.try_get(7)?,
            })
        })
        .collect()
}

/// `Ok(false)` when no such key exists. Revoking twice keeps the first time.
pub async fn revoke_key(c: &Client, key_id: &str, now: i64) -> anyhow::Result<bool> {
    let exists = c
        .query_opt("SELECT 1 FROM api_keys WHERE id = $1", &[&key_id])
        .await?
        .is_some();
    c.execute(
        "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        &[&key_id, &now],
    )
    .await?;
    Ok(exists)
}

/// `count` one-time codes in one transaction.
pub async fn create_enrollment_codes(
    c: &mut Client,
    name: &str,
    ttl_ms: i64,
    now: i64,
    count: usize,
) -> anyhow::Result<Vec<EnrollmentCode>> {
    check_name(name)?;
    if ttl_ms <= 0 {
        anyhow::bail!("the code's lifetime must be positive");
    }
    let tx = c.transaction().await?;
    let st = tx
        .prepare(
            "INSERT INTO enrollment_codes (code_hash, name, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .await?;
    let expires = now.saturating_add(ttl_ms);
    let mut codes = Vec::with_capacity(count);
    for _ in 0..count {
        let code = ids::enrollment_code();
        tx.execute(
            &st,
            &[&ids::enrollment_code_hash(&code), &name, &now, &expires],
        )
        .await?;
        codes.push(EnrollmentCode {
            code,
            expires_at: ids::rfc3339(expires),
        });
    }
    tx.commit().await?;
    Ok(codes)
}

pub async fn list_devices(c: &Client) -> anyhow::Result<Vec<DeviceInfo>> {
    let rows = c
        .query(
            "SELECT id, name, platform, version, created_at, last_seen_at, revoked_at, agent_state, agent_state_at FROM devices ORDER BY created_at, id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(DeviceInfo {
                device_id: r.try_get(0)?,
                name: r.try_get(1)?,
                platform: r.try_get(2)?,
                version: r.try_get(3)?,
                created_at: ids::rfc3339(r.try_get(4)?),
                last_seen_at: r.try_get::<_, Option<i64>>(5)?.map(ids::rfc3339),
                revoked_at: r.try_get::<_, Option<i64>>(6)?.map(ids::rfc3339),
                agent_state: crate::store::principals::report_json(r.try_get(7)?),
                agent_state_at: r.try_get::<_, Option<i64>>(8)?.map(ids::rfc3339),
            })
        })
        .collect()
}

/// `Ok(false)` when no such device exists.
pub async fn revoke_device(c: &Client, device_id: &str, now: i64) -> anyhow::Result<bool> {
    let exists = c
        .query_opt("SELECT 1 FROM devices WHERE id = $1", &[&device_id])
        .await?
        .is_some();
    c.execute(
        "UPDATE devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        &[&device_id, &now],
    )
    .await?;
    Ok(exists)
}

/// Runs SQL as an operator would (tests: moving time, deleting rows).
pub async fn execute_batch(c: &Client, sql: &str) -> anyhow::Result<()> {
    c.batch_execute(sql).await?;
    Ok(())
}
