//! The open-file limit, and how many connections fit under it.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (Unix) and returns the
/// limit now in force; `None` where there is no such limit or it cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let (soft, hard) = match rlimit::Resource::NOFILE.get() {
            Ok(limits) => limits,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the open-file limit");
                return None;
            }
        };
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(now) => {
                tracing::info!(
                    soft_before = soft,
                    hard,
                    soft_now = now,
                    "open-file limit (soft raised to the hard limit)"
                );
                Some(now)
            }
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit");
                Some(soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Descriptors this process has open now (Linux, macOS); `None` elsewhere.
pub fn open_descriptors() -> Option<u64> {
    let dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else if cfg!(target_os = "macos") {
        "/dev/fd"
    } else {
        return None;
    };
    // Less one: the directory being listed is open too.
    let n = std::fs::read_dir(dir).ok()?.count() as u64;
    Some(n.saturating_sub(1))
}

/// Connections the main listener serves at once, and how many more it may
/// answer `503 overloaded` at once, given the wanted cap, the open-file limit,
/// the descriptors already open (database, listeners, stdio) and the
/// operations listener's own cap.
///
/// Beyond what is open at start, a headroom of 1/16 of the limit (16 to 64
/// descriptors) is kept for what opens later (WAL files, logs); connections
/// being shed borrow a quarter of it. Past that, extra connections are closed
/// at once, and an `accept` failing for lack of descriptors is retried after a
/// pause (`super::run`).
pub fn connection_budget(
    wanted: usize,
    open_file_limit: Option<u64>,
    in_use: Option<u64>,
    ops: usize,
) -> (usize, usize) {
    let Some(limit) = open_file_limit else {
        return (wanted.max(1), 16);
    };
    let headroom = (limit / 16).clamp(16, 64);
    let reserve = in_use
        .unwrap_or(64)
        .saturating_add(headroom)
        .saturating_add(ops as u64);
    let room = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    let cap = wanted.min(room).max(1);
    let shed = usize::try_from(headroom / 4).unwrap_or(4);
    (cap, shed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_what_is_open_and_what_opens_later() {
        let b = connection_budget;
        assert_eq!(b(8192, Some(1_048_576), Some(20), 16), (8192, 16));
        assert_eq!(b(8192, Some(1024), Some(20), 16), (924, 16));
        assert_eq!(b(8192, Some(1024), None, 0), (896, 16));
        assert_eq!(b(8192, Some(64), Some(20), 0), (28, 4));
        assert_eq!(b(8192, Some(8), Some(20), 0), (1, 4));
        assert_eq!(b(8192, Some(u64::MAX), Some(20), 16), (8192, 16));
        assert_eq!(b(100, None, Some(20), 16), (100, 16));
    }

    #[test]
    fn open_descriptors_counts_open_files() {
        let Some(before) = open_descriptors() else {
            return;
        };
        // Other tests in this process open and close files too: a wide margin.
        let files: Vec<_> = (0..200).map(|_| tempfile::tempfile().unwrap()).collect();
        let after = open_descriptors().unwrap();
        assert!(after >= before + 150, "{before} → {after}");
        drop(files);
    }
}
