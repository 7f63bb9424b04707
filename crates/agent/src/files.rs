//! The one way the agent and the tray write a file they must not lose or
//! half-write: a private temporary file in the same directory, fsync, rename
//! over the target, fsync of the directory.
//!
//! Why one helper: the outbox, the state file, the managed-enrollment record
//! and the tray's autostart entry each had their own copy, and two of them
//! skipped an fsync. A crash or power cut now leaves either the old file or
//! the new one, never a torn or empty one. The file is created private (0600
//! on Unix, whatever the umask), since what the agent writes (results with
//! tracking URLs, its state) belongs to the user alone.
//!
//! Private directories: the agent's own directories (data dir, outbox and
//! its `rejected/` and `corrupt/`, logs) are 0700 on Unix whatever the umask
//! ([`private_dir`]), and [`make_tree_private`] tightens what an older
//! version left readable (0755 directories, 0644 files) when the agent
//! starts. On Windows the files inherit the ACL of the user's profile, which
//! other users cannot read; nothing is changed there.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Mode of the agent's directories on Unix.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the agent's files on Unix.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// How deep [`make_tree_private`] walks (`<data>/outbox/rejected/<file>` is 3).
const MAX_DEPTH: usize = 4;

/// Writes `bytes` to `path` atomically and durably; creates the directory
/// (private, like every directory the agent creates) when it is missing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    create_missing_private(dir)?;
    // tempfile creates the file with mode 0600 on Unix.
    let mut tmp = tempfile::Builder::new()
        .prefix(".")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Creates `dir` and its missing parents, those it creates private (0700 on
/// Unix); an existing directory is left as it is.
pub fn create_missing_private(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR_MODE)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

/// Creates `dir` (missing parents too) and makes it private: 0700 on Unix,
/// whatever the umask, an existing directory included. Parents that already
/// exist keep their mode (the user's `~/.local/share` is not ours).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    create_missing_private(dir)?;
    set_mode(dir, PRIVATE_DIR_MODE)
}

/// Makes an existing file private (0600 on Unix) unless it already is.
pub fn private_file(path: &Path) -> io::Result<()> {
    set_mode(path, PRIVATE_FILE_MODE)
}

/// Sets the permission bits of `path` (following a symlink) to `mode` when
/// they differ. A no-op off Unix.
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = fs::metadata(path)?.permissions().mode() & 0o7777;
        if current != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Makes `dir` private ([`private_dir`]) and tightens everything below it:
/// directories 0700, regular files 0600. Symbolic links are neither followed
/// nor changed. For a directory that is the agent's alone (the outbox, the
/// logs) written by a version that left files readable by others.
///
/// `Err` only when `dir` itself cannot be made private; an entry below it
/// that cannot be tightened (owned by another user, say) does not stop the
/// walk and is returned as `path: error`, for a log line.
pub fn make_tree_private(dir: &Path) -> io::Result<Vec<String>> {
    private_dir(dir)?;
    let mut problems = vec![];
    tighten_below(dir, 1, &mut problems);
    Ok(problems)
}

fn tighten_below(dir: &Path, depth: usize, problems: &mut Vec<String>) {
    let mut note = |path: &Path, e: io::Error| problems.push(format!("{}: {e}", path.display()));
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => return note(dir, e),
    };
    let mut subdirs = vec![];
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                note(dir, e);
                continue;
            }
        };
        let path = entry.path();
        let kind = match entry.file_type() {
            Ok(k) => k,
            Err(e) => {
                note(&path, e);
                continue;
            }
        };
        if kind.is_dir() {
            if let Err(e) = set_mode(&path, PRIVATE_DIR_MODE) {
                note(&path, e);
            }
            subdirs.push(path);
        } else if kind.is_file()
            && let Err(e) = private_file(&path)
        {
            note(&path, e);
        }
    }
    if depth < MAX_DEPTH {
        for sub in subdirs {
            tighten_below(&sub, depth + 1, problems);
        }
    }
}

/// Makes a rename or unlink in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Windows offers no directory handle to flush; NTFS journals the rename.
        let _ = dir;
        Ok(())
    }
}

/// Test helper: `path` is a file only its owner may read and write (Unix).
#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test helper: a panic is a failure report
pub(crate) fn assert_private_file(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, PRIVATE_FILE_MODE, "{}", path.display());
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"x").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn directories_made_for_a_write_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("f");
        write_atomic(&path, b"x").unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_0755_tree_is_tightened_and_symlinks_are_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let set = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        fs::create_dir_all(data.join("outbox/rejected")).unwrap();
        fs::create_dir_all(data.join("logs")).unwrap();
        for d in ["", "outbox", "outbox/rejected", "logs"] {
            set(&data.join(d), 0o755);
        }
        for f in [
            "state.json",
            "outbox/t.json",
            "outbox/rejected/r.json",
            "logs/agent.log",
        ] {
            fs::write(data.join(f), b"{}").unwrap();
            set(&data.join(f), 0o644);
        }
        let outside = dir.path().join("outside");
        fs::write(&outside, b"not ours").unwrap();
        set(&outside, 0o644);
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();

        let problems = make_tree_private(&data).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        for d in ["", "outbox", "outbox/rejected", "logs"] {
            assert_eq!(mode(&data.join(d)), 0o700, "{d}");
        }
        for f in [
            "state.json",
            "outbox/t.json",
            "outbox/rejected/r.json",
            "logs/agent.log",
        ] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
        assert_eq!(
            mode(&outside),
            0o644,
            "a symlink's target is not ours to change"
        );
    }

    #[cfg(unix)]
    #[test]
    fn private_dir_keeps_existing_parents_as_they_are() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("share");
        fs::create_dir(&parent).unwrap();
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&parent.join("link-peeler")).unwrap();
        assert_eq!(mode(&parent), 0o755);
        assert_eq!(mode(&parent.join("link-peeler")), 0o700);
    }

    #[test]
    fn a_missing_directory_that_cannot_be_made_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").unwrap();
        assert!(write_atomic(&blocker.join("x"), b"y").is_err());
    }
}
