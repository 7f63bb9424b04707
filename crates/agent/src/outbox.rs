//! The outbox: finished results on disk until the relay has accepted them.
//!
//! Why: a resolution is real work on a real desktop; a crash, a relay outage
//! or a power cut between "resolved" and "relay said 200" must not lose it.
//! So each result is written durably *before* it is posted and deleted only
//! after the relay accepts it (or says it never will). Pending results are
//! posted first after a restart.
//!
//! Durability recipe, one file per result (`<taskId>.json`): write a temp
//! file in the same directory, `fsync` it, `rename` it over the final name,
//! then `fsync` the directory so the rename itself survives a power cut. A
//! reader therefore sees either no file or a complete one. Files that still
//! fail to parse (disk corruption, a hand edit) are moved to `corrupt/`
//! rather than retried forever; results the relay refuses outright go to
//! `rejected/`. Nothing is ever silently deleted except delivered results and
//! results whose lease the relay says is gone.
//!
//! Results hold tracking URLs, which belong to the user alone: the outbox
//! and its subdirectories are 0700 and every file 0600 on Unix.
//!
//! All calls are blocking file I/O; async callers use `spawn_blocking`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::{self, sync_dir};
use link_peeler_wire::protocol::ResolutionResult;

/// One result waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub task_id: String,
    pub lease_id: String,
    pub result: ResolutionResult,
    /// Unix milliseconds when the resolution finished (delivery order).
    pub finished_at_ms: u64,
}

/// A directory of pending results.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`, private (0700 on Unix).
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Outbox> {
        let dir = dir.into();
        files::private_dir(&dir)?;
        Ok(Outbox { dir })
    }

    /// The outbox of a data dir: `<data>/outbox`.
    pub fn in_data_dir(data_dir: &Path) -> io::Result<Outbox> {
        Outbox::open(Outbox::dir_in(data_dir))
    }

    /// Where [`Outbox::in_data_dir`] keeps the outbox (not created).
    pub fn dir_in(data_dir: &Path) -> PathBuf {
        data_dir.join("outbox")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{}.json", file_stem(task_id)))
    }

    /// Durably stores `p`, replacing an earlier copy for the same task.
    pub fn save(&self, p: &Pending) -> io::Result<()> {
        let bytes = serde_json::to_vec(p).map_err(io::Error::other)?;
        files::write_atomic(&self.path_for(&p.task_id), &bytes)
    }

    /// Deletes the result for `task_id` (delivered, or its lease is gone). Missing is fine.
    pub fn remove(&self, task_id: &str) -> io::Result<()> {
        match fs::remove_file(self.path_for(task_id)) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Moves the result for `task_id` to `rejected/` (the relay will never accept it).
    pub fn reject(&self, task_id: &str) -> io::Result<()> {
        self.move_aside(&self.path_for(task_id), "rejected")
    }

    fn move_aside(&self, path: &Path, sub: &str) -> io::Result<()> {
        let dest_dir = self.dir.join(sub);
        files::private_dir(&dest_dir)?;
        let name = path.file_name().unwrap_or_default();
        let dest = dest_dir.join(name);
        match fs::rename(path, &dest) {
            Ok(()) => {
                // A hand-edited file may have come in readable by others.
                files::private_file(&dest)?;
                sync_dir(&dest_dir)?;
                sync_dir(&self.dir)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every pending result, oldest first. Unreadable files are moved to `corrupt/`.
    pub fn pending(&self) -> io::Result<Vec<Pending>> {
        let mut out = vec![];
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            let is_result = path.extension().is_some_and(|e| e == "json")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && entry.file_type().is_ok_and(|t| t.is_file());
            if !is_result {
                continue;
            }
            match fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Pending>(&b).ok())
            {
                Some(p) => out.push(p),
                None => {
                    tracing::error!(file = %path.display(), "unreadable outbox entry moved to corrupt/");
                    self.move_aside(&path, "corrupt")?;
                }
            }
        }
        out.sort_by(|a, b| (a.finished_at_ms, &a.task_id).cmp(&(b.finished_at_ms, &b.task_id)));
        Ok(out)
    }

    /// How many results are waiting (cheap: counts files, parses none).
    pub fn len(&self) -> io::Result<usize> {
        Ok(fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.ends_with(".json") && !n.starts_with('.')
            })
            .count())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A file name for a task id: the id itself when it is tame, else its SHA-256.
fn file_stem(task_id: &str) -> String {
    let tame = !task_id.is_empty()
        && task_id.len() <= 100
        && !task_id.starts_with('.')
        && task_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if tame {
        task_id.to_owned()
    } else {
        use sha2::Digest;
        format!(
            "h_{}",
            hex::encode(sha2::Sha256::digest(task_id.as_bytes()))
        )
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use link_peeler_wire::protocol::Conclusion;

    fn pending(task: &str, at: u64) -> Pending {
        Pending {
            task_id: task.into(),
            lease_id: "lease_1".into(),
            result: ResolutionResult {
                input_url: "http://127.0.0.1/".into(),
                final_url: "http://127.0.0.1/".into(),
                conclusion: Conclusion::Resolved,
                final_status: Some(200),
                redirect_count: 0,
                elapsed_ms: 1,
                error: None,
                hops: vec![],
            },
            finished_at_ms: at,
        }
    }

    #[test]
    fn save_list_remove_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path().join("outbox")).unwrap();
        assert!(ob.is_empty().unwrap());
        ob.save(&pending("task_b", 20)).unwrap();
        ob.save(&pending("task_a", 10)).unwrap();
        ob.save(&pending("task_b", 20)).unwrap();
        let got: Vec<_> = ob
            .pending()
            .unwrap()
            .into_iter()
            .map(|p| p.task_id)
            .collect();
        assert_eq!(got, ["task_a", "task_b"]);
        assert_eq!(ob.len().unwrap(), 2);
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(ob.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        ob.remove("task_a").unwrap();
        ob.remove("task_a").unwrap();
        assert_eq!(ob.len().unwrap(), 1);
        // A reopened outbox sees what survived.
        let again = Outbox::open(ob.dir()).unwrap();
        assert_eq!(again.pending().unwrap()[0].task_id, "task_b");
    }

    #[test]
    fn hostile_task_ids_stay_inside_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path().join("outbox")).unwrap();
        for id in ["../../etc/passwd", ".hidden", "", "a/b", &"x".repeat(300)] {
            ob.save(&pending(id, 1)).unwrap();
            assert!(ob.pending().unwrap().iter().any(|p| p.task_id == id));
            ob.remove(id).unwrap();
        }
        assert!(ob.is_empty().unwrap());
        assert!(!dir.path().join("etc").exists());
    }

    #[test]
    fn corrupt_files_are_set_aside_and_rejects_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path().join("outbox")).unwrap();
        fs::write(ob.dir().join("broken.json"), b"{not json").unwrap();
        ob.save(&pending("good", 1)).unwrap();
        let got = ob.pending().unwrap();
        assert_eq!(got.len(), 1);
        assert!(ob.dir().join("corrupt/broken.json").exists());
        ob.reject("good").unwrap();
        assert!(ob.is_empty().unwrap());
        assert!(ob.dir().join("rejected/good.json").exists());
    }

    #[cfg(unix)]
    #[test]
    fn the_outbox_its_subdirectories_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path().join("outbox")).unwrap();
        fs::write(ob.dir().join("broken.json"), b"{").unwrap();
        ob.save(&pending("good", 1)).unwrap();
        ob.save(&pending("bad", 2)).unwrap();
        ob.pending().unwrap();
        ob.reject("bad").unwrap();
        assert_eq!(mode(ob.dir()), 0o700);
        assert_eq!(mode(&ob.dir().join("corrupt")), 0o700);
        assert_eq!(mode(&ob.dir().join("rejected")), 0o700);
        assert_eq!(mode(&ob.dir().join("good.json")), 0o600);
        assert_eq!(mode(&ob.dir().join("rejected/bad.json")), 0o600);
        assert_eq!(mode(&ob.dir().join("corrupt/broken.json")), 0o600);
    }
}
