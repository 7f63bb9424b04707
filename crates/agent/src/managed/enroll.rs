//! Self-enrollment from the managed relay URL + one-time code, and the
//! attempts record (`<data dir>/managed-enrollment.json`) that makes sure a
//! code that enrolled or was refused is never sent again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{ATTEMPTS_FILE, Managed, location};
use crate::backoff;
use crate::credentials;
use crate::enrollment::{self, EnrollError};

/// What [`enroll_if_needed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoEnroll {
    /// No managed relay URL + code: nothing to do.
    NotConfigured,
    /// Credentials already exist (keychain or environment): the code is not used.
    AlreadyEnrolled,
    /// Enrolled now; the credentials are in the keychain.
    Enrolled { device_id: String },
    /// Stopped (signal, tray quit) while waiting to retry.
    Stopped,
}

/// Why self-enrollment did not happen. One line each, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum AutoEnrollError {
    #[error(
        "the managed enrollment code from {origin} was already used on this computer (device {device_id}) and is not sent again; sign in with `link-peeler enroll`, or ask your admin for a new code"
    )]
    AlreadyUsed { origin: String, device_id: String },
    #[error(
        "the relay refused the managed enrollment code from {origin} ({message}); it will not be tried again: ask your admin for a new code"
    )]
    Refused { origin: String, message: String },
    #[error("cannot enroll from the managed configuration: {0}")]
    Keychain(#[from] credentials::CredentialError),
    #[error(
        "enrolled as {device_id} from the managed configuration but could not store the credentials ({detail}); ask your admin to revoke {device_id} and deploy a new code"
    )]
    NotStored { device_id: String, detail: String },
    #[error(
        "cannot record the managed enrollment attempt in {path} ({detail}); the code was not sent"
    )]
    Record { path: String, detail: String },
    #[error("cannot enroll from the managed configuration: {0}")]
    Other(String),
}

/// The remembered attempts, keyed by the hash of (relay, code).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Attempts {
    pub attempts: BTreeMap<String, Attempt>,
}

/// One (relay, code) pair's history. The code itself is never stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Attempt {
    pub relay: String,
    /// Requests sent (or about to be sent) with this pair.
    pub tries: u32,
    /// Unix seconds of the last try.
    pub last_try: i64,
    /// Unix seconds before which the next try must not start (the relay's `Retry-After`).
    pub not_before: i64,
    pub outcome: Outcome,
    pub device_id: Option<String>,
    pub message: Option<String>,
}

/// Where a pair stands. `Enrolled`, `Refused` and `NotStored` are final.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Sent (or about to be) without a final answer yet: may be retried after a backoff.
    #[default]
    Pending,
    Enrolled,
    Refused,
    NotStored,
}

/// The attempt key: SHA-256 over the relay URL and the code (the code is not recoverable from it).
pub fn attempt_key(relay: &Url, code: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"link-peeler managed enrollment\0");
    h.update(relay.as_str().as_bytes());
    h.update(b"\0");
    h.update(code.trim().as_bytes());
    hex::encode(h.finalize())
}

/// The attempts file of a data dir.
pub fn attempts_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ATTEMPTS_FILE)
}

/// Reads the attempts file; a missing file is empty. An unreadable one is an
/// error: forgetting it could replay a code.
pub fn load_attempts(data_dir: &Path) -> Result<Attempts, String> {
    let path = attempts_path(data_dir);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("unreadable: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Attempts::default()),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes the attempts file atomically and durably.
pub fn save_attempts(data_dir: &Path, attempts: &Attempts) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(attempts).map_err(|e| e.to_string())?;
    crate::files::write_atomic(&attempts_path(data_dir), &text).map_err(|e| e.to_string())
}

/// How long to wait before try number `tries + 1` of a pending pair: `min(60 s, 2^(tries-1) s)`
/// after the last try, so even a crash-looping agent sends at most one request a minute.
pub fn retry_wait(tries: u32, last_try: i64, now: i64) -> Duration {
    if tries == 0 {
        return Duration::ZERO;
    }
    let step = 1u64
        .checked_shl(tries.saturating_sub(1).min(31))
        .unwrap_or(u64::MAX)
        .min(backoff::CAP.as_secs());
    let elapsed = u64::try_from(now.saturating_sub(last_try)).unwrap_or(0);
    Duration::from_secs(step.saturating_sub(elapsed))
}

/// Enrolls this user from the managed relay URL + code when not enrolled yet.
///
/// Runs before the agent loop (`run --headless`, the tray). Never sends a
/// (relay, code) pair that already enrolled or was refused; retries
/// transient failures with backoff until `stop` is cancelled.
pub async fn enroll_if_needed(
    managed: &Managed,
    data_dir: &Path,
    profile: Option<&str>,
    stop: &CancellationToken,
) -> Result<AutoEnroll, AutoEnrollError> {
    let (Some(relay), Some(code)) = (&managed.relay, &managed.enrollment_code) else {
        return Ok(AutoEnroll::NotConfigured);
    };
    let source = managed.source.clone().unwrap_or_else(location);
    if credentials::from_env()?.is_some() {
        return Ok(AutoEnroll::AlreadyEnrolled);
    }
    let prepared = match enrollment::prepare(code, None, profile.map(str::to_owned)).await {
        Ok(p) => p,
        Err(EnrollError::Keychain(e)) => return Err(e.into()),
        Err(e) => return Err(AutoEnrollError::Other(e.to_string())),
    };
    if prepared.previous.is_some() {
        return Ok(AutoEnroll::AlreadyEnrolled);
    }
    // The managed relay's private CA, if the admin manages one.
    let roots = managed.relay_ca.as_ref().map(|c| &c.roots);
    let pair = Pair {
        data_dir,
        relay,
        key: attempt_key(relay, code),
        source,
    };
    loop {
        let (mut all, mut attempt) = pair.load()?;
        if !wait_unless_stopped(wait_before_try(&attempt), stop).await {
            return Ok(AutoEnroll::Stopped);
        }
        pair.record_try(&mut all, &mut attempt)?;
        let answer = tokio::select! {
            r = enrollment::send(&prepared, relay, roots) => r,
            _ = stop.cancelled() => return Ok(AutoEnroll::Stopped),
        };
        if let Some(done) = pair.record_answer(&mut all, &mut attempt, answer)? {
            return Ok(done);
        }
    }
}

/// The managed (relay, code) pair being enrolled with, and where its
/// attempts are recorded.
struct Pair<'a> {
    data_dir: &'a Path,
    relay: &'a Url,
    /// The pair's [`attempt_key`]; the code itself is not kept.
    key: String,
    /// Where the pair was configured, for messages.
    source: String,
}

impl Pair<'_> {
    /// Reads the attempts record and this pair's attempt. A pair that
    /// enrolled or was refused is final: an error, and the code is not sent.
    fn load(&self) -> Result<(Attempts, Attempt), AutoEnrollError> {
        let all = load_attempts(self.data_dir).map_err(|d| self.record_error(d))?;
        let attempt = all
            .attempts
            .get(&self.key)
            .cloned()
            .unwrap_or_else(|| Attempt {
                relay: self.relay.to_string(),
                ..Attempt::default()
            });
        match attempt.outcome {
            Outcome::Pending => Ok((all, attempt)),
            Outcome::Enrolled | Outcome::NotStored => Err(AutoEnrollError::AlreadyUsed {
                origin: self.source.clone(),
                device_id: attempt.device_id.unwrap_or_else(|| "?".into()),
            }),
            Outcome::Refused => Err(AutoEnrollError::Refused {
                origin: self.source.clone(),
                message: format!(
                    "refused earlier: {}",
                    attempt.message.as_deref().unwrap_or("no reason given")
                ),
            }),
        }
    }

    /// Remembers the try before the code leaves this machine.
    fn record_try(&self, all: &mut Attempts, attempt: &mut Attempt) -> Result<(), AutoEnrollError> {
        attempt.tries = attempt.tries.saturating_add(1);
        attempt.last_try = link_peeler_wire::signing::unix_now();
        all.attempts.insert(self.key.clone(), attempt.clone());
        save_attempts(self.data_dir, all).map_err(|d| self.record_error(d))?;
        tracing::info!(relay = %self.relay, source = %self.source, try_number = attempt.tries, "enrolling from the managed configuration");
        Ok(())
    }

    /// Records the relay's answer. `Some` when enrolled, `None` after a
    /// transient failure (try again); a final failure is an error.
    fn record_answer(
        &self,
        all: &mut Attempts,
        attempt: &mut Attempt,
        answer: Result<enrollment::Enrolled, EnrollError>,
    ) -> Result<Option<AutoEnroll>, AutoEnrollError> {
        match answer {
            Ok(enrolled) => {
                let device_id = enrolled.device_id;
                let id = Some(device_id.clone());
                self.finish(all, attempt, Outcome::Enrolled, id, None)?;
                tracing::info!(device = %device_id, relay = %self.relay, "enrolled from the managed configuration");
                Ok(Some(AutoEnroll::Enrolled { device_id }))
            }
            Err(EnrollError::NotStored { device_id, detail }) => {
                let (id, message) = (Some(device_id.clone()), Some(detail.clone()));
                let _ = self.finish(all, attempt, Outcome::NotStored, id, message);
                Err(AutoEnrollError::NotStored { device_id, detail })
            }
            Err(e) if e.is_transient() => {
                // The code may or may not have been spent; the next try will tell (a
                // spent code is refused, and then never sent again).
                attempt.not_before = attempt.last_try + retry_after_secs(&e);
                self.finish(all, attempt, Outcome::Pending, None, Some(e.to_string()))?;
                tracing::warn!(error = %e, "managed enrollment failed; will retry with backoff");
                Ok(None)
            }
            Err(e) => {
                let message = match &e {
                    EnrollError::Refused(message) => message.clone(),
                    other => other.to_string(),
                };
                self.finish(all, attempt, Outcome::Refused, None, Some(message.clone()))?;
                tracing::error!(error = %e, "the relay refused the managed enrollment code");
                Err(AutoEnrollError::Refused {
                    origin: self.source.clone(),
                    message,
                })
            }
        }
    }

    /// Stores the attempt's outcome in the attempts record.
    fn finish(
        &self,
        all: &mut Attempts,
        attempt: &mut Attempt,
        outcome: Outcome,
        device_id: Option<String>,
        message: Option<String>,
    ) -> Result<(), AutoEnrollError> {
        attempt.outcome = outcome;
        attempt.device_id = device_id;
        attempt.message = message;
        all.attempts.insert(self.key.clone(), attempt.clone());
        save_attempts(self.data_dir, all).map_err(|d| self.record_error(d))
    }

    fn record_error(&self, detail: String) -> AutoEnrollError {
        AutoEnrollError::Record {
            path: attempts_path(self.data_dir).display().to_string(),
            detail,
        }
    }
}

/// How long to wait before the next try of a pending attempt: its backoff
/// after the last try, or the relay's `Retry-After`, whichever ends later.
fn wait_before_try(attempt: &Attempt) -> Duration {
    let now = link_peeler_wire::signing::unix_now();
    retry_wait(attempt.tries, attempt.last_try, now).max(Duration::from_secs(
        u64::try_from(attempt.not_before - now).unwrap_or(0),
    ))
}

/// Sleeps `wait` (logged when not zero); `false` when `stop` came first.
async fn wait_unless_stopped(wait: Duration, stop: &CancellationToken) -> bool {
    if !wait.is_zero() {
        tracing::info!(
            wait_seconds = wait.as_secs(),
            "waiting before retrying managed enrollment"
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return false,
        }
    }
    true
}

/// The relay's `Retry-After` (capped at [`backoff::MAX_RETRY_AFTER`]) in
/// seconds; 0 without one.
fn retry_after_secs(e: &EnrollError) -> i64 {
    let floor = match e {
        EnrollError::Relay { retry_after, .. } => {
            retry_after.map(|d| d.min(backoff::MAX_RETRY_AFTER))
        }
        _ => None,
    };
    floor.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// [`enroll_if_needed`] for a caller without a runtime (`run --headless`),
/// before the agent loop starts. A signal while it waits ends the process
/// (nothing is in flight yet), so no stop token is needed.
pub fn enroll_at_start(managed: &Managed, data_dir: &Path) -> Result<AutoEnroll, AutoEnrollError> {
    if !managed.can_enroll() {
        return Ok(AutoEnroll::NotConfigured);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AutoEnrollError::Other(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(enroll_if_needed(
        managed,
        data_dir,
        None,
        &CancellationToken::new(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn attempt_keys_hide_the_code_and_differ_per_relay() {
        let a = relay_url_for_test("https://a.example");
        let b = relay_url_for_test("https://b.example");
        let k = attempt_key(&a, "K7Q2-ABCD");
        assert_eq!(k.len(), 64);
        assert!(!k.contains("K7Q2"));
        assert_eq!(k, attempt_key(&a, " K7Q2-ABCD "));
        assert_ne!(k, attempt_key(&b, "K7Q2-ABCD"));
        assert_ne!(k, attempt_key(&a, "K7Q2-ABCE"));
    }

    fn relay_url_for_test(s: &str) -> Url {
        config::relay_url(s).unwrap()
    }

    #[test]
    fn retry_waits_grow_to_a_minute_and_count_from_the_last_try() {
        assert_eq!(retry_wait(0, 0, 1000), Duration::ZERO);
        assert_eq!(retry_wait(1, 1000, 1000), Duration::from_secs(1));
        assert_eq!(retry_wait(3, 1000, 1000), Duration::from_secs(4));
        assert_eq!(retry_wait(30, 1000, 1000), Duration::from_secs(60));
        assert_eq!(retry_wait(30, 1000, 1030), Duration::from_secs(30));
        assert_eq!(retry_wait(30, 1000, 5000), Duration::ZERO);
    }

    #[test]
    fn attempts_file_round_trips_and_never_holds_the_code() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_attempts(dir.path()).unwrap(), Attempts::default());
        let mut all = Attempts::default();
        all.attempts.insert(
            "k".into(),
            Attempt {
                relay: "https://r.example/".into(),
                tries: 2,
                last_try: 5,
                not_before: 0,
                outcome: Outcome::Refused,
                device_id: None,
                message: Some("enrollment code was already used".into()),
            },
        );
        save_attempts(dir.path(), &all).unwrap();
        assert_eq!(load_attempts(dir.path()).unwrap(), all);
        std::fs::write(attempts_path(dir.path()), "{").unwrap();
        assert!(
            load_attempts(dir.path()).is_err(),
            "a corrupt record is an error, not a reset"
        );
    }
}
