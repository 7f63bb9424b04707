//! The headless desktop agent (protocol.md §4, §4.5): it enrolls a computer, keeps the
//! device secret in the OS keychain, long-polls the relay over outbound
//! HTTPS only, resolves links locally and posts signed results back — and it
//! never loses a result it worked for.
//!
//! One concept per file:
//!
//! - [`assembly`]: settings + credentials → which relay, and the agent built (headless, tray, status, doctor);
//! - [`config`]: `config.toml` + flags → settings; relay URL rules (https unless loopback);
//! - [`credentials`]: keychain and environment credential sources, no plaintext fallback;
//! - [`managed`]: admin-deployed settings (registry, managed preferences, /etc) and self-enrollment;
//! - [`enrollment`]: code → credentials in the keychain, as a library call (the tray's);
//! - [`client`]: signed requests to the relay, one clock correction on `stale_timestamp`;
//! - [`control`]: the end user's policy (pauses, hours, quotas, destinations) with each value's source, and the pure active/paused decision;
//! - [`policy`]: the one table of relay answers that retry, stop or drop;
//! - [`backoff`]: full-jitter exponential backoff, 1 s → 60 s, `Retry-After` as floor;
//! - [`files`]: the one atomic, durable, private file write;
//! - [`outbox`]: results fsync'd to disk before posting, removed once accepted;
//! - [`runner`]: the poll/resolve/post loop with capacity and a clean drain on stop;
//! - [`activity`]: the runner's live state (connection, in flight) for a user interface;
//! - [`history`]: "Recent activity": finished tasks and pauses in a private file, pruned by retention;
//! - [`state`]: the agent's own state file (paused, today's count), kept across restarts;
//! - [`shutdown`]: first signal drains, second exits;
//! - [`lock`]: one agent per user;
//! - [`logging`]: daily-rolling log files (14 kept) + stderr;
//! - [`status`] and [`doctor`]: what `link-peeler status` and `doctor` report.
//!
//! May depend on: `link-peeler-wire` (the contract, signing, the signed
//! client) and `link-peeler-resolver` — never on the relay's code or on any
//! GUI library (the tray, in the root package, depends on this crate).

pub mod activity;
pub mod assembly;
pub mod backoff;
pub mod client;
pub mod config;
pub mod control;
pub mod credentials;
pub mod doctor;
pub mod enrollment;
pub mod files;
pub mod history;
pub mod lock;
pub mod logging;
pub mod managed;
pub mod outbox;
pub mod policy;
pub mod resolve;
pub mod runner;
pub mod shutdown;
pub mod state;
pub mod status;

pub use resolve::LinkResolver;
pub use runner::{Counters, Exit, Runner, RunnerConfig};

/// `linux`, `macos` or `windows`, as sent at enrollment.
pub fn platform() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macos",
        "windows" => "windows",
        _ => "linux",
    }
}

/// This computer's name, for the relay's device list.
pub fn host_name() -> String {
    let from_env = ["COMPUTERNAME", "HOSTNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok());
    let from_file = || {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
    };
    from_env
        .or_else(from_file)
        .filter(|s| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control))
        .unwrap_or_else(|| "link-peeler-agent".into())
}
