//! One agent per user: an OS file lock in the data dir.
//!
//! Why a lock and not a PID file: two agents for one device would lease
//! twice the capacity and race on one outbox. An advisory OS lock
//! (`flock`/`LockFileEx` via `fs4`, the same calls std offers from Rust 1.89) is released by the
//! kernel when the process dies, even by `kill -9`, so a crash never leaves
//! a stale lock behind. The file also records the holder's pid so the second
//! start can say who is running.

use std::fs::{File, OpenOptions};

use fs4::{FileExt, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data dir.
pub const LOCK_FILE: &str = "agent.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another link-peeler agent is already running for this user{} (lock file {path})",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    AlreadyRunning { pid: Option<u32>, path: PathBuf },
    #[error("cannot use the lock file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Held for the agent's lifetime; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

fn read_pid(f: &mut File) -> Option<u32> {
    let mut s = String::new();
    f.rewind().ok()?;
    f.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Takes the per-user lock in `data_dir`, or says who holds it.
pub fn acquire(data_dir: &Path) -> Result<InstanceLock, LockError> {
    let path = data_dir.join(LOCK_FILE);
    let io_err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io_err)?;
    let mut file = open(&path).map_err(io_err)?;
    match FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::AlreadyRunning {
                pid: read_pid(&mut file),
                path,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io_err(e)),
    }
    file.set_len(0).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    writeln!(file, "{}", std::process::id()).map_err(io_err)?;
    file.flush().map_err(io_err)?;
    Ok(InstanceLock { _file: file, path })
}

/// The pid of the running agent for `data_dir`, if one holds the lock.
pub fn holder(data_dir: &Path) -> Option<Option<u32>> {
    let mut file = open(&data_dir.join(LOCK_FILE)).ok()?;
    match FileExt::try_lock_shared(&file) {
        Ok(()) => {
            let _ = FileExt::unlock(&file);
            None
        }
        Err(TryLockError::WouldBlock) => Some(read_pid(&mut file)),
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        assert!(holder(dir.path()).is_none());
        let first = acquire(dir.path()).unwrap();
        let err = acquire(dir.path()).unwrap_err();
        match &err {
            LockError::AlreadyRunning { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("already running"));
        assert_eq!(holder(dir.path()), Some(Some(std::process::id())));
        drop(first);
        assert!(holder(dir.path()).is_none());
        let _again = acquire(dir.path()).unwrap();
    }
}
