//! The agent's own state file, `<data dir>/state.json`: what the user chose
//! while the app ran (paused) and today's count of resolved links, kept
//! across restarts.
//!
//! Why not `config.toml`: the config belongs to the admin (deployed, maybe
//! read-only, refused when it has unknown keys); this file belongs to the
//! app and is rewritten whenever the user clicks Pause. It holds no secret.
//!
//! Writes are atomic (temporary file, fsync, rename), so a crash leaves the
//! old state or the new one, never half a file. An unreadable file is
//! reported and treated as the default state: losing a pause is better than
//! an agent that cannot start.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the state file inside the data dir.
pub const STATE_FILE: &str = "state.json";

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentState {
    /// The user paused the agent: no polling until they resume.
    pub paused: bool,
    /// Links resolved and delivered on `day`.
    pub links: DailyCount,
    /// When the use of this computer's connection was agreed, and by whom
    /// (the tray asks on first start; `None`: not yet).
    pub consent: Option<Consent>,
}

/// The agreement the tray asks for before the agent takes any task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// `user`, or `organization` (managed `consent_given`).
    pub by: String,
}

/// A counter that starts again at zero on a new day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DailyCount {
    /// `YYYY-MM-DD` (the caller's calendar; the tray uses local time).
    pub day: String,
    pub count: u64,
}

impl DailyCount {
    /// The count for `day` (zero when the stored day is another one).
    pub fn on(&self, day: &str) -> u64 {
        if self.day == day { self.count } else { 0 }
    }

    /// Adds `n` to `day`'s count, starting from zero on a new day.
    pub fn add(&mut self, day: &str, n: u64) {
        if self.day != day {
            self.day = day.to_owned();
            self.count = 0;
        }
        self.count = self.count.saturating_add(n);
    }
}

/// The state file of a data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}

/// Reads the state; a missing file is the default state, a broken one an error.
pub fn load(data_dir: &Path) -> io::Result<AgentState> {
    match std::fs::read(path(data_dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AgentState::default()),
        Err(e) => Err(e),
    }
}

/// Writes the state atomically.
pub fn save(data_dir: &Path, state: &AgentState) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(state)?;
    bytes.push(b'\n');
    crate::files::write_atomic(&path(data_dir), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_default_and_round_trip_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), AgentState::default());
        let mut s = AgentState {
            paused: true,
            ..Default::default()
        };
        s.links.add("2025-03-01", 5);
        save(dir.path(), &s).unwrap();
        assert_eq!(load(dir.path()).unwrap(), s);
        assert!(!dir.path().join("config.toml").exists());
    }

    #[test]
    fn daily_count_restarts_on_a_new_day() {
        let mut c = DailyCount::default();
        c.add("2025-03-01", 2);
        c.add("2025-03-01", 3);
        assert_eq!(c.on("2025-03-01"), 5);
        assert_eq!(c.on("2025-03-02"), 0);
        c.add("2025-03-02", 1);
        assert_eq!(c.on("2025-03-02"), 1);
    }

    #[test]
    fn broken_file_is_an_error_and_unknown_keys_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), "{not json").unwrap();
        assert!(load(dir.path()).is_err());
        std::fs::write(path(dir.path()), r#"{"paused":true,"future":1}"#).unwrap();
        assert!(load(dir.path()).unwrap().paused);
    }
}
