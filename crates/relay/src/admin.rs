//! Key and device administration by database (a SQLite path or a PostgreSQL
//! URL), for the CLI, tests and the demo. Each call opens the database, does
//! one short write and closes it, so it works beside serving relays.

use super::ids::now_ms;
use super::store::{self, DEFAULT_CODE_TTL_MS, Database, admin, pg};
pub use super::store::{CreatedKey, DeviceInfo, EnrollmentCode, KeyInfo, NewKey};

pub fn create_key(db: impl Into<Database>, new: &NewKey) -> anyhow::Result<CreatedKey> {
    match db.into() {
        Database::Sqlite(path) => admin::create_key(&store::open_admin(&path)?, new, now_ms()),
        Database::Postgres(url) => {
            let new = new.clone();
            pg::admin::run(&url, |c| {
                Box::pin(async move { pg::admin::create_key(c, &new, now_ms()).await })
            })
        }
    }
}

pub fn list_keys(db: impl Into<Database>) -> anyhow::Result<Vec<KeyInfo>> {
    match db.into() {
        Database::Sqlite(path) => admin::list_keys(&store::open_admin(&path)?),
        Database::Postgres(url) => pg::admin::run(&url, |c| Box::pin(pg::admin::list_keys(c))),
    }
}

/// Sets (`Some`) or clears (`None`) a key's webhook URL; `Ok(false)` when no such key exists.
pub fn set_webhook(
    db: impl Into<Database>,
    key_id: &str,
    url: Option<&str>,
) -> anyhow::Result<bool> {
    match db.into() {
        Database::Sqlite(path) => admin::set_webhook_url(&store::open_admin(&path)?, key_id, url),
        Database::Postgres(pg_url) => {
            let (key_id, url) = (key_id.to_owned(), url.map(str::to_owned));
            pg::admin::run(&pg_url, |c| {
                Box::pin(
                    async move { pg::admin::set_webhook_url(c, &key_id, url.as_deref()).await },
                )
            })
        }
    }
}

/// `Ok(false)` when no such key exists.
pub fn revoke_key(db: impl Into<Database>, key_id: &str) -> anyhow::Result<bool> {
    match db.into() {
        Database::Sqlite(path) => admin::revoke_key(&store::open_admin(&path)?, key_id, now_ms()),
        Database::Postgres(url) => {
            let key_id = key_id.to_owned();
            pg::admin::run(&url, |c| {
                Box::pin(async move { pg::admin::revoke_key(c, &key_id, now_ms()).await })
            })
        }
    }
}

/// A one-time code valid for 24 h.
pub fn create_enrollment_code(
    db: impl Into<Database>,
    name: &str,
) -> anyhow::Result<EnrollmentCode> {
    create_enrollment_code_with_ttl(db, name, DEFAULT_CODE_TTL_MS)
}

pub fn create_enrollment_code_with_ttl(
    db: impl Into<Database>,
    name: &str,
    ttl_ms: i64,
) -> anyhow::Result<EnrollmentCode> {
    match db.into() {
        Database::Sqlite(path) => {
            admin::create_enrollment_code(&store::open_admin(&path)?, name, ttl_ms, now_ms())
        }
        Database::Postgres(url) => {
            let name = name.to_owned();
            let mut codes = pg::admin::run(&url, |c| {
                Box::pin(async move {
                    pg::admin::create_enrollment_codes(c, &name, ttl_ms, now_ms(), 1).await
                })
            })?;
            codes
                .pop()
                .ok_or_else(|| anyhow::anyhow!("no enrollment code was created"))
        }
    }
}

/// `count` one-time codes valid for 24 h, created in one transaction.
pub fn create_enrollment_codes(
    db: impl Into<Database>,
    name: &str,
    count: usize,
) -> anyhow::Result<Vec<EnrollmentCode>> {
    match db.into() {
        Database::Sqlite(path) => admin::create_enrollment_codes(
            &store::open_admin(&path)?,
            name,
            DEFAULT_CODE_TTL_MS,
            now_ms(),
            count,
        ),
        Database::Postgres(url) => {
            let name = name.to_owned();
            pg::admin::run(&url, |c| {
                Box::pin(async move {
                    let ttl = DEFAULT_CODE_TTL_MS;
                    pg::admin::create_enrollment_codes(c, &name, ttl, now_ms(), count).await
                })
            })
        }
    }
}

pub fn list_devices(db: impl Into<Database>) -> anyhow::Result<Vec<DeviceInfo>> {
    match db.into() {
        Database::Sqlite(path) => admin::list_devices(&store::open_admin(&path)?),
        Database::Postgres(url) => pg::admin::run(&url, |c| Box::pin(pg::admin::list_devices(c))),
    }
}

/// `Ok(false)` when no such device exists.
pub fn revoke_device(db: impl Into<Database>, device_id: &str) -> anyhow::Result<bool> {
    match db.into() {
        Database::Sqlite(path) => {
            admin::revoke_device(&store::open_admin(&path)?, device_id, now_ms())
        }
        Database::Postgres(url) => {
            let device_id = device_id.to_owned();
            pg::admin::run(&url, |c| {
                Box::pin(async move { pg::admin::revoke_device(c, &device_id, now_ms()).await })
            })
        }
    }
}
