//! What the benchmarks share: the relay and agent binaries started as real
//! processes on loopback, as deployed, and readings of a process's CPU and
//! memory from `/proc`.
#![allow(dead_code)] // each bench uses its own part

use std::path::{Path, PathBuf};
use std::process::Stdio;

use link_peeler_agent::client::RelayClient;
use link_peeler_wire::protocol::EnrollRequest;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_link-peeler");

/// The relay binary. It belongs to the `link-peeler-relay` crate, so Cargo
/// sets no `CARGO_BIN_EXE_` for it here; it is built into the same directory
/// as `link-peeler` (`cargo test` in the workspace root builds both).
pub fn relay_bin() -> PathBuf {
    let name = format!("link-peeler-relay{}", std::env::consts::EXE_SUFFIX);
    Path::new(AGENT_BIN).with_file_name(name)
}

/// The relay's operations listener (`/metrics`), set by [`start_relay`].
pub static OPS_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Starts `link-peeler-relay serve` on a fresh database in `dir`, with
/// `extra` arguments; returns the child, its URL and the database path.
pub async fn start_relay(dir: &Path, extra: &[&str]) -> (Child, String, PathBuf) {
    let db = dir.join("relay.db");
    let mut child = Command::new(relay_bin())
        .args(["serve", "--db"])
        .arg(&db)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--json",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("relay");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next_line().await.expect("read").expect("line");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let v: serde_json::Value = serde_json::from_str(&first).expect("json");
    let url = format!("http://{}", v["listen"].as_str().expect("listen"));
    let ops = format!("http://{}", v["ops"].as_str().expect("ops"));
    let _ = OPS_URL.set(ops);
    (child, url, db)
}

pub fn admin(db: &Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(relay_bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .arg("--json")
        .output()
        .expect("admin");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("admin json")
}

pub async fn enroll(relay_url: &str, db: &Path) -> (String, String) {
    let code = admin(db, &["devices", "enroll", "--name", "bench"])["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let c = RelayClient::new(
        link_peeler_agent::config::relay_url(relay_url).expect("url"),
        None,
    )
    .expect("client");
    let r = c
        .enroll(&EnrollRequest {
            code,
            name: Some("bench".into()),
            platform: None,
            version: None,
        })
        .await
        .expect("enroll");
    (r.device_id, r.device_secret)
}

pub fn spawn_agent(
    root: &Path,
    name: &str,
    relay_url: &str,
    creds: &(String, String),
    capacity: u32,
) -> Child {
    agent_command(root, name, relay_url, creds, capacity)
        .spawn()
        .expect("agent")
}

/// The `link-peeler run --headless` command [`spawn_agent`] runs: a private
/// home under `root/name`, credentials from the environment, killed on drop.
/// A bench adds its own environment before spawning it.
pub fn agent_command(
    root: &Path,
    name: &str,
    relay_url: &str,
    creds: &(String, String),
    capacity: u32,
) -> Command {
    let home = root.join(name);
    std::fs::create_dir_all(&home).expect("home");
    // The user's quotas (issue 16) would stop a benchmark after a few
    // hundred links: a benchmark machine's user allows far more.
    std::fs::write(
        home.join("config.toml"),
        "max_links_per_hour = 10000000\nmax_links_per_day = 10000000\nmax_bytes_per_day = \"1TB\"\nmax_bytes_per_month = \"1TB\"\n",
    )
    .expect("config");
    let mut cmd = Command::new(AGENT_BIN);
    cmd.args([
        "run",
        "--headless",
        "--allow-network",
        "127.0.0.0/8",
        "--relay",
        relay_url,
    ])
    .args(["--capacity", &capacity.to_string()])
    .env("LINK_PEELER_CONFIG", home.join("config.toml"))
    .env("LINK_PEELER_DATA_DIR", home.join("data"))
    .env("LINK_PEELER_DEVICE_ID", &creds.0)
    .env("LINK_PEELER_DEVICE_SECRET", &creds.1)
    .env("LINK_PEELER_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    cmd
}

pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    100.0
}
