//! `link-peeler-relay serve` as a child process, for tests that need several
//! relays on one database, or one to `kill -9`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The relay binary: Cargo names it to the relay crate's own tests; the root
/// package's tests that share this file find it beside theirs.
pub fn relay_bin() -> PathBuf {
    option_env!("CARGO_BIN_EXE_link-peeler-relay")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().and_then(|d| d.parent()).unwrap();
            dir.join(format!("link-peeler-relay{}", std::env::consts::EXE_SUFFIX))
        })
}

/// A serving relay process; killed when dropped.
pub struct RelayProcess {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl RelayProcess {
    /// `serve --db DB --listen 127.0.0.1:0` (the database through
    /// `LINK_PEELER_RELAY_DB`, as an operator would pass a URL with a
    /// password), with `extra` arguments; its log goes to `log`.
    pub async fn start(db: &str, extra: &[&str], log: PathBuf) -> RelayProcess {
        let err = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(relay_bin())
            .env("LINK_PEELER_RELAY_DB", db)
            .env("RUST_LOG", "warn")
            .args(["--json", "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the relay did not start within 30 s")
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "the relay exited: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let started: serde_json::Value = serde_json::from_str(&first).unwrap();
        let url = started["url"].as_str().unwrap().to_owned();
        RelayProcess { child, url, log }
    }

    /// `kill -9`: no shutdown, no flushing, connections cut.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}
