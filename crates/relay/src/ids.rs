//! Identifiers, secrets, enrollment codes and timestamps.
//!
//! Everything random comes from the OS-seeded CSPRNG (`rand::rng()`).
//! Prefixes tell a reader what a value is (`lp_live_` key id, `lp_sk_` secret,
//! `dev_` device, `job_`, `lease_`) and let the relay route a signing key to
//! the right table before any lookup.

use rand::Rng;
use sha2::{Digest, Sha256};

/// API key id prefix for production keys.
pub const LIVE_KEY_PREFIX: &str = "lp_live_";
/// API key id prefix for test/dev keys.
pub const TEST_KEY_PREFIX: &str = "lp_test_";
/// Device id prefix.
pub const DEVICE_PREFIX: &str = "dev_";

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

pub fn key_id(test: bool) -> String {
    let prefix = if test {
        TEST_KEY_PREFIX
    } else {
        LIVE_KEY_PREFIX
    };
    format!("{prefix}{}", random_hex(12))
}

pub fn key_secret(test: bool) -> String {
    format!(
        "lp_sk_{}_{}",
        if test { "test" } else { "live" },
        random_hex(32)
    )
}

pub fn device_id() -> String {
    format!("{DEVICE_PREFIX}{}", random_hex(12))
}

pub fn device_secret() -> String {
    format!("lp_ds_{}", random_hex(32))
}

pub fn job_id() -> String {
    format!("job_{}", random_hex(12))
}

/// A webhook delivery's id, the same on every attempt (`X-Link-Peeler-Delivery`).
pub fn delivery_id() -> String {
    format!("whd_{}", random_hex(12))
}

pub fn lease_id() -> String {
    format!("lease_{}", random_hex(16))
}

/// Crockford base32 without I, L, O, U: easy to read aloud and type.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A 60-bit one-time enrollment code shaped `XXXX-XXXX-XXXX`.
pub fn enrollment_code() -> String {
    let mut rng = rand::rng();
    let chars: Vec<u8> = (0..12)
        .map(|_| CODE_ALPHABET[rng.random_range(0..32)])
        .collect();
    let s = String::from_utf8_lossy(&chars).into_owned();
    format!("{}-{}-{}", &s[0..4], &s[4..8], &s[8..12])
}

/// Codes are compared case-insensitively, ignoring dashes and spaces, with
/// the usual look-alikes folded (O→0, I/L→1), and stored only as a hash.
pub fn enrollment_code_hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    hex::encode(Sha256::digest(normal.as_bytes()))
}

/// Milliseconds since the unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-28T23:10:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

/// The UTC day number (days since the epoch) of a millisecond timestamp.
pub fn utc_day(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// Seconds from `ms` until the next UTC midnight (at least 1).
pub fn secs_until_next_utc_day(ms: i64) -> u64 {
    let next = (utc_day(ms) + 1) * 86_400_000;
    ((next - ms + 999) / 1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_have_their_prefixes_and_differ() {
        assert!(key_id(false).starts_with("lp_live_"));
        assert!(key_id(true).starts_with("lp_test_"));
        assert!(device_id().starts_with("dev_"));
        assert_ne!(job_id(), job_id());
        assert_eq!(key_secret(false).len(), "lp_sk_live_".len() + 64);
    }

    #[test]
    fn enrollment_codes_normalise_before_hashing() {
        let code = enrollment_code();
        assert_eq!(code.len(), 14);
        assert_eq!(
            enrollment_code_hash(&code),
            enrollment_code_hash(&code.to_lowercase())
        );
        assert_eq!(
            enrollment_code_hash("ABCD-EFGH-0123"),
            enrollment_code_hash("abcd efgh o123")
        );
        assert_ne!(
            enrollment_code_hash("ABCD-EFGH-0123"),
            enrollment_code_hash("ABCD-EFGH-0124")
        );
    }

    #[test]
    fn time_helpers() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(secs_until_next_utc_day(86_400_000 - 1500), 2);
        assert_eq!(secs_until_next_utc_day(0), 86_400);
        assert_eq!(utc_day(-1), -1);
    }
}
