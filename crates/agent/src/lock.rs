//! One agent per user: an OS file lock in the data dir.
//!
//! Why a lock and not a PID file: two agents for one device would lease
//! twice the capacity and race on one outbox. An advisory OS lock
//! (`flock`/`LockFileEx` via `fs4`, the same calls std offers from Rust 1.89) is released by the
//! kernel when the process dies, even by `kill -9`, so a crash never leaves
//! a stale lock behind. The file also records the holder's pid so the second
//! start can say who is running.
//!
//! Taking the lock is the first thing `run --headless` and the tray do with
//! the data dir, so it is also where the data dir is made private: the dir
//! 0700, and the agent's own files in it (lock, state, managed-enrollment
//! record, the outbox and log trees) 0700/0600, tightening what an older
//! version left readable by others. Nothing else in the dir is touched.

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
    #[error("cannot create the data dir {path} or make it private: {source}")]
    Private { path: PathBuf, source: io::Error },
}

/// Held for the agent's lifetime; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    not_private: Vec<String>,
}

impl InstanceLock {
    /// Entries of the data dir that could not be made private (`path: error`),
    /// for a warning once logging runs.
    pub fn not_private(&self) -> &[String] {
        &self.not_private
    }
}

fn open(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(crate::files::PRIVATE_FILE_MODE);
    }
    options.open(path)
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
    crate::files::private_dir(data_dir).map_err(|source| LockError::Private {
        path: data_dir.to_path_buf(),
        source,
    })?;
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
    // An older version left the data dir readable by others; this one does not.
    let not_private = make_agent_files_private(data_dir);
    Ok(InstanceLock {
        _file: file,
        not_private,
    })
}

/// Tightens the agent's own files in `data_dir` (itself already 0700): the
/// state file, the managed-enrollment record and the lock file 0600, the
/// outbox and log trees 0700/0600. Only what the agent names is touched, so a
/// `LINK_PEELER_DATA_DIR` pointed at a shared directory never has anything
/// else changed. Returns what could not be tightened, for a log line.
fn make_agent_files_private(data_dir: &Path) -> Vec<String> {
    let mut problems = vec![];
    let files = [
        LOCK_FILE,
        crate::state::STATE_FILE,
        crate::managed::ATTEMPTS_FILE,
        crate::control::controller::CONTROL_FILE,
        crate::history::HISTORY_FILE,
        crate::history::PAGE_FILE,
        crate::history::CSV_FILE,
    ];
    for name in files {
        let path = data_dir.join(name);
        match crate::files::private_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    for dir in [
        crate::outbox::Outbox::dir_in(data_dir),
        crate::logging::log_dir(data_dir),
    ] {
        if !dir.is_dir() {
            continue;
        }
        match crate::files::make_tree_private(&dir) {
            Ok(mut more) => problems.append(&mut more),
            Err(e) => problems.push(format!("{}: {e}", dir.display())),
        }
    }
    problems
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

    #[cfg(unix)]
    #[test]
    fn an_existing_0755_data_dir_is_tightened_when_the_lock_is_taken() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        const FILES: [&str; 6] = [
            LOCK_FILE,
            "state.json",
            "managed-enrollment.json",
            "outbox/job_1.json",
            "outbox/corrupt/x.json",
            "logs/agent.2025-01-01.log",
        ];
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("link-peeler");
        std::fs::create_dir_all(data.join("outbox/corrupt")).unwrap();
        std::fs::create_dir_all(data.join("logs")).unwrap();
        for d in ["", "outbox", "outbox/corrupt", "logs"] {
            set(&data.join(d), 0o755);
        }
        for f in FILES {
            std::fs::write(data.join(f), b"").unwrap();
            set(&data.join(f), 0o644);
        }
        // Not the agent's: left alone even inside its data dir.
        std::fs::create_dir_all(data.join("bin")).unwrap();
        std::fs::write(data.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        set(&data.join("bin/tool"), 0o755);
        std::fs::write(data.join("notes.txt"), b"").unwrap();
        set(&data.join("notes.txt"), 0o644);
        let lock = acquire(&data).unwrap();
        assert!(lock.not_private().is_empty(), "{:?}", lock.not_private());
        for d in ["", "outbox", "outbox/corrupt", "logs"] {
            assert_eq!(mode(&data.join(d)), 0o700, "{d}");
        }
        for f in FILES {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&data.join("bin/tool")), 0o755);
        assert_eq!(mode(&data.join("notes.txt")), 0o644);
    }

    #[cfg(unix)]
    #[test]
    fn a_new_data_dir_and_lock_file_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("new");
        let _lock = acquire(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join(LOCK_FILE)), 0o600);
    }
}
