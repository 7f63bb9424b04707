//! Key and device administration by database path, for the CLI, tests and
//! the demo. Each call opens the database, does one short write and closes
//! it, so it works beside a serving relay.

use std::path::Path;

use super::ids::now_ms;
use super::store::{self, DEFAULT_CODE_TTL_MS, admin};
pub use super::store::{CreatedKey, DeviceInfo, EnrollmentCode, KeyInfo, NewKey};

pub fn create_key(db: &Path, new: &NewKey) -> anyhow::Result<CreatedKey> {
    admin::create_key(&store::open_admin(db)?, new, now_ms())
}

pub fn list_keys(db: &Path) -> anyhow::Result<Vec<KeyInfo>> {
    admin::list_keys(&store::open_admin(db)?)
}

/// Sets (`Some`) or clears (`None`) a key's webhook URL; `Ok(false)` when no such key exists.
pub fn set_webhook(db: &Path, key_id: &str, url: Option<&str>) -> anyhow::Result<bool> {
    admin::set_webhook_url(&store::open_admin(db)?, key_id, url)
}

/// `Ok(false)` when no such key exists.
pub fn revoke_key(db: &Path, key_id: &str) -> anyhow::Result<bool> {
    admin::revoke_key(&store::open_admin(db)?, key_id, now_ms())
}

/// A one-time code valid for 24 h.
pub fn create_enrollment_code(db: &Path, name: &str) -> anyhow::Result<EnrollmentCode> {
    create_enrollment_code_with_ttl(db, name, DEFAULT_CODE_TTL_MS)
}

pub fn create_enrollment_code_with_ttl(
    db: &Path,
    name: &str,
    ttl_ms: i64,
) -> anyhow::Result<EnrollmentCode> {
    admin::create_enrollment_code(&store::open_admin(db)?, name, ttl_ms, now_ms())
}

/// `count` one-time codes valid for 24 h, created in one transaction.
pub fn create_enrollment_codes(
    db: &Path,
    name: &str,
    count: usize,
) -> anyhow::Result<Vec<EnrollmentCode>> {
    admin::create_enrollment_codes(
        &store::open_admin(db)?,
        name,
        DEFAULT_CODE_TTL_MS,
        now_ms(),
        count,
    )
}

pub fn list_devices(db: &Path) -> anyhow::Result<Vec<DeviceInfo>> {
    admin::list_devices(&store::open_admin(db)?)
}

/// `Ok(false)` when no such device exists.
pub fn revoke_device(db: &Path, device_id: &str) -> anyhow::Result<bool> {
    admin::revoke_device(&store::open_admin(db)?, device_id, now_ms())
}
